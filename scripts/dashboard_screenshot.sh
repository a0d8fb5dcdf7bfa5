#!/usr/bin/env bash
# Re-take docs/img/dashboard_scalars.png: a sigmoid and a ReLU run (10 hidden layers, MNIST), a local
# TensorBoard, and headless Chromium (Debian's `chromium` package) on its scalars page.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=$(mktemp -d)
port=${PORT:-6123}
for activation in sigmoid relu; do
  .venv/bin/vgbench-train activation=$activation model.depth=10 trainer.epochs=2 data.limit_train=20000 \
    monitor.every_n_steps=20 hydra.run.dir="$runs/$activation"
done
.venv/bin/tensorboard --logdir "$runs" --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 8
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --window-size=1400,900 \
  --virtual-time-budget=15000 --screenshot="$runs/shot.png" \
  "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=grad_norm%2Fweight%2Flayer_(01%7C11)%24&_smoothingWeight=0"
.venv/bin/python -c "from PIL import Image; Image.open('$runs/shot.png').crop((0, 0, 1400, 480)).save('docs/img/dashboard_scalars.png', optimize=True)"
echo "wrote docs/img/dashboard_scalars.png"
