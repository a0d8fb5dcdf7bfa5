#!/usr/bin/env bash
# Re-take docs/img/tensorboard_seed_groups.png: the demo's sweep folder (make demo; or give it as $1), a local
# TensorBoard on it, and headless Chromium (Debian's `chromium` package) on the Custom Scalars tab, where
# each seed group's mean test accuracy is drawn in its min-to-max band (vgbench.report.aggregate).
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=${1:-$(ls -d outputs/sweeps/vanishing/*/ | tail -1)}
port=${PORT:-6124}
shot=$(mktemp -d)
.venv/bin/tensorboard --logdir "$sweep/_mean" --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 8
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --window-size=1400,1000 \
  --virtual-time-budget=20000 --screenshot="$shot/shot.png" \
  "http://127.0.0.1:$port/?darkMode=false#custom_scalars&tagFilter=test%2Facc"
.venv/bin/python -c "from PIL import Image; Image.open('$shot/shot.png').save('docs/img/tensorboard_seed_groups.png', optimize=True)"
