#!/usr/bin/env bash
# A picture of a TensorBoard page for the docs: a local TensorBoard on LOGDIR, headless Chromium (Debian's
# `chromium` package) on PAGE (the part of the address after the port), the shot cropped to WIDTHxHEIGHT.
#   scripts/tensorboard_screenshot.sh LOGDIR PAGE OUT.png WIDTH HEIGHT
set -euo pipefail
logdir=$1 page=$2 out=$3 width=$4 height=$5
port=${PORT:-6123}
shot=$(mktemp -d)
.venv/bin/tensorboard --logdir "$logdir" --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 8
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --window-size=1400,1000 \
  --virtual-time-budget=20000 --screenshot="$shot/shot.png" "http://127.0.0.1:$port/$page"
.venv/bin/python -c "from PIL import Image; Image.open('$shot/shot.png').crop((0, 0, $width, $height)).save('$out', optimize=True)"
echo "wrote $out"
