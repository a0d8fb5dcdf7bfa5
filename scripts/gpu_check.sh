#!/usr/bin/env bash
# Every check of vgbench's CUDA path, run once on a machine with a GPU, every figure into one JSON.
# About 9 minutes on an H200 before the scale step (at most 5 more; 5.6 without stacked_no_graphs and profile):
# longer than one 10-minute device call, so a short lease runs it in parts (GPU_CHECK_ONLY). Without CUDA it stops
# at once with one line (exit 1).
#
#   scripts/gpu_check.sh                    # writes outputs/gpu_check/gpu_check.json and gpu_check.log
#   GPU_CHECK_OUT=/tmp/x scripts/gpu_check.sh
#   GPU_CHECK_SKIP=stacked_no_graphs scripts/gpu_check.sh  # steps to leave out (comma-separated), for a short lease
#   GPU_CHECK_ONLY=cuda_tests,monitor,scale scripts/gpu_check.sh  # only these steps (issue 28's: 4 to 6 minutes)
#
# 1. the CUDA tests (fp32, bf16 and fp16 runs with the monitor against a CPU fp32 run of the same seed;
#    resume on the GPU; a stack's memory estimate against the allocator's peak; steps replayed from a CUDA
#    graph against the same steps launched op by op, the monitor's measured steps from theirs too)
# 2. stacked runs against one process per run, both sides' steps replayed from CUDA graphs (the default):
#    K = 8 and 64 runs of one and of five epochs (from the two lengths, the throughput of one more epoch:
#    the start-ups left out); and 64 of one epoch with every step launched op by op
# 3. fp16, bf16 and TF32 MNIST runs with the monitor against an fp32 run of the same seed (step-0 statistics)
# 4. the epoch benchmark on CUDA: vgbench against the pytorch/examples way, fp32 and bf16
# 5. the monitor's overhead on CUDA (every step measured: replayed from the measured steps' graph)
# 6. a 16-run sweep on one GPU through the parallel launcher
# 7. stacks of 256, 512 and 1024 runs of one 10x128 MLP: one epoch with its start-up, the steady epoch and
#    the training steps alone in useful TFLOP/s against the device's fp32 peak (bench_stacked.py --mode scale)
# 8. where a stacked step's time goes (scripts/profile_stack.py: host against device, and a CUDA graph's replay)
#    and a 64-run stack's epoch (scripts/profile_epoch.py: replayed steps, measured steps, files, ...)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-outputs/gpu_check}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$out"
log="$out/gpu_check.log"
: > "$log"

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is false); run it on a machine with an NVIDIA GPU"
  exit 1
fi
export PYTHONUNBUFFERED=1
# torch's bytecode: pip compiles it at install time, but a read-only install without it (a shared or container
# one, as on the lent H200) makes every process compile torch again, 2.2 s of its 3.5 s import; the benchmarks
# would measure that. Python then keeps the bytecode in a folder of its own.
torch_bytecode=$("$python" -c "import importlib.util as u, sys; print(u.cache_from_source(u.find_spec('torch').origin))")
if [[ ! -f $torch_bytecode && -z ${PYTHONPYCACHEPREFIX:-} ]]; then
  export PYTHONPYCACHEPREFIX=${TMPDIR:-/tmp}/vgbench-pycache
  echo "gpu_check: torch's bytecode is not there ($torch_bytecode); Python keeps it in $PYTHONPYCACHEPREFIX" \
    | tee -a "$log"
fi

step() {  # step NAME TIMEOUT_S COMMAND...: run it, keep its output in the log, record its status and time
  local name=$1 limit=$2; shift 2
  if [[ ",${GPU_CHECK_SKIP:-}," == *",$name,"* ]]; then echo "=== $name: skipped (GPU_CHECK_SKIP)" | tee -a "$log"; return; fi
  if [[ -n ${GPU_CHECK_ONLY:-} && ",$GPU_CHECK_ONLY," != *",$name,"* ]]; then
    echo "=== $name: skipped (not in GPU_CHECK_ONLY)" | tee -a "$log"; return
  fi
  local started=$(date +%s)
  echo "=== $name: $*" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  echo "{\"step\": \"$name\", \"exit\": $status, \"seconds\": $(( $(date +%s) - started ))}" >> "$out/steps.jsonl"
  echo "=== $name: exit $status in $(( $(date +%s) - started )) s" | tee -a "$log"
}
rm -f "$out/steps.jsonl"

"$python" -m vgbench.provision data=mnist >> "$log" 2>&1
step cuda_tests 180 "$python" -m pytest -q -m cuda -p no:cacheprovider tests/test_train.py tests/test_memory.py tests/test_watcher.py \
  tests/test_graphs.py
step stacked 300 "$python" scripts/bench_stacked.py --mode gpu --runs 8,64 --epochs 1,5 --repeats 1 \
  --json "$out/stacked.json"
step stacked_no_graphs 180 "$python" scripts/bench_stacked.py --mode gpu --runs 64 --no-graphs --repeats 1 \
  --json "$out/stacked_no_graphs.json"
step precision 90 "$python" scripts/precision_check.py --json "$out/precision.json"
step epoch_fp32 60 "$python" scripts/bench_epoch.py --device cuda --repeats 2 --json "$out/epoch_fp32.json"
step epoch_bf16 60 "$python" scripts/bench_epoch.py --device cuda --amp bf16 --repeats 2 --json "$out/epoch_bf16.json"
step monitor 60 "$python" scripts/bench_monitor.py --device cuda --repeats 2 --json "$out/monitor.json"
step sweep16 120 "$python" scripts/bench_sweep.py --gpu-sweep --json "$out/sweep16.json"
step scale 300 "$python" scripts/bench_stacked.py --mode scale --runs 256,512,1024 --json "$out/scale.json"
step profile 120 "$python" scripts/profile_stack.py --device cuda --runs 1,8,64 --json "$out/profile.json"
step epoch_phases 90 "$python" scripts/profile_epoch.py --device cuda --runs 64 --json "$out/epoch_phases.json"

"$python" - "$out" <<'PY'
import json, subprocess, sys
from pathlib import Path
import torch
out = Path(sys.argv[1])
figures = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "steps": [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]}
for name in ("stacked", "stacked_no_graphs", "precision", "epoch_fp32", "epoch_bf16", "monitor", "sweep16", "scale",
             "profile", "epoch_phases"):
    path = out / f"{name}.json"
    figures[name] = json.loads(path.read_text()) if path.exists() else None
(out / "gpu_check.json").write_text(json.dumps(figures, indent=2))
failed = [s["step"] for s in figures["steps"] if s["exit"] != 0]
print(f"gpu_check: {len(figures['steps']) - len(failed)} of {len(figures['steps'])} steps passed"
      + (f"; failed: {', '.join(failed)}" if failed else "") + f"; figures in {out / 'gpu_check.json'}")
sys.exit(1 if failed else 0)
PY
