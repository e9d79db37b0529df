#!/usr/bin/env bash
# Regenerate tests/fixtures/parity/ from the ORIGINAL PANNs code (not run in CI).
#
# Usage: scripts/parity/regen-fixtures.sh REF_REPO VENV [OUT_DIR]
#   REF_REPO  a checkout of github.com/qiuqiangkong/audioset_tagging_cnn, or a bare git mirror of it
#             (its pytorch/models.py + pytorch_utils.py are extracted to a temp dir outside this
#             repository; none of that code is ever committed here)
#   VENV      a Python venv with torch, torchlibrosa, librosa and numpy (for the reference run only)
#   OUT_DIR   default tests/fixtures/parity
#
# Steps: generate the seeded checkpoints with models/make_checkpoint.py (same seeds as
# scripts/make-test-models.sh), load them with torch.load + load_state_dict(strict=True) into
# the original Cnn14 / Cnn14_16k / MobileNetV1 classes, run the fixture clips in eval mode and
# write WAVs, reference log-mels, embeddings, clipwise outputs and manifest.json.
# Then check the converted ONNX models against them:
#   scripts/make-test-models.sh target/test-models
#   VENV/bin/python scripts/parity/check_onnx.py tests/fixtures/parity target/test-models
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0"; exit 2
fi
REF_REPO=$1
VENV=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${3:-$ROOT/tests/fixtures/parity}
PY=$VENV/bin/python
[ -x "$PY" ] || { echo "regen-fixtures: $PY not found; pass a venv with torch + torchlibrosa" >&2; exit 2; }

WORK=$(mktemp -d /tmp/earshot-parity.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/code" "$WORK/ckpt"

if git -C "$REF_REPO" rev-parse --is-bare-repository >/dev/null 2>&1; then
  COMMIT=$(git -C "$REF_REPO" rev-parse HEAD)
  for f in models.py pytorch_utils.py; do
    git -C "$REF_REPO" show "HEAD:pytorch/$f" > "$WORK/code/$f"
  done
elif [ -f "$REF_REPO/pytorch/models.py" ]; then
  COMMIT=unknown
  cp "$REF_REPO/pytorch/models.py" "$REF_REPO/pytorch/pytorch_utils.py" "$WORK/code/"
else
  echo "regen-fixtures: $REF_REPO is neither a git repo nor a checkout with pytorch/models.py" >&2; exit 2
fi

# Same table as scripts/make-test-models.sh and MODELS in scripts/parity/reference.py.
for spec in MobileNetV1:1 Cnn14:2 Cnn14_16k:3; do
  arch=${spec%%:*}; seed=${spec##*:}
  "$PY" "$ROOT/models/make_checkpoint.py" --arch "$arch" --seed "$seed" --format zip "$WORK/ckpt/$arch-seed$seed.pth"
done

rm -f "$OUT"/*.wav "$OUT"/*.f32 "$OUT"/manifest.json
"$PY" "$ROOT/scripts/parity/reference.py" --ref-code "$WORK/code" --ckpt-dir "$WORK/ckpt" --out "$OUT" --ref-commit "$COMMIT"
du -sh "$OUT"
