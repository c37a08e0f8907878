#!/usr/bin/env bash
# Coverage-guided fuzzing of what Vigil reads from outside, for N seconds each (default
# 60): the strict envelope decoder, scenario files, vigil.toml and MCAP recordings.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]
#
# TARGET: decode_envelope (default), parse_scenario, parse_config, read_recording, all.
# Seeds each corpus with real inputs (simulator messages, the shipped scenarios and
# example config, a short recording) and prints libFuzzer's final stats (executions,
# coverage); a crash fails the script and leaves its input under fuzz/artifacts/.
set -euo pipefail
target=${1:-decode_envelope}
secs=${2:-60}
if [[ $target =~ ^[0-9]+$ ]]; then secs=$target target=decode_envelope; fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

seed() { # target corpus-dir
  case $1 in
    decode_envelope) cargo run --release -q -p vigil-sim --example corpus -- "$2" ;;
    parse_scenario) cp simulator/scenarios/*.toml "$2"/ ;;
    parse_config) cp vigil.example.toml "$2"/ ;;
    read_recording)
      if [[ ! -s $2/seed.mcap ]]; then
        local vigil=target/release/vigil
        [[ -x $vigil ]] || { cargo build --release -q --workspace --bins; }
        "$vigil" run --scenario fuzz/seed-scenario.toml --duration 0.3 --record "$2/seed.mcap" >/dev/null
      fi ;;
    *) echo "fuzz.sh: unknown target $1" >&2; exit 2 ;;
  esac
}

run() { # target
  local corpus=fuzz/corpus/$1
  mkdir -p "$corpus"
  seed "$1" "$corpus"
  echo "== $1 (${secs}s)"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$1" "../$corpus" -- \
    -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 25)
}

if [[ $target == all ]]; then
  for t in decode_envelope parse_scenario parse_config read_recording; do run "$t"; done
else
  run "$target"
fi
