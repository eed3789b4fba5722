#!/usr/bin/env bash
# tools/gpu/gpu_check.sh — the one prepared script for a lent GPU machine (`make gpu-check`).
#
# Run THERE, in the repository root of the copy the device tool made, after `make gpu-bundle` HERE
# (tools/gpu/bundle_deps.sh; the call carries build-gpu-deps/). See cuda/README.md, "Running the
# GPU check on a lent H200". Without apt or network there, it builds a separate tree build-gpu/
# against build-gpu-deps/, then, in order of value, within a time budget:
#   a. the machine: nvidia-smi, nvcc, cmake, c++, compute-sanitizer versions
#      (then configure; build dsv2, the GPU tests and the GPU benchmarks; sass: sm_90a in them)
#   b. every GPU test (ctest -L gpu), with its output
#   c. dsv2 compare --device cuda: the engine on the GPU against the fp64 oracle (preset tiny in
#      fp32 and bf16, data/golden/lite, data/models/kjv-tiny in bf16); and dsv2 compare of the
#      oracle against the PyTorch golden data (CPU)
#   d. each GPU test binary under compute-sanitizer: memcheck, racecheck, synccheck, initcheck
#      (with DSV2_GPU_TEST_QUICK=1: a test may then leave out its largest shapes, e.g. test_cuda_linear),
#      stopping early enough to leave GPU_CHECK_BENCH_RESERVE_S for the benchmarks
#   e. the GPU benchmarks, each beside its PyTorch peer on the same GPU in the same run: the
#      DeepSeekMoE layer and whole-model decode (dsv2_gpu_moe_bench, tools/bench/moe_torch.py), then
#      MLA decode at FlashMLA's shapes (dsv2_gpu_bench, tools/bench/mla_decode_torch.py)
#   f. what CI proves anyway, if time is left: the rest of the tree, the CPU suite (ctest -LE gpu)
#      and a small CPU benchmark (dsv2 bench)
# Time on the lent H200 (16 cores), estimated (no run yet): configure 20 s, build 90–150 s, GPU
# tests 30–60 s, compare 20–40 s, benchmarks about 135 s (MoE 45 + its peer 45, MLA 20 + 25):
# 300–450 s, so the default 480 s budget holds them, the sanitizers get what is left above the
# benchmarks' reserve, and f is reached only when the build is fast (its steps then say "not run:
# time budget spent"). Every step is capped, and capped again by what is left, so the script ends
# within the budget (+ the 10 s kill grace of a step cut short) whatever happens.
# It writes the full log and a Markdown summary (a table: step, result, seconds) to $OUT/ when
# OUT is set (the device tool's folder that comes back), else to build-gpu/gpu-check/; prints the
# table LAST on stdout; and exits 1 if any step failed (or timed out), after writing the summary.
# A failing step never stops the later ones.
#
# Knobs (environment variables):
#   GPU_CHECK_BUDGET_S   seconds for the whole script (default 480): a step gets at most what is
#                        left; a step that would get under 15 s is skipped, and says so
#   GPU_CHECK_JOBS       build and CTest parallelism (default: nproc)
#   GPU_CHECK_SKIP       step ids to skip, space-separated: configure build sass gpu-tests
#                        gpu-compare compare sanitize moe-bench gpu-bench build-all cpu-tests bench
#                        (moe-bench: the MoE bench and its peer; gpu-bench: the MLA bench and its peer)
#   GPU_CHECK_SKIP_BUILD=1  the same as GPU_CHECK_SKIP="configure build build-all" (reuse build-gpu/)
#   GPU_CHECK_SANITIZERS compute-sanitizer tools (default "memcheck racecheck synccheck initcheck")
#   GPU_CHECK_SANITIZER_TIMEOUT_S  per tool and binary (default 120)
#   GPU_CHECK_SANITIZE_BUDGET_S    for all compute-sanitizer runs together (default 200), so that
#                        the later steps keep their time; runs past it are skipped, and say so
#   GPU_CHECK_BENCH_RESERVE_S      seconds kept for the GPU benchmarks (default 150): the sanitizers
#                        start no run that would cut into them (0 when both benches are skipped)
#   GPU_CHECK_CAP_FACTOR  multiplies every step's own time cap (default 1; e.g. 5 on a 2-core machine)
#   GPU_CHECK_REQUIRE_GPU  1 (default): no GPU is a failure; 0: it is a skip (dry runs elsewhere)
#   GPU_CHECK_CMAKE_ARGS extra configure arguments (word-split), e.g. -DCMAKE_IGNORE_PREFIX_PATH=/usr
#   GPU_CHECK_DEPS       the bundle (default build-gpu-deps); GPU_CHECK_BUILD the tree (build-gpu)
#   GIT_COMMIT, GIT_DIRTY  the source's commit and dirty flag, where .git did not travel (else
#                        build-gpu-deps/SOURCE, written by the bundle, is used)
set -u

cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
DEPS=$(cd "${GPU_CHECK_DEPS:-build-gpu-deps}" 2>/dev/null && pwd || echo "$ROOT/${GPU_CHECK_DEPS:-build-gpu-deps}")
BUILD=${GPU_CHECK_BUILD:-build-gpu}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BUDGET=${GPU_CHECK_BUDGET_S:-480}
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}
SKIP=" ${GPU_CHECK_SKIP:-} "
[ "${GPU_CHECK_SKIP_BUILD:-0}" = 1 ] && SKIP="$SKIP configure build build-all "
SANITIZERS=${GPU_CHECK_SANITIZERS:-memcheck racecheck synccheck initcheck}
SAN_TIMEOUT=${GPU_CHECK_SANITIZER_TIMEOUT_S:-120}
SAN_BUDGET=${GPU_CHECK_SANITIZE_BUDGET_S:-200}
BENCH_RESERVE=${GPU_CHECK_BENCH_RESERVE_S:-150}
REQUIRE_GPU=${GPU_CHECK_REQUIRE_GPU:-1}
CAP_FACTOR=${GPU_CHECK_CAP_FACTOR:-1}
if [ -n "${OUT:-}" ]; then RESULTS=$OUT; else RESULTS=$BUILD/gpu-check; fi
STEPLOGS=$BUILD/gpu-check/steps
mkdir -p "$RESULTS" "$STEPLOGS" || exit 2
LOG=$RESULTS/gpu-check.log
SUMMARY=$RESULTS/summary.md
: > "$LOG"
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
RESERVE=10   # seconds kept for the summary

# The bundle replaces the Debian packages (tools/gpu/bundle_deps.sh). Exported, so that the
# consumer project test_install configures finds the same packages.
export CMAKE_PREFIX_PATH="$DEPS${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export DSV2_ONIG_ROOT="$DEPS"                      # Oniguruma without pkg-config (reference/CMakeLists.txt)
export PKG_CONFIG_PATH="$DEPS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
export PATH

# --- bookkeeping ----------------------------------------------------------------------------------
ROW_STEP=(); ROW_RESULT=(); ROW_SECS=(); ROW_NOTE=()
FAILED=0
say() { echo "$*" | tee -a "$LOG"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# record STEP RESULT SECONDS NOTE — one row of the table. RESULT: PASS, FAIL, TIMEOUT, SKIP, N/A.
record() {
  ROW_STEP+=("$1"); ROW_RESULT+=("$2"); ROW_SECS+=("$3"); ROW_NOTE+=("$4")
  case "$2" in FAIL|TIMEOUT) FAILED=$((FAILED + 1)) ;; esac
  say "    → $2 ($3 s)${4:+ — $4}"
}
skipped() { case "$SKIP" in *" $1 "*) return 0 ;; esac; return 1; }
# left CAP — the seconds a step may take: CAP, or less when the budget is nearly spent (0: skip).
left() {
  local cap=$(($1 * CAP_FACTOR))
  local rest=$((DEADLINE - $(date +%s) - RESERVE))
  [ "$rest" -lt 15 ] && { echo 0; return; }
  [ "$rest" -lt "$cap" ] && { echo "$rest"; return; }
  echo "$cap"
}
# run ID CAP CMD... — runs CMD (its output in steps/ID.log, then in the full log) with a timeout;
# sets RC (124: timed out; 125: not run, the budget was spent) and SECS.
run() {
  local id=$1 cap=$2; shift 2
  local t; t=$(left "$cap")
  local steplog=$STEPLOGS/$id.log
  say ""
  say "=== [$(( $(date +%s) - T0 )) s] $id: $*"
  if [ "$t" = 0 ]; then RC=125; SECS=0; say "    not run: the time budget ($BUDGET s) is spent"; return; fi
  local start; start=$(now)
  timeout -k 10 "$t" "$@" > "$steplog" 2>&1
  RC=$?
  [ "$RC" = 137 ] && RC=124
  SECS=$(elapsed "$start")
  append_log "$steplog"
  [ "$RC" = 124 ] && say "    timed out after $t s"
}
# append_log FILE — into the full log; a huge one only by its head and tail.
append_log() {
  local size; size=$(stat -c %s "$1" 2>/dev/null || echo 0)
  if [ "$size" -gt 2000000 ]; then
    head -c 300000 "$1" >> "$LOG"; echo "[… $size bytes in all; middle left out …]" >> "$LOG"; tail -c 1200000 "$1" >> "$LOG"
  else
    cat "$1" >> "$LOG"
  fi
}
# show_tail ID — the end of a failed step's log on stdout (the device tool returns stdout's tail).
show_tail() { echo "    --- last lines of $1 ---"; tail -n "${2:-25}" "$STEPLOGS/$1.log" | sed 's/^/    | /'; }
# plain RESULT from RC: 0 PASS, 77 SKIP, 124 TIMEOUT, 125 SKIP (budget), else FAIL.
verdict() {
  case "$RC" in
    0) echo PASS ;; 77) echo SKIP ;; 124) echo TIMEOUT ;; 125) echo SKIP ;; *) echo FAIL ;;
  esac
}
budget_note() { [ "$RC" = 125 ] && echo "not run: time budget spent" || echo "${1:-}"; }

# --- a. the machine -------------------------------------------------------------------------------
# Proves which GPU, driver and toolkit the results below belong to.
say "# gpu_check.sh in $ROOT, budget $BUDGET s, $JOBS jobs, results in $RESULTS"
COMMIT=""; COMMIT_FROM=""; DIRTY="unknown"
if [ -e "$ROOT/.git" ] && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
  COMMIT=$(git -C "$ROOT" rev-parse HEAD); COMMIT_FROM="git"
  git -C "$ROOT" status --short > "$STEPLOGS/git-status.log" 2>&1
  n=$(wc -l < "$STEPLOGS/git-status.log")
  [ "$n" -gt 0 ] && DIRTY="yes ($n paths in git status --short)" || DIRTY="no"
  { echo "git status --short:"; head -n 50 "$STEPLOGS/git-status.log"; } >> "$LOG"
elif [ -n "${GIT_COMMIT:-}" ]; then
  COMMIT=$GIT_COMMIT; COMMIT_FROM="GIT_COMMIT"; DIRTY=${GIT_DIRTY:-unknown}
elif [ -f "$DEPS/SOURCE" ]; then
  COMMIT=$(sed -n 's/^commit=//p' "$DEPS/SOURCE"); COMMIT_FROM="build-gpu-deps/SOURCE, $(sed -n 's/^stamped=//p' "$DEPS/SOURCE")"
  n=$(sed -n 's/^dirty_files=//p' "$DEPS/SOURCE")
  [ "${n:-0}" -gt 0 ] && DIRTY="yes ($n paths in git status --short when bundled; diff $(sed -n 's/^diff_sha256=//p' "$DEPS/SOURCE"))" || DIRTY="no (when bundled)"
else
  COMMIT="unknown"; COMMIT_FROM="no .git, no GIT_COMMIT, no bundle stamp"
fi
SHORT=${COMMIT:0:7}
HAVE_GPU=0; GPU_LINE="no GPU (nvidia-smi absent or lists none)"
if command -v nvidia-smi >/dev/null 2>&1 && timeout 60 nvidia-smi -L > "$STEPLOGS/nvidia-smi-L.log" 2>&1 && grep -q "^GPU " "$STEPLOGS/nvidia-smi-L.log"; then
  HAVE_GPU=1
  GPU_LINE=$(timeout 60 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -n 1)
  GPU_LINE="${GPU_LINE:-$(head -n 1 "$STEPLOGS/nvidia-smi-L.log")}"
fi
NVCC_LINE=$( (nvcc --version 2>/dev/null | grep -i release) || echo "nvcc not found")
CMAKE_LINE=$( (cmake --version 2>/dev/null | head -n 1) || echo "cmake not found")
CXX_LINE=$( (${CXX:-c++} --version 2>/dev/null | head -n 1) || echo "no c++")
SANITIZER=$(command -v compute-sanitizer 2>/dev/null || true)
SAN_LINE=$([ -n "$SANITIZER" ] && timeout 60 "$SANITIZER" --version 2>/dev/null | grep -i version | head -n 1 || echo "compute-sanitizer not found")
CUOBJDUMP=$(command -v cuobjdump 2>/dev/null || true)
HOST_LINE="$(uname -m), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
{
  echo "commit:  $COMMIT ($COMMIT_FROM); dirty: $DIRTY"
  echo "gpu:     $GPU_LINE"
  echo "nvcc:    $NVCC_LINE"
  echo "cmake:   $CMAKE_LINE"
  echo "c++:     $CXX_LINE"
  echo "sanitizer: $SAN_LINE"
  echo "host:    $HOST_LINE"
  echo "bundle:  $DEPS ($(du -sh "$DEPS" 2>/dev/null | cut -f1 || echo missing))"
} | tee -a "$LOG"
start=$(now)
if [ "$HAVE_GPU" = 1 ]; then
  timeout 60 nvidia-smi > "$STEPLOGS/nvidia-smi.log" 2>&1; append_log "$STEPLOGS/nvidia-smi.log"
  record "a. device (nvidia-smi)" PASS "$(elapsed "$start")" "$GPU_LINE"
elif [ "$REQUIRE_GPU" = 1 ]; then
  record "a. device (nvidia-smi)" FAIL "$(elapsed "$start")" "no GPU: nothing below proves anything about a GPU"
else
  record "a. device (nvidia-smi)" SKIP "$(elapsed "$start")" "no GPU here (GPU_CHECK_REQUIRE_GPU=0)"
fi

# --- configure and build (against the bundle only for the packages) -------------------------------
# Proves the tree builds on the device's toolchain (its nvcc, its c++) with sm_90a SASS + sm_80 PTX.
GEN="Unix Makefiles"; command -v ninja >/dev/null 2>&1 && GEN=Ninja
if skipped configure; then
  record "configure (build-gpu)" SKIP 0 "GPU_CHECK_SKIP"
else
  if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=$GEN\$" "$BUILD/CMakeCache.txt"; then
    say "build-gpu was made with another generator; starting it afresh"
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
  fi
  [ -d "$DEPS/include" ] || say "WARNING: no bundle at $DEPS (run make gpu-bundle before the device call); using whatever this machine has"
  # CMAKE_CUDA_ARCHITECTURES only steers CMake's compiler check: cuda/ and exercises/ set their
  # -gencode flags themselves (sm_90a SASS + compute_80 PTX).
  # shellcheck disable=SC2086
  run configure 180 cmake -S "$ROOT" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$DEPS" -DDSV2_ONIG_ROOT="$DEPS" -DCMAKE_CUDA_ARCHITECTURES=90a \
      ${GPU_CHECK_CMAKE_ARGS:-}
  r=$(verdict); note=$(budget_note "$GEN")
  if [ "$RC" = 0 ]; then
    found=$(grep -E "^(Eigen3|nlohmann_json|CLI11|Catch2)_DIR:PATH=" "$BUILD/CMakeCache.txt" | sed 's/_DIR:PATH=/ /' | awk -v d="$DEPS" '{ print $1 (index($2, d) == 1 ? " (bundle)" : " (" $2 ")") }' | tr '\n' ' ')
    note="$GEN; $found; onig: $(grep '^DSV2_ONIG_LIBRARY:FILEPATH=' "$BUILD/CMakeCache.txt" | cut -d= -f2- | sed "s|^$DEPS|bundle|")"
    grep -q "no CUDA compiler found" "$STEPLOGS/configure.log" && { r=FAIL; note="configured without CUDA: nvcc not found; $note"; }
  fi
  [ "$RC" != 0 ] && [ "$RC" != 125 ] && note="$GEN; $(grep -m1 -A2 'CMake Error' "$STEPLOGS/configure.log" | tr -s ' \n' ' ' | cut -c1-160)"
  record "configure (build-gpu)" "$r" "$SECS" "$note"
  [ "$r" = PASS ] || show_tail configure 40
fi

# The GPU tests' binaries: the commands of the tests labelled gpu in the CTest files of build-gpu
# (before they are built, when `ctest --show-only` cannot name them yet), so that new GPU tests
# join without editing this file.
GPU_BINS=()
gpu_bins() {
  if command -v python3 >/dev/null 2>&1; then
    mapfile -t GPU_BINS < <(python3 - "$BUILD" <<'PY'
import pathlib, re, sys
cmds, labels = {}, {}
for f in sorted(pathlib.Path(sys.argv[1]).rglob("CTestTestfile.cmake")):
    text = f.read_text(errors="replace")
    for m in re.finditer(r'add_test\(\[=\[(.*?)\]=\] "([^"]+)"', text):
        cmds[m[1]] = m[2]
    for m in re.finditer(r'set_tests_properties\(\[=\[(.*?)\]=\] PROPERTIES (.*)', text):
        lab = re.search(r'LABELS "([^"]*)"', m[2])
        labels[m[1]] = lab[1].split(";") if lab else []
seen = []
for name, cmd in cmds.items():
    if "gpu" in labels.get(name, []) and cmd not in seen:
        seen.append(cmd)
# the project's GPU tests first, the exercises' CUDA solutions (twins of the same kernels) last
for cmd in sorted(seen, key=lambda c: "/exercises/" in c):
    print(cmd)
PY
)
  else
    mapfile -t GPU_BINS < <(grep -rhoE '"/[^"]*/bin/(test_cuda_[A-Za-z0-9_]*|ex[0-9]+_solution)"' --include=CTestTestfile.cmake "$BUILD" | tr -d '"' | sort -u)
  fi
}
[ -f "$BUILD/CMakeCache.txt" ] && gpu_bins
# Keep going past a broken target, so that one compile error stops no other test.
KEEP_GOING=(-- -k)
grep -q "^CMAKE_GENERATOR:INTERNAL=Ninja\$" "$BUILD/CMakeCache.txt" 2>/dev/null && KEEP_GOING=(-- -k 0)
GPU_TARGETS=()
for b in "${GPU_BINS[@]}"; do GPU_TARGETS+=("$(basename "$b")"); done
say "GPU test binaries: ${GPU_TARGETS[*]:-none}"

if skipped build; then
  record "build: dsv2 + GPU tests" SKIP 0 "GPU_CHECK_SKIP"
elif [ ! -f "$BUILD/CMakeCache.txt" ]; then
  record "build: dsv2 + GPU tests" FAIL 0 "not configured"
else
  BENCH_TARGETS=(); [ -d "$BUILD/bench" ] && BENCH_TARGETS=(dsv2_gpu_bench dsv2_gpu_moe_bench)
  run build 300 cmake --build "$BUILD" -j "$JOBS" --target dsv2 "${GPU_TARGETS[@]}" "${BENCH_TARGETS[@]}" "${KEEP_GOING[@]}"
  record "build: dsv2 + GPU tests" "$(verdict)" "$SECS" "$(budget_note "${GPU_TARGETS[*]:-no GPU test targets} dsv2 ${BENCH_TARGETS[*]}")"
  [ "$RC" = 0 ] || show_tail build 40
fi

# Proves the binaries hold Hopper machine code (not only PTX the driver would compile at start).
if skipped sass; then
  record "sass: sm_90a in GPU tests" SKIP 0 "GPU_CHECK_SKIP"
elif [ -z "$CUOBJDUMP" ]; then
  record "sass: sm_90a in GPU tests" N/A 0 "cuobjdump not found"
elif [ "${#GPU_BINS[@]}" = 0 ]; then
  record "sass: sm_90a in GPU tests" FAIL 0 "no GPU test binaries"
else
  start=$(now); bad=""; : > "$STEPLOGS/sass.log"
  for b in "${GPU_BINS[@]}"; do
    one=$STEPLOGS/sass-$(basename "$b").log
    { echo "== $b"; "$CUOBJDUMP" --list-elf "$b"; "$CUOBJDUMP" --list-ptx "$b"; } > "$one" 2>&1
    grep -q "sm_90a" "$one" || bad="$bad $(basename "$b")"
    cat "$one" >> "$STEPLOGS/sass.log"
  done
  append_log "$STEPLOGS/sass.log"
  if [ -z "$bad" ]; then record "sass: sm_90a in GPU tests" PASS "$(elapsed "$start")" "$(grep -o 'sm_[0-9]*a\?\.cubin\|compute_[0-9]*a\?\.ptx' "$STEPLOGS/sass.log" | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $1, $2 }')"
  else record "sass: sm_90a in GPU tests" FAIL "$(elapsed "$start")" "no sm_90a ELF in:$bad"; fi
fi

# --- b. the GPU tests -----------------------------------------------------------------------------
# Proves the kernels equal the fp64 oracle on the device (each test prints its errors and bounds).
if skipped gpu-tests; then
  record "b. GPU tests (ctest -L gpu)" SKIP 0 "GPU_CHECK_SKIP"
else
  run gpu-tests 240 ctest --test-dir "$BUILD" -L gpu -V --output-on-failure --timeout 200
  r=$(verdict); log=$STEPLOGS/gpu-tests.log
  total=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#" "$log")
  nskip=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#.*Skipped" "$log")
  nfail=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#.*(Failed|Timeout|Exception|Not Run)" "$log")
  note="$total tests: $((total - nskip - nfail)) passed, $nfail failed, $nskip skipped"
  [ "$total" = 0 ] && [ "$RC" = 0 ] && { r=FAIL; note="no GPU tests found (was nvcc found at configure?)"; }
  [ "$total" -gt 0 ] && [ "$nskip" = "$total" ] && { r=SKIP; note="$note — $(grep -m1 -o 'SKIPPED: .*' "$log")"; [ "$HAVE_GPU" = 1 ] && r=FAIL; }
  record "b. GPU tests (ctest -L gpu)" "$r" "$SECS" "$(budget_note "$note")"
  # one row per GPU test
  while IFS= read -r line; do
    name=$(echo "$line" | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: //; s/ \.+ *(\*\*\*)?[A-Za-z].*$//')
    secs=$(echo "$line" | grep -oE '[0-9.]+ sec' | cut -d' ' -f1)
    case "$line" in *Passed*) t=PASS ;; *Skipped*) t=SKIP ;; *Timeout*) t=TIMEOUT ;; *) t=FAIL ;; esac
    ROW_STEP+=("  ↳ $name"); ROW_RESULT+=("$t"); ROW_SECS+=("${secs:-?}"); ROW_NOTE+=("")
  done < <(grep -E "^ *[0-9]+/[0-9]+ Test +#" "$log")
  [ "$r" = PASS ] || [ "$r" = SKIP ] || show_tail gpu-tests 40
fi

# --- c. dsv2 compare ------------------------------------------------------------------------------
# GPU: proves the whole-model engine on the GPU (CudaBackend) matches the fp64 oracle, every named
# intermediate within the bound of its dtype (exit 0), on a preset with every V2 feature switched
# on (fp32, bf16), the V2-Lite-shaped golden model and a trained checkpoint (bf16).
DSV2=$BUILD/bin/dsv2
GPU_COMPARES=(
  "preset tiny, fp32|--preset tiny"
  "preset tiny, bf16|--preset tiny --dtype bf16"
  "golden lite, fp32|--model data/golden/lite"
  "kjv-tiny, bf16|--model data/models/kjv-tiny --dtype bf16"
)
if skipped gpu-compare; then
  record "c. dsv2 compare --device cuda" SKIP 0 "GPU_CHECK_SKIP"
elif [ ! -x "$DSV2" ]; then
  record "c. dsv2 compare --device cuda" FAIL 0 "no $DSV2"
elif ! "$DSV2" compare --help 2>&1 | grep -q -- "--device"; then
  record "c. dsv2 compare --device cuda" N/A 0 "this dsv2 compare has no --device"
else
  i=0
  for entry in "${GPU_COMPARES[@]}"; do
    i=$((i + 1)); label=${entry%%|*}; read -r -a cargs <<< "${entry#*|}"
    run "gpu-compare-$i" 60 "$DSV2" compare "${cargs[@]}" --device cuda
    r=$(verdict); note=$(grep -v '^ *$' "$STEPLOGS/gpu-compare-$i.log" | tail -n 1 | cut -c1-140)
    [ "$RC" = 77 ] && [ "$HAVE_GPU" = 1 ] && r=FAIL
    [ "$HAVE_GPU" = 0 ] && [ "$r" = FAIL ] && { r=SKIP; note="no GPU: $note"; }
    record "c. compare --device cuda: $label" "$r" "$SECS" "$(budget_note "$note")"
    [ "$r" = FAIL ] && show_tail "gpu-compare-$i" 20
  done
fi

# CPU: proves the oracle built there reproduces the PyTorch golden intermediates (fp32, 1e-5).
if skipped compare; then
  record "c. dsv2 compare (oracle vs golden lite)" SKIP 0 "GPU_CHECK_SKIP"
elif [ ! -x "$DSV2" ]; then
  record "c. dsv2 compare (oracle vs golden lite)" FAIL 0 "no $DSV2"
elif ! "$DSV2" --help 2>/dev/null | grep -qE "^ +compare( |$)"; then
  record "c. dsv2 compare (oracle vs golden lite)" N/A 0 "this dsv2 has no compare subcommand"
else
  run compare 90 "$DSV2" compare --model data/golden/lite --against data/golden/lite/golden.safetensors
  record "c. dsv2 compare (oracle vs golden lite)" "$(verdict)" "$SECS" "$(budget_note "$(grep -v '^ *$' "$STEPLOGS/compare.log" | tail -n 1 | cut -c1-140)")"
  [ "$RC" = 0 ] || show_tail compare 20
fi

# --- d. compute-sanitizer -------------------------------------------------------------------------
# memcheck: out-of-bounds and misaligned accesses, leaks; racecheck: shared-memory hazards between
# threads of a block (missing __syncthreads); synccheck: barriers used wrongly (divergent
# __syncthreads, bad __syncwarp masks); initcheck: device memory read before anything wrote it.
# Each passes only with "ERROR SUMMARY: 0 errors" and the test itself passing under the tool.
if skipped sanitize; then
  record "d. compute-sanitizer" SKIP 0 "GPU_CHECK_SKIP"
elif [ -z "$SANITIZER" ]; then
  record "d. compute-sanitizer" N/A 0 "compute-sanitizer not found on this machine"
elif [ "$HAVE_GPU" = 0 ]; then
  record "d. compute-sanitizer" SKIP 0 "no GPU"
elif [ "${#GPU_BINS[@]}" = 0 ]; then
  record "d. compute-sanitizer" FAIL 0 "no GPU test binaries"
else
  refused=0
  san_deadline=$(( $(date +%s) + SAN_BUDGET * CAP_FACTOR ))
  # the benchmarks (e) keep BENCH_RESERVE seconds of the budget, unless both are skipped
  skipped moe-bench && skipped gpu-bench && BENCH_RESERVE=0
  bench_cut=$(( DEADLINE - RESERVE - BENCH_RESERVE ))
  [ "$san_deadline" -gt "$bench_cut" ] && san_deadline=$bench_cut
  for tool in $SANITIZERS; do
    for b in "${GPU_BINS[@]}"; do
      [ "$refused" = 1 ] && break 2
      name=$(basename "$b"); id="san-$tool-$name"
      share=$(( (san_deadline - $(date +%s)) / CAP_FACTOR ))
      if [ "$share" -lt 15 ]; then
        record "d. $tool: $name" SKIP 0 "not run: the sanitizers' share is spent ($SAN_BUDGET s, less the benchmarks' $BENCH_RESERVE s)"; continue
      fi
      [ "$share" -lt "$SAN_TIMEOUT" ] || share=$SAN_TIMEOUT
      extra=()
      case "$tool" in
        memcheck) extra=(--leak-check full) ;;
        racecheck) extra=(--racecheck-report all) ;;
      esac
      run "$id" "$share" env DSV2_GPU_TEST_QUICK=1 "$SANITIZER" --tool "$tool" "${extra[@]}" --error-exitcode 86 --print-limit 20 "$b"
      log=$STEPLOGS/$id.log
      summary=$(grep -hoE "(ERROR|RACECHECK) SUMMARY: .*" "$log" | tail -n 1)
      r=$(verdict); note=$summary
      if grep -qiE "device not supported|not supported on this|unable to (find|load)|initialization failed" "$log"; then
        r=N/A; note="compute-sanitizer refused the device: $(grep -m1 -iE "not supported|unable to|initialization failed" "$log")"; refused=1
      elif [ "$RC" = 124 ]; then note="timed out (inconclusive: slow under $tool, or hung)${summary:+; $summary}"
      elif [ "$RC" = 86 ]; then r=FAIL; note="errors found: $summary"
      elif [ "$RC" = 0 ] && ! grep -q "ERROR SUMMARY: 0 errors" "$log"; then r=FAIL; note="no clean ERROR SUMMARY: $summary"
      elif [ "$RC" != 0 ] && [ "$RC" != 124 ] && [ "$RC" != 125 ] && [ "$RC" != 77 ]; then note="the test failed under $tool (exit $RC); $summary"
      fi
      record "d. $tool: $name" "$r" "$SECS" "$(budget_note "$note")"
      [ "$r" = FAIL ] && show_tail "$id" 30
    done
  done
fi

# ==== GPU BENCHMARKS: EXTEND HERE ==================================================================
# For the record (nothing is judged, a failure stops nothing); each JSON comes back from $RESULTS
# (at most 8 files come back: gpu-check.log, summary.md, moe-bench.json, moe-bench-torch.json,
# gpu-bench.json, gpu-bench-torch.json, bench-cpu.json).
#
# e1. The DeepSeekMoE layer at V2-Lite shapes (decode B = 1, 8, 64 in GB/s of expert weights read
# against the HBM datasheet and a device copy; prefill of 4096 tokens in TFLOP/s against cuBLAS
# GEMMs of the same size) and whole-model decode tokens/s (the first 4 layers of V2-Lite, bf16,
# contexts 512 and 4096): ours (build-gpu/bin/dsv2_gpu_moe_bench, bench/moe_bench.cpp), then the
# PyTorch peer on the same GPU and config (tools/bench/moe_torch.py: transformers' DeepseekV2,
# eager, bf16), which prints the ratio tables against ours. See cuda/README.md, "Benchmark: the MoE
# layer and whole-model decode". Expected about 45 s each (of ours, about 25 s build the 4-layer
# engine's weights on the host); caps 120 s each.
# json_note FILE WHAT — one line from a bench JSON for the table (python3; empty without it).
json_note() {
  command -v python3 >/dev/null 2>&1 || return 0
  python3 - "$1" "$2" <<'PY' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
out = []
if sys.argv[2] == "moe":
    for r in d.get("moe_layer", []):
        if r["dtype"] != "bf16":
            continue
        if r["phase"] == "decode":
            out.append(f"B={r['T']} {r['gbs']:.0f} GB/s")
        else:
            g = f" ({r['percent_of_gemm']:.0f}% of GEMM)" if "percent_of_gemm" in r else ""
            out.append(f"T={r['T']} {r['tflops']:.0f} TFLOP/s{g}")
    for r in (d.get("model") or {}).get("decode", []):
        out.append(f"model@{r['context']} {r['tokens_per_s']:.0f} tok/s")
else:
    a = d.get("against") or {}
    for r in a.get("moe_layer", []):
        if r["dtype"] == "bf16" and r["experts"] in ("eager", "installed") and r["T"] in (1, 64, 4096):
            out.append(f"{r['phase']} {r['T']}: torch/dsv2 {r['torch_over_dsv2']:.2f}")
    for r in a.get("model", []):
        if r["experts"] in ("eager", "installed"):
            out.append(f"model@{r['context']}: dsv2/torch {r['dsv2_over_torch']:.2f}")
    if not a:
        out.append("no ratio table")
print("; ".join(out))
PY
}
MOE_BENCH=$BUILD/bin/dsv2_gpu_moe_bench
if skipped moe-bench; then
  record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" SKIP 0 "GPU_CHECK_SKIP"
  record "e. GPU bench: MoE (PyTorch peer)" SKIP 0 "GPU_CHECK_SKIP"
else
  if [ ! -x "$MOE_BENCH" ] && [ -f "$BUILD/CMakeCache.txt" ] && [ -d "$BUILD/bench" ]; then
    run moe-bench-build 120 cmake --build "$BUILD" -j "$JOBS" --target dsv2_gpu_moe_bench
  fi
  rm -f "$RESULTS/moe-bench.json"
  if [ ! -x "$MOE_BENCH" ]; then
    record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" FAIL 0 "no $MOE_BENCH (not built)"
  else
    run moe-bench 120 "$MOE_BENCH" --json "$RESULTS/moe-bench.json"
    r=$(verdict); note=""; [ -s "$RESULTS/moe-bench.json" ] && note=$(json_note "$RESULTS/moe-bench.json" moe)
    [ "$RC" = 77 ] && { note=$(grep -m1 -o 'SKIPPED: .*' "$STEPLOGS/moe-bench.log"); [ "$HAVE_GPU" = 1 ] && r=FAIL; }
    record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" "$r" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail moe-bench 20
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    record "e. GPU bench: MoE (PyTorch peer)" N/A 0 "no python3"
  else
    against=(); [ -s "$RESULTS/moe-bench.json" ] && against=(--against "$RESULTS/moe-bench.json")
    run moe-bench-torch 120 env PYTHONUNBUFFERED=1 python3 "$ROOT/tools/bench/moe_torch.py" \
        --json "$RESULTS/moe-bench-torch.json" "${against[@]}"
    r=$(verdict); note=""; [ -s "$RESULTS/moe-bench-torch.json" ] && note=$(json_note "$RESULTS/moe-bench-torch.json" torch)
    [ "$RC" = 77 ] && { note=$(grep -m1 -o 'SKIPPED: .*' "$STEPLOGS/moe-bench-torch.log"); [ "$HAVE_GPU" = 1 ] && r=FAIL; }
    record "e. GPU bench: MoE (PyTorch peer)" "$r" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail moe-bench-torch 20
  fi
fi

# e2. MLA decode at FlashMLA's shapes (B = 128, s_k ∈ {4096, 8192}, n_h ∈ {16, 128}, bf16): ours
# (build-gpu/bin/dsv2_gpu_bench, bench/mla_decode_bench.cu) and the PyTorch peer on the same GPU
# in the same run (tools/bench/mla_decode_torch.py, which prints the ratio table against ours).
# See cuda/README.md, "Benchmark: MLA decode at FlashMLA's shapes". Small budget: ≤ 60 s for
# both (30 s caps); a failure here is recorded and never stops the script. JSON files come back
# as $RESULTS/gpu-bench.json and $RESULTS/gpu-bench-torch.json (at most 8 files come back).
GPU_BENCH=$BUILD/bin/dsv2_gpu_bench
if skipped gpu-bench; then
  record "e. GPU bench: MLA decode (dsv2_gpu_bench)" SKIP 0 "GPU_CHECK_SKIP"
  record "e. GPU bench: MLA decode (PyTorch peer)" SKIP 0 "GPU_CHECK_SKIP"
else
  if [ ! -x "$GPU_BENCH" ] && [ -f "$BUILD/CMakeCache.txt" ] && [ -d "$BUILD/bench" ]; then
    run gpu-bench-build 120 cmake --build "$BUILD" -j "$JOBS" --target dsv2_gpu_bench
  fi
  if [ ! -x "$GPU_BENCH" ]; then
    record "e. GPU bench: MLA decode (dsv2_gpu_bench)" FAIL 0 "no $GPU_BENCH (not built)"
  else
    run gpu-bench 30 "$GPU_BENCH" --iters 20 --warmup 2 --sets 2 --json "$RESULTS/gpu-bench.json"
    note=$(grep -E '^ +128 ' "$STEPLOGS/gpu-bench.log" | awk '{ printf "%s%s/%s: %s µs, %s of floor", (NR > 1 ? "; " : ""), $2, $3, $5, $NF }')
    r=$(verdict)
    [ "$RC" = 77 ] && { note=$(grep -m1 -o 'SKIPPED: .*' "$STEPLOGS/gpu-bench.log"); [ "$HAVE_GPU" = 1 ] && r=FAIL; }
    record "e. GPU bench: MLA decode (dsv2_gpu_bench)" "$r" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail gpu-bench 20
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    record "e. GPU bench: MLA decode (PyTorch peer)" N/A 0 "no python3"
  else
    against=(); [ -s "$RESULTS/gpu-bench.json" ] && against=(--against "$RESULTS/gpu-bench.json")
    run gpu-bench-torch 30 python3 "$ROOT/tools/bench/mla_decode_torch.py" --iters 20 --warmup 2 --sets 2 \
        --json "$RESULTS/gpu-bench-torch.json" "${against[@]}"
    note=$(awk '/^ratio/ { on = 1; next } on && /^ +128 / { printf "%s%s/%s: torch/dsv2 %s", (n++ ? "; " : ""), $2, $3, $6 }' "$STEPLOGS/gpu-bench-torch.log")
    r=$(verdict)
    [ "$RC" = 77 ] && { note=$(grep -m1 -o 'SKIPPED: .*' "$STEPLOGS/gpu-bench-torch.log"); [ "$HAVE_GPU" = 1 ] && r=FAIL; }
    record "e. GPU bench: MLA decode (PyTorch peer)" "$r" "$SECS" "$(budget_note "${note:-no ratio table}")"
    [ "$RC" = 0 ] || show_tail gpu-bench-torch 20
  fi
fi
# ==== END GPU BENCHMARKS ===========================================================================

# --- f. what CI proves too: the rest of the tree, the CPU suite, a CPU benchmark -------------------
if skipped build-all; then
  record "f. build: everything" SKIP 0 "GPU_CHECK_SKIP"
elif [ ! -f "$BUILD/CMakeCache.txt" ]; then
  record "f. build: everything" FAIL 0 "not configured"
else
  run build-all 360 cmake --build "$BUILD" -j "$JOBS" "${KEEP_GOING[@]}"
  record "f. build: everything" "$(verdict)" "$SECS" "$(budget_note)"
  [ "$RC" = 0 ] || show_tail build-all 40
fi

# Proves the oracle and the host logic on the device's compiler and CPU (CI proves them on its own).
if skipped cpu-tests; then
  record "f. CPU tests (ctest -LE gpu)" SKIP 0 "GPU_CHECK_SKIP"
else
  run cpu-tests 300 ctest --test-dir "$BUILD" -LE gpu -j "$JOBS" --output-on-failure --timeout 240
  log=$STEPLOGS/cpu-tests.log
  note=$(grep -m1 -E "tests passed, [0-9]+ tests failed out of" "$log")
  failed=$(sed -n '/The following tests FAILED/,$p' "$log" | grep -E "^\s+[0-9]+ - " | sed -E 's/^\s+[0-9]+ - //' | head -n 5 | tr '\n' ';')
  record "f. CPU tests (ctest -LE gpu)" "$(verdict)" "$SECS" "$(budget_note "$note${failed:+ — failed: $failed}")"
  [ "$RC" = 0 ] || show_tail cpu-tests 30
fi

# For the record only (nothing is judged): the CPU oracle's speed on the device's 16 cores.
if skipped bench; then
  record "f. CPU bench (V2-Lite, 2 layers)" SKIP 0 "GPU_CHECK_SKIP"
elif [ ! -x "$DSV2" ]; then
  record "f. CPU bench (V2-Lite, 2 layers)" FAIL 0 "no $DSV2"
else
  run bench 150 "$DSV2" bench --preset deepseek-v2-lite --layers 2 --prefill 256 --contexts 1024 --steps 4 \
      --threads "$JOBS" --json "$RESULTS/bench-cpu.json"
  record "f. CPU bench (V2-Lite, 2 layers)" "$(verdict)" "$SECS" "$(budget_note "$(grep -E '^ +(prefill|decode) .*absorbed' "$STEPLOGS/bench.log" | sed -E 's/ +/ /g; s/^ //; s/ \(.*//' | tr '\n' ';' | cut -c1-140)")"
  [ "$RC" = 0 ] || show_tail bench 20
fi

# --- summary --------------------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - T0 ))
if [ "$FAILED" = 0 ]; then OVERALL="PASS"; else OVERALL="FAIL ($FAILED steps failed or timed out)"; fi
[ "$HAVE_GPU" = 0 ] && OVERALL="$OVERALL — NO GPU: no GPU result here"
DATE=$(date -u +%Y-%m-%d)
{
  echo "# GPU check $DATE, $SHORT: $OVERALL"
  echo
  echo "Made by \`make gpu-check\` (tools/gpu/gpu_check.sh) in $TOTAL s; keep it as docs/gpu-runs/$DATE-$SHORT.md."
  echo
  echo "- commit: \`$COMMIT\` ($COMMIT_FROM); dirty: $DIRTY"
  echo "- gpu: $GPU_LINE"
  echo "- nvcc: $NVCC_LINE"
  echo "- cmake: $CMAKE_LINE; c++: $CXX_LINE"
  echo "- compute-sanitizer: $SAN_LINE"
  echo "- host: $HOST_LINE"
  echo
  echo "| step | result | seconds | note |"
  echo "|---|---|---:|---|"
  for i in "${!ROW_STEP[@]}"; do
    echo "| ${ROW_STEP[$i]} | ${ROW_RESULT[$i]} | ${ROW_SECS[$i]} | $(echo "${ROW_NOTE[$i]}" | sed 's/|/\\|/g') |"
  done
  if [ -f "$STEPLOGS/bench.log" ] && grep -qE "^  (floors|prefill|decode|part|cache)" "$STEPLOGS/bench.log"; then
    echo
    echo "## CPU bench (dsv2 bench, for the record)"
    echo
    echo '```'
    grep -E "^dsv2 bench: preset|^  " "$STEPLOGS/bench.log" | head -n 40
    echo '```'
  fi
  for b in moe-bench moe-bench-torch; do
    if [ -f "$STEPLOGS/$b.log" ] && grep -qE "^(dsv2_gpu_moe_bench|moe_torch): DeepSeekMoE" "$STEPLOGS/$b.log"; then
      echo
      echo "## GPU bench: $b (the MoE layer at V2-Lite shapes, whole-model decode)"
      echo
      echo '```'
      sed -n '/^\(dsv2_gpu_moe_bench\|moe_torch\): DeepSeekMoE/,$p' "$STEPLOGS/$b.log" | grep -vE "^(moe_torch|dsv2_gpu_moe_bench): (MoE layer,|whole model)" | head -n 60
      echo '```'
    fi
  done
  for b in gpu-bench gpu-bench-torch; do
    if [ -f "$STEPLOGS/$b.log" ] && grep -qE "^(dsv2_gpu_bench|mla_decode_torch): MLA" "$STEPLOGS/$b.log"; then
      echo
      echo "## GPU bench: $b (MLA decode at FlashMLA's shapes)"
      echo
      echo '```'
      sed -n '/^\(dsv2_gpu_bench\|mla_decode_torch\): MLA/,$p' "$STEPLOGS/$b.log" | grep -v "^mla_decode_torch: B=" | head -n 30
      echo '```'
    fi
  done
  if [ -f "$STEPLOGS/gpu-tests.log" ]; then
    echo
    echo "## GPU test output"
    echo
    echo '```'
    grep -E "^[0-9]+: " "$STEPLOGS/gpu-tests.log" | grep -vE "^[0-9]+: (Test command|Working Directory|Environment variables|Test timeout|Test time)" | head -n 150
    echo '```'
  fi
} > "$SUMMARY"
append_log "$SUMMARY"

# The short table LAST on stdout (the device tool returns the end of the output).
echo
echo "================================================================================"
echo "GPU check $DATE $SHORT (dirty: $DIRTY): $OVERALL — $TOTAL s"
echo "gpu: $GPU_LINE | $NVCC_LINE"
printf '%-44s %-8s %7s  %s\n' step result seconds note
for i in "${!ROW_STEP[@]}"; do
  printf '%-44s %-8s %7s  %s\n' "${ROW_STEP[$i]}" "${ROW_RESULT[$i]}" "${ROW_SECS[$i]}" "$(echo "${ROW_NOTE[$i]}" | cut -c1-110)"
done
echo "full log: $LOG; summary: $SUMMARY"
[ "$FAILED" = 0 ] || exit 1
exit 0
