#!/usr/bin/env bash
# tools/make/bench.sh BUILD RUNS ARGS... — RUNS rounds of `dsv2 bench ARGS` and
# tools/bench/bench_torch.py ARGS back to back (the parts and floors in round 1 only), then the
# median of the per-round ratios (tools/bench/report.py) in BUILD/bench/report.{txt,md}. (`make bench`)
set -euo pipefail
build=${1:?usage: bench.sh BUILD RUNS ARGS...}; runs=${2:?}; shift 2
files=()
for r in $(seq 1 "$runs"); do
  echo "== round $r of $runs"
  extra=(); [ "$r" = 1 ] || extra=(--no-parts --no-floors)
  "$build/bin/dsv2" bench "$@" "${extra[@]}" --json "$build/bench/dsv2-$r.json"
  python3 tools/bench/bench_torch.py "$@" --json "$build/bench/torch-$r.json"
  files+=("$build/bench/dsv2-$r.json" "$build/bench/torch-$r.json")
done
echo; python3 tools/bench/report.py "${files[@]}" | tee "$build/bench/report.txt"
python3 tools/bench/report.py --markdown "${files[@]}" > "$build/bench/report.md"
echo "(also as Markdown: $build/bench/report.md)"
