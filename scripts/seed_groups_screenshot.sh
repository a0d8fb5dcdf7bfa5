#!/usr/bin/env bash
# Re-take docs/img/tensorboard_seed_groups.png: the Custom Scalars tab on the demo's seed groups (make demo;
# or give its sweep folder as $1), each group's mean in its min-to-max band (vgbench.report.aggregate).
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-$(ls -d outputs/sweeps/vanishing/*/ | tail -1)}
scripts/tensorboard_screenshot.sh "$sweep/_mean" "?darkMode=false#custom_scalars" docs/img/tensorboard_seed_groups.png 1400 1000
