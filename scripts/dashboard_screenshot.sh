#!/usr/bin/env bash
# Re-take docs/img/dashboard_scalars.png: a sigmoid and a ReLU run (10 hidden layers, MNIST), a local
# TensorBoard, and headless Chromium (Debian's `chromium` package) on its scalars page.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=$(mktemp -d)
for activation in sigmoid relu; do
  .venv/bin/vgbench-train activation=$activation model.depth=10 trainer.epochs=2 data.limit_train=20000 \
    monitor.every_n_steps=20 hydra.run.dir="$runs/$activation"
done
scripts/tensorboard_screenshot.sh "$runs" \
  "?darkMode=false#scalars&tagFilter=grad_norm%2Fweight%2Flayer_(01%7C11)%24&_smoothingWeight=0" \
  docs/img/dashboard_scalars.png 1400 480
