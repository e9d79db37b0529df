#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library that earshot loads at run time into the project
# (.ort/), from the PyPI wheel `onnxruntime` (the only registry that ships it for Linux).
# Nothing is installed system-wide and no Python package is installed: pip only downloads
# the wheel, and one member is unzipped. Idempotent: does nothing when the library is there.
#
# Usage: scripts/setup-ort.sh [DEST_DIR]     (default: <repo>/.ort)
# The earshot binary looks for the library in $ORT_DYLIB_PATH, then next to itself, then in
# <repo>/.ort, then /usr/lib/earshot and /usr/local/lib/earshot.
set -euo pipefail
ORT_VERSION=${ORT_VERSION:-1.31.1}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$here/.ort}
lib="$dest/libonnxruntime.so.$ORT_VERSION"
if [ -f "$lib" ]; then
  echo "ONNX Runtime $ORT_VERSION already at $lib"
  exit 0
fi
case "$(uname -m)" in
  x86_64) plat=manylinux_2_28_x86_64 ;;
  aarch64) plat=manylinux_2_28_aarch64 ;;
  *) echo "setup-ort: no ONNX Runtime wheel known for $(uname -m)" >&2; exit 1 ;;
esac
command -v python3 >/dev/null || { echo "setup-ort: python3 (with pip) is needed to download the wheel" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "Downloading the onnxruntime==$ORT_VERSION wheel ($plat) from PyPI ..."
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$plat" \
  --python-version 3.11 "onnxruntime==$ORT_VERSION" -d "$tmp"
wheel=$(ls "$tmp"/onnxruntime-*.whl)
mkdir -p "$dest"
python3 - "$wheel" "$dest" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, ver = sys.argv[1:4]
name = f"onnxruntime/capi/libonnxruntime.so.{ver}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(name)
out = os.path.join(dest, os.path.basename(name))
with open(out + ".part", "wb") as f:
    f.write(data)
os.replace(out + ".part", out)
print(f"ONNX Runtime {ver} -> {out} ({len(data)/1e6:.1f} MB)")
PY
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
