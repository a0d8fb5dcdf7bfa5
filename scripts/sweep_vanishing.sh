#!/usr/bin/env bash
# The vanishing-gradient sweep (conf/experiment/vanishing.yaml: 4 activations x 4 depths x 3 seeds,
# stacked) and its report, written by the sweep's callback into the sweep folder, in one command.
#   scripts/sweep_vanishing.sh                                          # local cores
#   scripts/sweep_vanishing.sh hydra/launcher=stacked_slurm hydra.launcher.submitit.slurm_partition=gpu
#   scripts/sweep_vanishing.sh trainer.epochs=3                         # extra overrides go to vgbench-train
# Re-running with SWEEP_DIR=<an earlier sweep folder> finishes a cut-off sweep: completed runs are
# skipped and interrupted ones resume from their checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
sweep_dir=${SWEEP_DIR:-outputs/sweeps/vanishing/$(date +%Y-%m-%d_%H-%M-%S)}
started=$(date +%s)
.venv/bin/vgbench-train experiment=vanishing "hydra.sweep.dir=$sweep_dir" "$@"
echo "sweep and report took $(( $(date +%s) - started )) s"
