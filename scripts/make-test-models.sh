#!/usr/bin/env bash
# Build the seeded PANNs test models: OUTDIR/<name>/{model.onnx,card.json}.
#
# Usage: scripts/make-test-models.sh OUTDIR
#
# Creates .venv (gitignored) with models/requirements.txt (numpy + onnx only, no torch) if it is
# missing, generates the seeded checkpoints with the SAME architectures and seeds as the parity
# fixtures (tests/fixtures/parity/manifest.json) and converts them. Models whose card already
# records the expected checkpoint are skipped, so re-running is cheap.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2; exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
VENV=$ROOT/.venv
PY=$VENV/bin/python

if ! "$PY" -c 'import numpy, onnx' >/dev/null 2>&1; then
  echo "make-test-models: creating $VENV with models/requirements.txt"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/models/requirements.txt"
fi

CKPT=$OUT/.checkpoints
mkdir -p "$CKPT"
# name:architecture:seed -- keep in sync with MODELS in scripts/parity/reference.py
for spec in panns-mobilenetv1-seeded:MobileNetV1:1 panns-cnn14-seeded:Cnn14:2 panns-cnn14_16k-seeded:Cnn14_16k:3; do
  IFS=: read -r name arch seed <<<"$spec"
  dir=$OUT/$name
  ckpt=$CKPT/$arch-seed$seed.pth
  if [ -f "$dir/card.json" ] && [ -f "$dir/model.onnx" ] && grep -q "\"checkpoint\": \"$arch-seed$seed.pth\"" "$dir/card.json"; then
    echo "make-test-models: $name up to date"
    continue
  fi
  [ -f "$ckpt" ] || "$PY" "$ROOT/models/make_checkpoint.py" --arch "$arch" --seed "$seed" --format zip "$ckpt"
  "$PY" "$ROOT/models/convert_panns.py" --arch "$arch" --name "$name" "$ckpt" "$dir"
  rm -f "$ckpt"  # Cnn14 checkpoints are 300 MB; the card keeps their sha256
done
