#!/usr/bin/env bash
# Sets up everything the tests need (see scripts/setup.sh) and runs every test:
# the Rust unit and integration tests (real ONNX Runtime, PulseAudio, Prometheus, HTTP
# servers on 127.0.0.1), the Python converter tests, and a brief coverage-guided fuzz run of
# every fuzz target.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
scripts/setup.sh --tests
echo "== python: models/test_convert.py"
.venv/bin/python models/test_convert.py
echo "== cargo test"
cargo test --all-targets --no-fail-fast -- --test-threads=2
echo "== fuzz: every target for 10 s (scripts/fuzz.sh --quick; longer: scripts/fuzz.sh 600)"
scripts/fuzz.sh --quick 10
