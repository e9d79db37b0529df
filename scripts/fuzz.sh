#!/usr/bin/env bash
# Fuzzes earshot's parsers of untrusted input with libFuzzer: each target of fuzz/ runs for
# SECONDS from its committed corpus (fuzz/corpus/<target>).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]          (default 60 s; nightly + cargo-fuzz, ASan)
#        scripts/fuzz.sh --quick [SECONDS] [TARGET...]  (default 10 s; stable, no cargo-fuzz)
#
# The default mode is cargo-fuzz's: nightly, AddressSanitizer, release build; it installs
# cargo-fuzz if missing. New inputs go to fuzz/target-corpus/<target> (not committed). A crash
# stops the run and leaves its input in fuzz/artifacts/<target>/: save it as
# fuzz/regressions/<target>/<name>, fix the bug, and `cargo test --test fuzz_regressions`
# keeps it fixed on stable.
#
# --quick is what CI runs (scripts/test.sh): the same targets, the same libFuzzer and the same
# coverage guidance (SanitizerCoverage's 8-bit counters, PC table and compare tracing are plain
# rustc -C flags), built by stable cargo with an unoptimised profile and without ASan, so no
# nightly, no build-std and no cargo-fuzz install: a cold build costs ~6 CPU-minutes instead of
# ~11 plus the install. What it cannot see is memory errors in unsafe code that do not panic,
# which the nightly mode is for. New inputs go to a temporary directory; a crash leaves its
# input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here/fuzz"
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
if ((quick)); then seconds=${1:-10}; else seconds=${1:-60}; fi
shift || true
# The targets write their inputs as files here (tmpfs); removed on exit.
scratch=$(mktemp -d "${TMPDIR:-/dev/shm}/earshot-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export EARSHOT_FUZZ_SCRATCH="$scratch"
libfuzzer_args=(-max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10
  -print_final_stats=1)

if ((quick)); then
  host=$(rustc -vV | sed -n 's/^host: //p')
  export CARGO_TARGET_DIR="$here/fuzz/target/quick"
  export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
  # --target keeps RUSTFLAGS off build scripts and proc macros, as cargo-fuzz does.
  echo "== building the fuzz targets (stable, SanitizerCoverage, profile fuzz-quick)"
  time cargo build --target "$host" --profile fuzz-quick --bins
  bin="$CARGO_TARGET_DIR/$host/fuzz-quick"
  targets=("$@")
  if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^earshot-fuzz$')
  fi
  for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s"
    new="$scratch/corpus-$t"
    mkdir -p "$new" "artifacts/$t"
    log="$scratch/$t.log"
    status=0
    "$bin/$t" "$new" "corpus/$t" -artifact_prefix="artifacts/$t/" "${libfuzzer_args[@]}" \
      >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
      tail -n 40 "$log" >&2
      echo "fuzz: target $t failed (exit $status); its input is in fuzz/artifacts/$t/:" \
        "save it under fuzz/regressions/$t/ and fix the bug" >&2
      exit 1
    fi
    grep -E '^(INFO: seed corpus|Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" || true
  done
  echo "== all ${#targets[@]} targets ran ${seconds}s without a crash"
  exit 0
fi

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
echo "== building ${#targets[@]} fuzz targets"
time cargo +nightly fuzz build
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "target-corpus/$t"
  # Corpus dirs: the first gets new inputs, the committed one only seeds.
  cargo +nightly fuzz run "$t" "target-corpus/$t" "corpus/$t" -- "${libfuzzer_args[@]}"
done
echo "== all ${#targets[@]} targets ran ${seconds}s without a crash"
