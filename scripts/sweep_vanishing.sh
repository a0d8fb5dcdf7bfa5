#!/usr/bin/env bash
# The vanishing-gradient sweep (conf/experiment/vanishing.yaml) and its report, in one command.
#   scripts/sweep_vanishing.sh                                   # local cores, joblib
#   LAUNCHER=slurm scripts/sweep_vanishing.sh hydra.launcher.partition=gpu
#   scripts/sweep_vanishing.sh trainer.seed=0,1,2                # extra overrides go to vgbench-train
# Re-running with SWEEP_DIR=<an earlier sweep folder> finishes a cut-off sweep: completed runs are
# skipped and interrupted ones resume from their checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
sweep_dir=${SWEEP_DIR:-outputs/sweeps/vanishing/$(date +%Y-%m-%d_%H-%M-%S)}
started=$(date +%s)
$bin/vgbench-train experiment=vanishing "hydra/launcher=${LAUNCHER:-parallel}" "hydra.sweep.dir=$sweep_dir" "$@"
$bin/vgbench-report "$sweep_dir"
echo "sweep and report took $(( $(date +%s) - started )) s"
