#!/usr/bin/env bash
# Reproduce models/aisfx-cnn9 from the PyPI wheel aisfx 0.1.2 (Ma and Lerch, ISMIR 2022; CC BY 4.0).
#
# Usage: models/fetch_aisfx.sh [OUTDIR]     (default: a temporary directory, then compared)
#
# Downloads the wheel with pip (PyPI only, no other network), checks the wheel's and the
# checkpoint's SHA-256, converts aisfx/models/checkpoint.pth with models/convert_panns.py (numpy +
# onnx only, no torch) and copies the wheel's LICENSE beside the model. Without OUTDIR it checks
# that the result is byte-identical to the committed models/aisfx-cnn9 and exits 1 if not.
# The conversion is deterministic for a given onnx version (models/requirements.txt pins it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEEL=aisfx-0.1.2-py2.py3-none-any.whl
WHEEL_SHA256=bfe219950715af179e9a1653e7117cc1852baef267cd6596c42cad74afe1d194
CKPT_SHA256=499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5
PY=${PYTHON:-$ROOT/.venv/bin/python}
if ! "$PY" -c 'import numpy, onnx' >/dev/null 2>&1; then
  echo "fetch_aisfx: $PY lacks numpy/onnx: python3 -m venv .venv && .venv/bin/pip install -r models/requirements.txt" >&2
  exit 2
fi

WORK=$(mktemp -d /tmp/earshot-aisfx.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  aisfx==0.1.2 -d "$WORK/wheel"
got=$(sha256sum "$WORK/wheel/$WHEEL" | cut -d' ' -f1)
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "fetch_aisfx: $WHEEL has SHA-256 $got, expected $WHEEL_SHA256: refusing (PyPI file changed?)" >&2
  exit 1
fi
"$PY" - "$WORK/wheel/$WHEEL" "$WORK/x" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in ("aisfx/models/checkpoint.pth", "aisfx-0.1.2.dist-info/licenses/LICENSE"):
        z.extract(m, sys.argv[2])
EOF
CKPT=$WORK/x/aisfx/models/checkpoint.pth
got=$(sha256sum "$CKPT" | cut -d' ' -f1)
if [ "$got" != "$CKPT_SHA256" ]; then
  echo "fetch_aisfx: checkpoint.pth has SHA-256 $got, expected $CKPT_SHA256: refusing" >&2
  exit 1
fi

OUT=${1:-$WORK/out}
"$PY" "$ROOT/models/convert_panns.py" --arch Cnn_9layers --name aisfx-cnn9 "$CKPT" "$OUT"
cp "$WORK/x/aisfx-0.1.2.dist-info/licenses/LICENSE" "$OUT/LICENSE"

if [ $# -eq 0 ]; then
  status=0
  for f in model.onnx card.json LICENSE; do
    if cmp -s "$OUT/$f" "$ROOT/models/aisfx-cnn9/$f"; then
      echo "fetch_aisfx: $f identical to models/aisfx-cnn9/$f"
    else
      echo "fetch_aisfx: $f DIFFERS from models/aisfx-cnn9/$f" >&2; status=1
    fi
  done
  exit $status
fi
echo "fetch_aisfx: wrote $OUT"
