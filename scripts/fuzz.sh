#!/usr/bin/env bash
# Fuzzes earshot's parsers of untrusted input with cargo-fuzz (libFuzzer): each target of
# fuzz/ runs for SECONDS (default 60) from its committed corpus (fuzz/corpus/<target>);
# new inputs found go to fuzz/target-corpus/<target> (not committed). A crash stops the run
# and leaves its input in fuzz/artifacts/<target>/: save it as
# fuzz/regressions/<target>/<name>, fix the bug, and `cargo test --test fuzz_regressions`
# keeps it fixed on stable.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs the nightly toolchain; installs cargo-fuzz from crates.io if it is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here/fuzz"
seconds=${1:-60}
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "== installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
# The targets write their inputs as files here (tmpfs); removed on exit.
scratch=$(mktemp -d "${TMPDIR:-/dev/shm}/earshot-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export EARSHOT_FUZZ_SCRATCH="$scratch"
echo "== building ${#targets[@]} fuzz targets"
time cargo +nightly fuzz build
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "target-corpus/$t"
  # Corpus dirs: the first gets new inputs, the committed one only seeds.
  cargo +nightly fuzz run "$t" "target-corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -print_final_stats=1
done
echo "== all ${#targets[@]} targets ran ${seconds}s without a crash"
