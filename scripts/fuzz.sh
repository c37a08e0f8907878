#!/usr/bin/env bash
# Fuzzes the strict envelope decoder for N seconds (default 60), seeding the corpus with
# real simulator messages. Prints libFuzzer's final stats (executions, coverage).
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
corpus=fuzz/corpus/decode_envelope
mkdir -p "$corpus"
cargo run --release -q -p vigil-sim --example corpus -- "$corpus"
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none decode_envelope "../$corpus" -- \
  -max_total_time="$secs" -max_len=65536 -print_final_stats=1 2>&1 | tail -n 25
