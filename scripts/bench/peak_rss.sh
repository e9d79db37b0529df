#!/usr/bin/env bash
# Peak RSS of `earshot run` with one monitor, first start (the model optimised and saved in
# <state_dir>/model-cache) and later starts (the saved model loaded), against issue 14's
# target of the model file's size + 100 MB. After `cargo build --release`:
#   scripts/bench/peak_rss.sh [MODEL_DIR...]     (default: models/aisfx-cnn9)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E="$root/target/release/earshot"
[ -x "$E" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$root/models/aisfx-cnn9")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$E" synth dataset --out "$d/data" --machine motor:1 --test-clips 1 --sample-rate 48000 --seed 5 >/dev/null 2>&1
"$E" synth stream --out "$d/stream.wav" --machine motor --id 1 --fault bearing --seconds 30 \
  --onset 15 --sample-rate 48000 >/dev/null 2>&1
echo "| model | model file MiB | target MiB | first start MiB | later starts MiB (2 runs) |"
echo "|---|---|---|---|---|"
for m in "${models[@]}"; do
  m=$(cd "$m" && pwd)
  name=$(basename "$m")
  "$E" learn --normal "$d/data/motor_id01/train" --out "$d/prof-$name" --model "$m" >/dev/null 2>&1
  cat > "$d/run-$name.toml" <<EOT
[model]
dir = "$m"
[daemon]
state_dir = "$d/state-$name"
[metrics]
listen = "127.0.0.1:0"
[[monitor]]
name = "bench"
profile = "$d/prof-$name"
hop_seconds = 0.5
source = { file = "$d/stream.wav", realtime = false, loop = false }
EOT
  peaks=()
  for _ in 1 2 3; do
    /usr/bin/time -o "$d/time" -f "%M" "$E" run --config "$d/run-$name.toml" --exit-when-done >/dev/null 2>&1
    peaks+=("$(( $(cat "$d/time") / 1024 ))")
  done
  onnx=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["onnx"]["file"])' "$m/card.json")
  size=$(( $(stat -c %s "$m/$onnx") / 1048576 ))
  echo "| $name | $size | $(( size + 100 )) | ${peaks[0]} | ${peaks[1]}, ${peaks[2]} |"
done
