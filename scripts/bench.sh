#!/usr/bin/env bash
# Builds earshot in release mode and runs the core speed benchmark (benches/core.rs).
# Prints figures only: nothing here asserts a time, so a busy machine cannot fail it.
#
# Usage: scripts/bench.sh [--quick] [--models DIR] [--threads N] [--json]
#   --quick       bundled model only, few iterations (< 60 s): the CI smoke run
#   --models DIR  also measure the models in DIR (default target/test-models, made by
#                 scripts/make-test-models.sh target/test-models: Cnn14, Cnn14_16k)
#   --threads N   one ONNX Runtime intra-op thread count instead of 1 and 2
#   --json        machine-readable output on stdout
#
#       scripts/bench.sh --pipeline [--model DIR] [--seconds S] [--threads 1,2] [--python PY]
#                       [--monitors 4,16 --monitor-hop 0.5,0.25] [--embed exact,chunk-max]
#                       [--skip-limit] ...
#   the side-by-side benchmark of issue 14 (scripts/bench/pipeline.py): the no-overlap ONNX
#   Runtime limit, `earshot run` at hop = window, /2, /4 with exact and chunk-max profiles, the
#   Python way when a Python with torch is given, peak RSS, start-to-READY and onset-to-event
#   latency; a table, then JSON.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
if [ -z "${ORT_DYLIB_PATH:-}" ] && ! ls .ort/libonnxruntime.so* >/dev/null 2>&1; then
  echo "bench: ONNX Runtime not found in .ort/; run scripts/setup-ort.sh first (or set ORT_DYLIB_PATH)" >&2
  exit 1
fi
if [ "${1:-}" = "--pipeline" ]; then
  shift
  cargo build --release >&2
  # --skip-limit needs no bench binary (building it rebuilds the dev-dependency feature set).
  case " $* " in *" --skip-limit "*) ;; *) cargo bench --bench pipeline --no-run >&2 ;; esac
  exec python3 scripts/bench/pipeline.py "$@"
fi
# Build output goes to stderr so that `--json` leaves clean JSON on stdout.
cargo bench --bench core --no-run >&2
exec cargo bench --quiet --bench core -- "$@"
