#!/usr/bin/env bash
# tools/make/fuzz.sh BUILD SECONDS SEED — runs each libFuzzer target of BUILD (bin/fuzz_*) for
# SECONDS from its seed corpus (fuzz/corpus/NAME), its new inputs under BUILD/corpus/NAME; on a
# failure prints the end of its log, saves the input under BUILD/ and exits 1. (`make fuzz`)
set -uo pipefail
build=${1:?usage: fuzz.sh BUILD SECONDS SEED}; seconds=${2:-30}; seed=${3:-1}
for f in "$build"/bin/fuzz_*; do
  name=$(basename "$f"); corpus=fuzz/corpus/${name#fuzz_}; work=$build/corpus/${name#fuzz_}
  mkdir -p "$work"; echo "== $name: $seconds s from $corpus"
  if ! "$f" -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/" "$work" "$corpus" > "$work.log" 2>&1; then
    tail -n 60 "$work.log"; echo "FUZZ FAILURE in $name (input saved under $build/)"; exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$work.log"
done
