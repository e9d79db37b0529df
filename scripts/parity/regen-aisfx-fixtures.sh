#!/usr/bin/env bash
# Regenerate tests/fixtures/parity-aisfx/ from the aisfx 0.1.2 package's own code (not run in CI).
#
# Usage: scripts/parity/regen-aisfx-fixtures.sh TORCH_VENV [ESSENTIA_VENV] [OUT_DIR]
#   TORCH_VENV     a venv OUTSIDE the repository with torch, librosa==0.9.2, numpy<1.24, soundfile, tqdm
#                  (e.g. python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
#                  librosa==0.9.2 'numpy<1.24' soundfile tqdm 'setuptools<70')
#   ESSENTIA_VENV  optional venv with `essentia` from PyPI (it needs numpy 2, so a venv of its own);
#                  "-" to skip
#   OUT_DIR        default tests/fixtures/parity-aisfx
#
# The wheel is downloaded from PyPI and checked by SHA-256, unpacked into a temporary directory
# outside this repository (none of its code is committed here), and its inference/spectrogram
# modules are run on the fixture clips (see scripts/parity/aisfx_reference.py).
# tests/parity_aisfx.rs then compares earshot's Rust front end and the ONNX graph with them.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,16p' "$0"; exit 2
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TORCH_PY=$1/bin/python
ESS=${2:--}
OUT=${3:-$ROOT/tests/fixtures/parity-aisfx}
WHEEL_SHA256=bfe219950715af179e9a1653e7117cc1852baef267cd6596c42cad74afe1d194
[ -x "$TORCH_PY" ] || { echo "regen-aisfx-fixtures: $TORCH_PY not found" >&2; exit 2; }

WORK=$(mktemp -d /tmp/earshot-aisfx-parity.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
"$TORCH_PY" -m pip download --quiet --disable-pip-version-check --no-deps aisfx==0.1.2 -d "$WORK/wheel"
got=$(sha256sum "$WORK"/wheel/aisfx-0.1.2-*.whl | cut -d' ' -f1)
[ "$got" = "$WHEEL_SHA256" ] || { echo "regen-aisfx-fixtures: wheel SHA-256 $got != $WHEEL_SHA256" >&2; exit 1; }
(cd "$WORK" && "$TORCH_PY" -m zipfile -e wheel/aisfx-0.1.2-*.whl pkg)

mkdir -p "$OUT"
rm -f "$OUT"/*.wav "$OUT"/*.f32 "$OUT"/manifest.json
"$TORCH_PY" "$ROOT/scripts/parity/aisfx_reference.py" --pkg "$WORK/pkg" --out "$OUT"
if [ "$ESS" != "-" ]; then
  "$ESS/bin/python" "$ROOT/scripts/parity/aisfx_reference.py" --essentia --pkg "$WORK/pkg" --out "$OUT"
fi
du -sh "$OUT"
