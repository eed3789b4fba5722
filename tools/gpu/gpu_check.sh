#!/usr/bin/env bash
# tools/gpu/gpu_check.sh [tests|bench|all] — the prepared check for a lent H100 or H200
# (`make gpu-check PART=tests|bench`). See cuda/README.md, "Running the GPU check on a lent H100 or H200".
#
# HERE, first: `make gpu-prepare` (tools/gpu/prepare.sh) builds dsv2, the GPU test binaries and the
# GPU benchmarks portable (-DDSV2_NATIVE=OFF) into build-gpu-carry/ with the libraries the device
# image lacks and the Debian build dependencies. THERE, two device calls, each carrying that one
# folder and ending well inside the tool's 600 s:
#   call 1  `bash tools/gpu/gpu_check.sh tests`   correctness: what a fault must not spoil
#     a.  the machine (nvidia-smi, nvcc, compute-sanitizer); the carried binaries start, or the
#         fallback builds them there (configure + build against the bundle, 90–150 s); sass
#     b.  every GPU test binary as its own process with DSV2_CUDA_SYNC=1 (a fault is reported at
#         the launch that made it, under its own test's name) and its own time cap, so one
#         binary's fault or hang spoils no other result
#     d.  compute-sanitizer: one 20 s probe (memcheck on the smallest GPU test); if it does not
#         come back clean the step is skipped, saying why; else memcheck and racecheck on
#         test_cuda_mla and test_cuda_mla_prefill first, binary by binary, then the rest
#         (DSV2_GPU_TEST_QUICK=1: each test's quick case list); a run that times out is
#         INCONCLUSIVE, not a failure
#     c.  dsv2 compare --device cuda (the engine against the fp64 oracle) on four models, and
#         the oracle against the PyTorch golden data; on a first run (no summary under
#         docs/gpu-runs/ yet) d comes before c, afterwards c before d
#   call 2  `bash tools/gpu/gpu_check.sh bench`   speed, for the record
#     e.  the GPU benchmarks, each beside its PyTorch peer on the same GPU in the same run, their
#         floors from the GPU this is (H100: 3.35 TB/s datasheet, 3.0 measured copy; H200: 4.8, 4.0)
#     f.  the CPU oracle's benchmark (dsv2 bench), if time is left
#   `all`: both in one process (with a build tree there, also the CPU suite): for a machine
#         without the 600 s limit
# It writes $OUT/summary.md (the table: step, result, seconds, note; the tests' output, the bench
# tables) and $OUT/gpu-check.log (everything), plus the benchmarks' JSON, at most 8 files (the
# device tool's limit); prints the table LAST on stdout; exits 1 if any step FAILed or TIMED OUT
# (INCONCLUSIVE and SKIP do not count), after writing the summary. A failing step stops no other.
#
# Knobs (environment variables):
#   GPU_CHECK_PART       tests | bench | all (the first argument wins)
#   GPU_CHECK_BUDGET_S   seconds for the whole script (default: tests 420, bench 240, all 900): a
#                        step gets at most what is left; one that would get under 15 s is not
#                        run, and says so
#   GPU_CHECK_CARRY      the carried folder (default build-gpu-carry): bin/, lib/, deps/, gpu-tests.txt
#   GPU_CHECK_BUILD_THERE=1  ignore the carried binaries and build there (the fallback, forced)
#   GPU_CHECK_BUILD      the fallback's build tree (default build-gpu)
#   GPU_CHECK_DEPS       the bundle (default CARRY/deps, else build-gpu-deps)
#   GPU_CHECK_JOBS       build parallelism (default: nproc)
#   GPU_CHECK_SKIP       step ids to skip, space-separated: gpu-tests sanitize gpu-compare compare
#                        moe-bench gpu-bench bench cpu-tests sass
#   GPU_CHECK_TEST_TIMEOUT_S       per GPU test binary (default 150)
#   GPU_CHECK_SANITIZERS           tools allowed (default "memcheck racecheck synccheck initcheck")
#   GPU_CHECK_SANITIZER_TIMEOUT_S  per tool and binary (default 90)
#   GPU_CHECK_SANITIZE_BUDGET_S    for all compute-sanitizer runs together (default 180)
#   GPU_CHECK_FIRST_RUN  1: sanitizers before compare; 0: after (default: 1 while docs/gpu-runs/
#                        holds no run summary)
#   GPU_CHECK_CAP_FACTOR multiplies every step's own cap (default 1; e.g. 5 on a 2-core machine)
#   GPU_CHECK_REQUIRE_GPU  1 (default): no GPU is a failure; 0: a skip (dry runs elsewhere)
#   GPU_CHECK_CMAKE_ARGS   extra configure arguments for the fallback build (word-split)
#   GIT_COMMIT, GIT_DIRTY  the source's commit, where .git did not travel (else CARRY/SOURCE)
set -u

PART=${1:-${GPU_CHECK_PART:-tests}}
case "$PART" in tests|bench|all) ;; *) echo "gpu_check.sh: PART must be tests, bench or all, got '$PART'" >&2; exit 2 ;; esac

cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
CARRY=$(abs "${GPU_CHECK_CARRY:-build-gpu-carry}")
if [ -n "${GPU_CHECK_DEPS:-}" ]; then DEPS=$(abs "$GPU_CHECK_DEPS")
elif [ -d "$CARRY/deps" ]; then DEPS=$CARRY/deps
else DEPS=$ROOT/build-gpu-deps; fi
BUILD=$(abs "${GPU_CHECK_BUILD:-build-gpu}")
# Both calls and a machine start (1–2 min) must fit the 15 minutes of device time: 420 + 240 +
# 120 = 780 s, leaving 2 minutes for transfers and the idle wait between the calls.
case "$PART" in tests) BUDGET=${GPU_CHECK_BUDGET_S:-420} ;; bench) BUDGET=${GPU_CHECK_BUDGET_S:-240} ;; all) BUDGET=${GPU_CHECK_BUDGET_S:-900} ;; esac
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}
SKIP=" ${GPU_CHECK_SKIP:-} "
SANITIZERS=" ${GPU_CHECK_SANITIZERS:-memcheck racecheck synccheck initcheck} "
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT_S:-150}
SAN_TIMEOUT=${GPU_CHECK_SANITIZER_TIMEOUT_S:-90}
SAN_BUDGET=${GPU_CHECK_SANITIZE_BUDGET_S:-180}
REQUIRE_GPU=${GPU_CHECK_REQUIRE_GPU:-1}
CAP_FACTOR=${GPU_CHECK_CAP_FACTOR:-1}
if [ -n "${GPU_CHECK_FIRST_RUN:-}" ]; then FIRST_RUN=$GPU_CHECK_FIRST_RUN
elif ls docs/gpu-runs/20*.md >/dev/null 2>&1; then FIRST_RUN=0
else FIRST_RUN=1; fi
if [ -n "${OUT:-}" ]; then RESULTS=$OUT; else RESULTS=$BUILD/gpu-check-$PART; fi
STEPLOGS=$(abs "${GPU_CHECK_LOGS:-$BUILD/gpu-check/steps-$PART}")
rm -rf "$STEPLOGS"  # a step not run this time must not show an earlier run's log
mkdir -p "$RESULTS" "$STEPLOGS" || exit 2
LOG=$RESULTS/gpu-check.log
SUMMARY=$RESULTS/summary.md
: > "$LOG"
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
RESERVE=10   # seconds kept for the summary

for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
export PATH
export DSV2_SOURCE_DIR=$ROOT   # the test data, wherever this tree is (tests/support.hpp, source_dir)

# --- bookkeeping ----------------------------------------------------------------------------------
ROW_STEP=(); ROW_RESULT=(); ROW_SECS=(); ROW_NOTE=()
FAILED=0
say() { echo "$*" | tee -a "$LOG"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# record STEP RESULT SECONDS NOTE — one row. RESULT: PASS, FAIL, TIMEOUT, INCONCLUSIVE, SKIP, N/A.
record() {
  ROW_STEP+=("$1"); ROW_RESULT+=("$2"); ROW_SECS+=("$3"); ROW_NOTE+=("$4")
  case "$2" in FAIL|TIMEOUT) FAILED=$((FAILED + 1)) ;; esac
  say "    → $2 ($3 s)${4:+ — $4}"
}
skipped() { case "$SKIP" in *" $1 "*) return 0 ;; esac; return 1; }
# left CAP — the seconds a step may take: CAP × CAP_FACTOR, or what is left of the budget (0: none).
left() {
  local cap=$(($1 * CAP_FACTOR))
  local rest=$((DEADLINE - $(date +%s) - RESERVE))
  [ "$rest" -lt 15 ] && { echo 0; return; }
  [ "$rest" -lt "$cap" ] && { echo "$rest"; return; }
  echo "$cap"
}
# run ID CAP CMD... — CMD with a timeout, its output in steps/ID.log and then in the full log;
# sets RC (124: timed out; 125: not run, the budget was spent) and SECS.
run() {
  local id=$1 cap=$2; shift 2
  local t; t=$(left "$cap")
  local steplog=$STEPLOGS/$id.log
  : > "$steplog"
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
append_log() {  # FILE — into the full log; a huge one by its head and tail only
  local size; size=$(stat -c %s "$1" 2>/dev/null || echo 0)
  if [ "$size" -gt 2000000 ]; then
    head -c 300000 "$1" >> "$LOG"; echo "[… $size bytes in all; middle left out …]" >> "$LOG"; tail -c 1200000 "$1" >> "$LOG"
  else
    cat "$1" >> "$LOG"
  fi
}
# show_tail ID [N] — the end of a step's log on stdout (the device tool returns stdout's tail).
show_tail() { echo "    --- last lines of $1 ---"; tail -n "${2:-25}" "$STEPLOGS/$1.log" | sed 's/^/    | /'; }
# RESULT from RC: 0 PASS, 77 SKIP, 124 TIMEOUT, 125 SKIP (budget), else FAIL.
verdict() {
  case "$RC" in 0) echo PASS ;; 77) echo SKIP ;; 124) echo TIMEOUT ;; 125) echo SKIP ;; *) echo FAIL ;; esac
}
budget_note() { [ "$RC" = 125 ] && echo "not run: time budget spent" || echo "${1:-}"; }

# --- a. the machine -------------------------------------------------------------------------------
# Which GPU, driver and toolkit the results below belong to.
say "# gpu_check.sh $PART in $ROOT, budget $BUDGET s, first run: $FIRST_RUN, results in $RESULTS"
COMMIT=""; COMMIT_FROM=""; DIRTY="unknown"
if [ -e "$ROOT/.git" ] && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
  COMMIT=$(git -C "$ROOT" rev-parse HEAD); COMMIT_FROM="git"
  n=$(git -C "$ROOT" status --short | grep -vc '^??')
  [ "$n" -gt 0 ] && DIRTY="yes ($n tracked paths changed)" || DIRTY="no"
elif [ -n "${GIT_COMMIT:-}" ]; then
  COMMIT=$GIT_COMMIT; COMMIT_FROM="GIT_COMMIT"; DIRTY=${GIT_DIRTY:-unknown}
elif [ -f "$CARRY/SOURCE" ] || [ -f "$DEPS/SOURCE" ]; then
  src=$CARRY/SOURCE; [ -f "$src" ] || src=$DEPS/SOURCE
  COMMIT=$(sed -n 's/^commit=//p' "$src"); COMMIT_FROM="${src#"$ROOT"/}, $(sed -n 's/^stamped=//p' "$src")"
  n=$(sed -n 's/^dirty_files=//p' "$src")
  [ "${n:-0}" -gt 0 ] && DIRTY="yes ($n tracked paths changed when prepared; diff $(sed -n 's/^diff_sha256=//p' "$src" | cut -c1-12))" || DIRTY="no (when prepared)"
else
  COMMIT="unknown"; COMMIT_FROM="no .git, no GIT_COMMIT, no SOURCE stamp"
fi
SHORT=${COMMIT:0:7}
HAVE_GPU=0; GPU_LINE="no GPU (nvidia-smi absent or lists none)"; GPU_KIND=none
if command -v nvidia-smi >/dev/null 2>&1 && timeout 20 nvidia-smi -L > "$STEPLOGS/nvidia-smi-L.log" 2>&1 && grep -q "^GPU " "$STEPLOGS/nvidia-smi-L.log"; then
  HAVE_GPU=1
  GPU_LINE=$(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -n 1)
  GPU_LINE="${GPU_LINE:-$(head -n 1 "$STEPLOGS/nvidia-smi-L.log")}"
  case "$GPU_LINE" in *H100*) GPU_KIND=H100 ;; *H200*) GPU_KIND=H200 ;; *) GPU_KIND=other ;; esac
fi
# The benchmarks' floors, by the GPU this is (datasheet HBM rate; the device copy measured on
# such a machine here, /work/.library/device/KINDS.md): the MoE bench also measures its own copy.
case "$GPU_KIND" in
  H100) HBM_DATASHEET=3.35e12; HBM_COPY=3.0e12 ;;
  *)    HBM_DATASHEET=4.8e12;  HBM_COPY=4.0e12 ;;   # H200 (and the defaults elsewhere)
esac
NVCC_LINE=$( (nvcc --version 2>/dev/null | grep -i release) || echo "nvcc not found")
CMAKE_LINE=$( (cmake --version 2>/dev/null | head -n 1) || echo "cmake not found")
CXX_LINE=$( (${CXX:-c++} --version 2>/dev/null | head -n 1) || echo "no c++")
SANITIZER=$(command -v compute-sanitizer 2>/dev/null || true)
SAN_LINE=$([ -n "$SANITIZER" ] && timeout 20 "$SANITIZER" --version 2>/dev/null | grep -i version | head -n 1 || echo "compute-sanitizer not found")
CUOBJDUMP=$(command -v cuobjdump 2>/dev/null || true)
HOST_LINE="$(uname -m), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
{
  echo "commit:  $COMMIT ($COMMIT_FROM); dirty: $DIRTY"
  echo "gpu:     $GPU_LINE (kind: $GPU_KIND)"
  echo "nvcc:    $NVCC_LINE"
  echo "cmake:   $CMAKE_LINE"
  echo "c++:     $CXX_LINE"
  echo "sanitizer: $SAN_LINE"
  echo "host:    $HOST_LINE"
} | tee -a "$LOG"
start=$(now)
if [ "$HAVE_GPU" = 1 ]; then
  timeout 20 nvidia-smi > "$STEPLOGS/nvidia-smi.log" 2>&1; append_log "$STEPLOGS/nvidia-smi.log"
  record "a. device (nvidia-smi)" PASS "$(elapsed "$start")" "$GPU_LINE"
elif [ "$REQUIRE_GPU" = 1 ]; then
  record "a. device (nvidia-smi)" FAIL "$(elapsed "$start")" "no GPU: nothing below proves anything about a GPU"
else
  record "a. device (nvidia-smi)" SKIP "$(elapsed "$start")" "no GPU here (GPU_CHECK_REQUIRE_GPU=0)"
fi

# --- the binaries: carried from `make gpu-prepare`, or built here as the fallback --------------------
# probe_carried — 0 when every carried binary finds its libraries and dsv2 runs; else PROBE_WHY.
PROBE_WHY=""
probe_carried() {
  [ -x "$CARRY/bin/dsv2" ] || { PROBE_WHY="no $CARRY/bin/dsv2 (run make gpu-prepare here before the call)"; return 1; }
  [ -s "$CARRY/gpu-tests.txt" ] || { PROBE_WHY="no $CARRY/gpu-tests.txt"; return 1; }
  local b missing
  for b in "$CARRY"/bin/*; do
    missing=$(LD_TRACE_LOADED_OBJECTS=1 "$b" 2>&1 | grep "not found" | awk '{ print $1 }' | tr '\n' ' ')
    [ -z "$missing" ] || { PROBE_WHY="${b##*/} lacks: $missing"; return 1; }
  done
  local out rc
  out=$(timeout 15 "$CARRY/bin/dsv2" --version 2>&1); rc=$?
  [ "$rc" = 0 ] || { PROBE_WHY="dsv2 --version exited $rc${out:+: $(echo "$out" | head -n 1)}$([ "$rc" = 132 ] && echo ' (illegal instruction)')"; return 1; }
  return 0
}
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && CUDA_LIBS="$CUDA_LIBS${CUDA_LIBS:+:}$d"
done
MODE=""; BIN=""; GPU_TESTS=()
start=$(now)
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
if [ "${GPU_CHECK_BUILD_THERE:-0}" != 1 ]; then
  export LD_LIBRARY_PATH="$CARRY/lib${CUDA_LIBS:+:$CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if probe_carried; then
    MODE=carried; BIN=$CARRY/bin
    mapfile -t GPU_TESTS < "$CARRY/gpu-tests.txt"
    record "binaries: carried" PASS "$(elapsed "$start")" "${CARRY#"$ROOT"/}/bin, $(sed -n 's/^built_on=//p' "$CARRY/SOURCE" 2>/dev/null | cut -c1-80); $(sed -n 's/^commit=//p' "$CARRY/SOURCE" 2>/dev/null | cut -c1-7)"
  else
    say "the carried binaries do not start here: $PROBE_WHY — building here instead"
    export LD_LIBRARY_PATH="${CUDA_LIBS}${CUDA_LIBS:+${ORIG_LD_LIBRARY_PATH:+:}}${ORIG_LD_LIBRARY_PATH:-}"  # not the carried libgomp
    record "binaries: carried" N/A "$(elapsed "$start")" "not used: $PROBE_WHY"
  fi
fi
if [ -z "$MODE" ]; then
  MODE=built; BIN=$BUILD/bin
  GEN="Unix Makefiles"; command -v ninja >/dev/null 2>&1 && GEN=Ninja
  if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=$GEN\$" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
  fi
  DEPS_ARGS=()
  if [ -d "$DEPS/include" ]; then
    # The bundle replaces the Debian packages; exported too, for the consumer project test_install configures.
    export CMAKE_PREFIX_PATH="$DEPS${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    export DSV2_ONIG_ROOT="$DEPS"
    export PKG_CONFIG_PATH="$DEPS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    DEPS_ARGS=(-DCMAKE_PREFIX_PATH="$DEPS" -DDSV2_ONIG_ROOT="$DEPS")
  else
    say "WARNING: no bundle at $DEPS; using whatever this machine has"
  fi
  # shellcheck disable=SC2086
  run configure 180 cmake -S "$ROOT" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DDSV2_NATIVE=OFF \
      "${DEPS_ARGS[@]}" -DCMAKE_CUDA_ARCHITECTURES=90a ${GPU_CHECK_CMAKE_ARGS:-}
  r=$(verdict); note=$(budget_note "$GEN")
  grep -q "no CUDA compiler found" "$STEPLOGS/configure.log" 2>/dev/null && { r=FAIL; note="configured without CUDA: nvcc not found"; }
  record "fallback: configure (${BUILD#"$ROOT"/})" "$r" "$SECS" "$note"
  [ "$r" = PASS ] || show_tail configure 30
  if [ -f "$BUILD/CMakeCache.txt" ]; then
    mapfile -t GPU_TESTS < <(bash "$ROOT/tools/gpu/list_gpu_tests.sh" "$BUILD" 2>/dev/null)
    KEEP_GOING=(-- -k); [ "$GEN" = Ninja ] && KEEP_GOING=(-- -k 0)
    targets=(dsv2); [ "$PART" != bench ] && targets+=("${GPU_TESTS[@]}"); [ "$PART" != tests ] && targets+=(dsv2_gpu_bench dsv2_gpu_moe_bench)
    run build 300 cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" "${KEEP_GOING[@]}"
    record "fallback: build dsv2 + GPU tests + benches" "$(verdict)" "$SECS" "$(budget_note "${GPU_TESTS[*]:-no GPU test targets}")"
    [ "$RC" = 0 ] || show_tail build 40
  fi
fi
DSV2=$BIN/dsv2
say "binaries ($MODE): $BIN; GPU tests: ${GPU_TESTS[*]:-none}"

# Hopper machine code in the binaries, not only PTX the driver would compile at start.
if [ "$PART" != bench ] && ! skipped sass; then
  if [ -z "$CUOBJDUMP" ]; then
    record "sass: sm_90a in GPU tests" N/A 0 "cuobjdump not found"
  elif [ "${#GPU_TESTS[@]}" = 0 ]; then
    record "sass: sm_90a in GPU tests" FAIL 0 "no GPU test binaries"
  else
    start=$(now); bad=""; : > "$STEPLOGS/sass.log"
    for t in "${GPU_TESTS[@]}"; do
      one=$STEPLOGS/sass-$t.log
      { echo "== $t"; timeout 20 "$CUOBJDUMP" --list-elf "$BIN/$t"; timeout 20 "$CUOBJDUMP" --list-ptx "$BIN/$t"; } > "$one" 2>&1
      grep -q "sm_90a" "$one" || bad="$bad $t"
      cat "$one" >> "$STEPLOGS/sass.log"
    done
    append_log "$STEPLOGS/sass.log"
    if [ -z "$bad" ]; then record "sass: sm_90a in GPU tests" PASS "$(elapsed "$start")" "$(grep -o 'sm_[0-9]*a\?\.cubin\|compute_[0-9]*a\?\.ptx' "$STEPLOGS/sass.log" | sort | uniq -c | awk '{ printf "%s%s×%s", (NR > 1 ? ", " : ""), $1, $2 }')"
    else record "sass: sm_90a in GPU tests" FAIL "$(elapsed "$start")" "no sm_90a ELF in:$bad"; fi
  fi
fi

# --- b. the GPU tests, one process each -----------------------------------------------------------
# The kernels, every Backend operation and the engine against their references on the device.
# DSV2_CUDA_SYNC=1: every launch is synchronised and checked, so a fault is named where it
# happens, not at some later CUDA_CHECK of another test.
gpu_tests() {
  if skipped gpu-tests; then record "b. GPU tests" SKIP 0 "GPU_CHECK_SKIP"; return; fi
  if [ "${#GPU_TESTS[@]}" = 0 ]; then record "b. GPU tests" FAIL 0 "no GPU test binaries"; return; fi
  local t r note
  for t in "${GPU_TESTS[@]}"; do
    if [ ! -x "$BIN/$t" ]; then record "b. $t" FAIL 0 "not built"; continue; fi
    run "gpu-test-$t" "$TEST_TIMEOUT" env DSV2_CUDA_SYNC=1 "$BIN/$t"
    r=$(verdict); local log=$STEPLOGS/gpu-test-$t.log
    local nfail; nfail=$(grep -cE "(FAIL|FAILED|failed)" "$log")
    note="$(grep -m1 -E '^device: ' "$log" | cut -c9-40)"
    case "$RC" in
      0)   note="$(grep -cE ' ok$| ok  ' "$log") checks ok$(grep -m1 -oE 'All tests passed.*|test cases: .*' "$log" | sed 's/^/; /')" ;;
      77)  note=$(grep -m1 -o 'SKIPPED: .*' "$log"); [ "$HAVE_GPU" = 1 ] && r=FAIL ;;
      124) note="timed out (cap $TEST_TIMEOUT s)" ;;
      125) note="not run: time budget spent" ;;
      *)   note="exit $RC, $nfail FAIL lines; first: $(grep -m1 -E 'FAIL|failed|error' "$log" | cut -c1-110)" ;;
    esac
    record "b. $t" "$r" "$SECS" "$note"
    { [ "$r" = FAIL ] || [ "$r" = TIMEOUT ]; } && show_tail "gpu-test-$t" 20
  done
}

# --- d. compute-sanitizer -------------------------------------------------------------------------
# memcheck: out-of-bounds and misaligned accesses, leaks; racecheck: shared-memory hazards between
# a block's threads (a missing __syncthreads); synccheck: barriers used wrongly; initcheck: device
# memory read before anything wrote it. A run passes with exit 0 and a clean summary; one that
# runs out of time is INCONCLUSIVE (slow under the tool, or hung), not a failure.
SAN_QUEUE=(
  "memcheck test_cuda_mla" "racecheck test_cuda_mla"
  "memcheck test_cuda_mla_prefill" "racecheck test_cuda_mla_prefill"
  "memcheck test_cuda_moe" "racecheck test_cuda_moe" "racecheck test_cuda_rmsnorm"
  "memcheck test_cuda_linear" "memcheck test_cuda_backend"
  "synccheck test_cuda_mla" "synccheck test_cuda_mla_prefill" "synccheck test_cuda_moe"
  "initcheck test_cuda_mla" "initcheck test_cuda_mla_prefill" "initcheck test_cuda_moe"
  "memcheck test_cuda_engine" "racecheck test_cuda_backend" "initcheck test_cuda_backend"
)
san_args() {  # TOOL — its extra arguments
  case "$1" in memcheck) echo "--leak-check full" ;; racecheck) echo "--racecheck-report all" ;; esac
}
sanitizers() {
  if skipped sanitize; then record "d. compute-sanitizer" SKIP 0 "GPU_CHECK_SKIP"; return; fi
  if [ -z "$SANITIZER" ]; then record "d. compute-sanitizer" N/A 0 "compute-sanitizer not found on this machine"; return; fi
  if [ "$HAVE_GPU" = 0 ]; then record "d. compute-sanitizer" SKIP 0 "no GPU"; return; fi
  local probe_bin=${GPU_TESTS[0]:-}
  if [ -z "$probe_bin" ]; then record "d. compute-sanitizer" FAIL 0 "no GPU test binaries"; return; fi
  local san_deadline=$(( $(date +%s) + SAN_BUDGET * CAP_FACTOR ))
  # The probe: memcheck on the smallest GPU test, 20 s. A tool that refuses the device (seen on
  # one runtime: "Device not supported", then error 999) or hangs is caught here, whatever it says.
  # shellcheck disable=SC2046
  run san-probe 20 env DSV2_GPU_TEST_QUICK=1 "$SANITIZER" --tool memcheck --error-exitcode 86 --print-limit 20 "$BIN/$probe_bin"
  local log=$STEPLOGS/san-probe.log
  if [ "$RC" = 0 ] && grep -q "ERROR SUMMARY: 0 errors" "$log" && grep -q "^device: " "$log"; then
    record "d. memcheck: $probe_bin (probe)" PASS "$SECS" "$(grep -m1 -oE 'ERROR SUMMARY: .*' "$log")"
  elif [ "$RC" = 86 ] && grep -qE "^========= (Invalid|Program hit|Uninitialized|Leaked|Misaligned)" "$log"; then
    record "d. memcheck: $probe_bin (probe)" FAIL "$SECS" "errors found: $(grep -m1 -oE 'ERROR SUMMARY: .*' "$log")"
    show_tail san-probe 30
  else
    local why
    if [ "$RC" = 124 ]; then why="timed out after 20 s"
    elif [ "$RC" = 125 ]; then why="time budget spent"
    else why="exit $RC: $(grep -m1 -iE 'not supported|error|unable|fail' "$log" | cut -c1-120)"; fi
    record "d. compute-sanitizer" N/A "$SECS" "the probe did not come back clean ($why): sanitizers skipped"
    return
  fi
  local entry tool t share extra id r note summary
  for entry in "${SAN_QUEUE[@]}"; do
    tool=${entry%% *}; t=${entry#* }
    case "$SANITIZERS" in *" $tool "*) ;; *) continue ;; esac
    case " ${GPU_TESTS[*]} " in *" $t "*) ;; *) continue ;; esac
    share=$(( (san_deadline - $(date +%s)) / CAP_FACTOR ))
    if [ "$share" -lt 15 ]; then
      record "d. $tool: $t" SKIP 0 "not run: the sanitizers' $SAN_BUDGET s are spent"; continue
    fi
    [ "$share" -lt "$SAN_TIMEOUT" ] || share=$SAN_TIMEOUT
    id="san-$tool-$t"
    # shellcheck disable=SC2046
    run "$id" "$share" env DSV2_GPU_TEST_QUICK=1 "$SANITIZER" --tool "$tool" $(san_args "$tool") --error-exitcode 86 --print-limit 20 "$BIN/$t"
    log=$STEPLOGS/$id.log
    summary=$(grep -hoE "(ERROR|RACECHECK) SUMMARY: .*" "$log" | tail -n 1)
    r=$(verdict); note=$summary
    if [ "$RC" = 124 ]; then r=INCONCLUSIVE; note="timed out after $share s (slow under $tool, or hung)${summary:+; $summary}"
    elif [ "$RC" = 125 ]; then r=SKIP; note="not run: time budget spent"
    elif [ "$RC" = 86 ]; then r=FAIL; note="errors found: $summary"
    elif [ "$RC" = 0 ] && ! grep -qE "ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards" "$log"; then r=FAIL; note="no clean summary: $summary"
    elif [ "$RC" != 0 ]; then r=FAIL; note="the test failed under $tool (exit $RC); $summary"
    fi
    record "d. $tool: $t" "$r" "$SECS" "$note"
    [ "$r" = FAIL ] && show_tail "$id" 30
  done
}

# --- c. dsv2 compare ------------------------------------------------------------------------------
# GPU: the whole-model engine on the GPU against the fp64 oracle, every named intermediate within
# its dtype's bound (exit 0), in four runs: a preset with every V2 feature (fp32, bf16), the V2-Lite-shaped
# golden model and the embedded checkpoint (bf16). CPU: the oracle built there against PyTorch.
GPU_COMPARES=(
  "preset tiny, fp32|--preset tiny"
  "preset tiny, bf16|--preset tiny --dtype bf16"
  "golden lite, fp32|--model data/golden/lite"
  "kjv-tiny, bf16|--model data/models/kjv-tiny --dtype bf16"
)
compares() {
  local i=0 entry label cargs r note
  if skipped gpu-compare; then record "c. dsv2 compare --device cuda" SKIP 0 "GPU_CHECK_SKIP"
  elif [ ! -x "$DSV2" ]; then record "c. dsv2 compare --device cuda" FAIL 0 "no $DSV2"
  else
    for entry in "${GPU_COMPARES[@]}"; do
      i=$((i + 1)); label=${entry%%|*}; read -r -a cargs <<< "${entry#*|}"
      run "gpu-compare-$i" 60 env DSV2_CUDA_SYNC=1 "$DSV2" compare "${cargs[@]}" --device cuda
      r=$(verdict); note=$(grep -v '^ *$' "$STEPLOGS/gpu-compare-$i.log" | tail -n 1 | cut -c1-140)
      [ "$RC" = 77 ] && [ "$HAVE_GPU" = 1 ] && r=FAIL
      [ "$HAVE_GPU" = 0 ] && [ "$r" = FAIL ] && { r=SKIP; note="no GPU: $note"; }
      record "c. compare --device cuda: $label" "$r" "$SECS" "$(budget_note "$note")"
      [ "$r" = FAIL ] && show_tail "gpu-compare-$i" 20
    done
  fi
  if skipped compare; then record "c. dsv2 compare (oracle vs golden lite)" SKIP 0 "GPU_CHECK_SKIP"
  elif [ ! -x "$DSV2" ]; then record "c. dsv2 compare (oracle vs golden lite)" FAIL 0 "no $DSV2"
  else
    run compare 90 "$DSV2" compare --model data/golden/lite --against data/golden/lite/golden.safetensors
    record "c. dsv2 compare (oracle vs golden lite)" "$(verdict)" "$SECS" "$(budget_note "$(grep -v '^ *$' "$STEPLOGS/compare.log" | tail -n 1 | cut -c1-140)")"
    [ "$RC" = 0 ] || show_tail compare 20
  fi
}

# --- e. the GPU benchmarks, each beside its PyTorch peer ----------------------------------------------
# For the record (nothing is judged; a failure stops nothing); each JSON comes back from $RESULTS.
# e1. The DeepSeekMoE layer at V2-Lite shapes (decode B = 1, 8, 64 in GB/s of expert weights read
# against the HBM datasheet and a device copy; prefill of 4096 tokens in TFLOP/s against cuBLAS
# GEMMs of the same size) and whole-model decode tok/s (the first 4 V2-Lite layers, bf16, contexts
# 512 and 4096): bench/moe_bench.cpp, then tools/bench/moe_torch.py (transformers' DeepseekV2,
# eager, bf16), which prints the ratio tables against ours. About 45 s each; caps 120 s.
# e2. MLA decode at FlashMLA's shapes (B = 128, s_k ∈ {4096, 8192}, n_h ∈ {16, 128}, bf16):
# bench/mla_decode_bench.cu and tools/bench/mla_decode_torch.py. About 20 + 25 s; caps 60 s.
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
bench_pair() {  # ID LABEL CAP CMD... — one benchmark; its JSON is $RESULTS/ID.json
  local id=$1 label=$2 cap=$3; shift 3
  rm -f "$RESULTS/$id.json"
  run "$id" "$cap" "$@"
  local r; r=$(verdict)
  local note=""
  [ "$RC" = 77 ] && { note=$(grep -m1 -o 'SKIPPED: .*' "$STEPLOGS/$id.log"); [ "$HAVE_GPU" = 1 ] && r=FAIL; }
  BENCH_R=$r; BENCH_NOTE=$note
}
benches() {
  local against note
  if skipped moe-bench; then record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" SKIP 0 "GPU_CHECK_SKIP"
  elif [ ! -x "$BIN/dsv2_gpu_moe_bench" ]; then record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" FAIL 0 "not built"
  else
    bench_pair moe-bench MoE 120 "$BIN/dsv2_gpu_moe_bench" --hbm-bw "$HBM_DATASHEET" --json "$RESULTS/moe-bench.json"
    note=$BENCH_NOTE; [ -s "$RESULTS/moe-bench.json" ] && note=$(json_note "$RESULTS/moe-bench.json" moe)
    record "e. GPU bench: MoE (dsv2_gpu_moe_bench)" "$BENCH_R" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail moe-bench 20
    against=(); [ -s "$RESULTS/moe-bench.json" ] && against=(--against "$RESULTS/moe-bench.json")
    bench_pair moe-bench-torch "MoE peer" 120 env PYTHONUNBUFFERED=1 python3 "$ROOT/tools/bench/moe_torch.py" \
        --hbm-bw "$HBM_DATASHEET" --json "$RESULTS/moe-bench-torch.json" "${against[@]}"
    note=$BENCH_NOTE; [ -s "$RESULTS/moe-bench-torch.json" ] && note=$(json_note "$RESULTS/moe-bench-torch.json" torch)
    record "e. GPU bench: MoE (PyTorch peer)" "$BENCH_R" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail moe-bench-torch 20
  fi
  if skipped gpu-bench; then record "e. GPU bench: MLA decode (dsv2_gpu_bench)" SKIP 0 "GPU_CHECK_SKIP"
  elif [ ! -x "$BIN/dsv2_gpu_bench" ]; then record "e. GPU bench: MLA decode (dsv2_gpu_bench)" FAIL 0 "not built"
  else
    bench_pair gpu-bench "MLA" 60 "$BIN/dsv2_gpu_bench" --iters 20 --warmup 2 --sets 2 --hbm-bw "$HBM_COPY" --json "$RESULTS/gpu-bench.json"
    note=$BENCH_NOTE; [ -z "$note" ] && note=$(grep -E '^ +128 ' "$STEPLOGS/gpu-bench.log" | awk '{ printf "%s%s/%s: %s µs, %s of floor", (NR > 1 ? "; " : ""), $2, $3, $5, $NF }')
    record "e. GPU bench: MLA decode (dsv2_gpu_bench)" "$BENCH_R" "$SECS" "$(budget_note "$note")"
    [ "$RC" = 0 ] || show_tail gpu-bench 20
    against=(); [ -s "$RESULTS/gpu-bench.json" ] && against=(--against "$RESULTS/gpu-bench.json")
    bench_pair gpu-bench-torch "MLA peer" 60 python3 "$ROOT/tools/bench/mla_decode_torch.py" --iters 20 --warmup 2 --sets 2 \
        --hbm-bw "$HBM_COPY" --json "$RESULTS/gpu-bench-torch.json" "${against[@]}"
    note=$BENCH_NOTE; [ -z "$note" ] && note=$(awk '/^ratio/ { on = 1; next } on && /^ +128 / { printf "%s%s/%s: torch/dsv2 %s", (n++ ? "; " : ""), $2, $3, $6 }' "$STEPLOGS/gpu-bench-torch.log")
    record "e. GPU bench: MLA decode (PyTorch peer)" "$BENCH_R" "$SECS" "$(budget_note "${note:-no ratio table}")"
    [ "$RC" = 0 ] || show_tail gpu-bench-torch 20
  fi
}

# --- f. for the record: the CPU oracle's speed on the device's cores; the CPU suite (all only) ---
cpu_side() {
  if [ "$PART" = all ] && ! skipped cpu-tests; then
    if [ "$MODE" = built ]; then
      run build-all 360 cmake --build "$BUILD" -j "$JOBS"
      record "f. build: everything" "$(verdict)" "$SECS" "$(budget_note)"
      run cpu-tests 300 ctest --test-dir "$BUILD" -LE gpu -j "$JOBS" --output-on-failure --timeout 240
      record "f. CPU tests (ctest -LE gpu)" "$(verdict)" "$SECS" "$(budget_note "$(grep -m1 -E 'tests passed, [0-9]+ tests failed out of' "$STEPLOGS/cpu-tests.log")")"
      [ "$RC" = 0 ] || show_tail cpu-tests 30
    else
      record "f. CPU tests (ctest -LE gpu)" SKIP 0 "carried binaries: no build tree here (CI runs the CPU suite)"
    fi
  fi
  if skipped bench; then record "f. CPU bench (V2-Lite, 2 layers)" SKIP 0 "GPU_CHECK_SKIP"
  elif [ ! -x "$DSV2" ]; then record "f. CPU bench (V2-Lite, 2 layers)" FAIL 0 "no $DSV2"
  else
    rm -f "$RESULTS/bench-cpu.json"
    run bench 150 "$DSV2" bench --preset deepseek-v2-lite --layers 2 --prefill 256 --contexts 1024 --steps 4 \
        --threads "$JOBS" --json "$RESULTS/bench-cpu.json"
    record "f. CPU bench (V2-Lite, 2 layers)" "$(verdict)" "$SECS" "$(budget_note "$(grep -E '^ +(prefill|decode) .*absorbed' "$STEPLOGS/bench.log" | sed -E 's/ +/ /g; s/^ //; s/ \(.*//' | tr '\n' ';' | cut -c1-140)")"
    [ "$RC" = 0 ] || show_tail bench 20
  fi
}

# --- the order ------------------------------------------------------------------------------------
if [ "$PART" != bench ]; then
  gpu_tests
  if [ "$FIRST_RUN" = 1 ]; then sanitizers; compares; else compares; sanitizers; fi
fi
if [ "$PART" != tests ]; then
  benches
  cpu_side
fi

# --- summary --------------------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - T0 ))
if [ "$FAILED" = 0 ]; then OVERALL="PASS"; else OVERALL="FAIL ($FAILED steps failed or timed out)"; fi
[ "$HAVE_GPU" = 0 ] && OVERALL="$OVERALL — NO GPU: no GPU result here"
DATE=$(date -u +%Y-%m-%d)
{
  echo "# GPU check ($PART) $DATE, $SHORT, $GPU_KIND: $OVERALL"
  echo
  echo "Made by \`bash tools/gpu/gpu_check.sh $PART\` in $TOTAL s (budget $BUDGET s; binaries: $MODE; first run: $FIRST_RUN); keep it as docs/gpu-runs/$DATE-$SHORT-$PART.md."
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
  for b in moe-bench moe-bench-torch; do
    if [ -f "$STEPLOGS/$b.log" ] && grep -qE "^(dsv2_gpu_moe_bench|moe_torch): DeepSeekMoE" "$STEPLOGS/$b.log"; then
      echo; echo "## GPU bench: $b (the MoE layer at V2-Lite shapes, whole-model decode)"; echo; echo '```'
      sed -n '/^\(dsv2_gpu_moe_bench\|moe_torch\): DeepSeekMoE/,$p' "$STEPLOGS/$b.log" | grep -vE "^(moe_torch|dsv2_gpu_moe_bench): (MoE layer,|whole model)" | head -n 60
      echo '```'
    fi
  done
  for b in gpu-bench gpu-bench-torch; do
    if [ -f "$STEPLOGS/$b.log" ] && grep -qE "^(dsv2_gpu_bench|mla_decode_torch): MLA" "$STEPLOGS/$b.log"; then
      echo; echo "## GPU bench: $b (MLA decode at FlashMLA's shapes)"; echo; echo '```'
      sed -n '/^\(dsv2_gpu_bench\|mla_decode_torch\): MLA/,$p' "$STEPLOGS/$b.log" | grep -v "^mla_decode_torch: B=" | head -n 30
      echo '```'
    fi
  done
  if [ -f "$STEPLOGS/bench.log" ] && grep -qE "^  (floors|prefill|decode|part|cache)" "$STEPLOGS/bench.log"; then
    echo; echo "## CPU bench (dsv2 bench, for the record)"; echo; echo '```'
    grep -E "^dsv2 bench: preset|^  " "$STEPLOGS/bench.log" | head -n 40
    echo '```'
  fi
  for t in "${GPU_TESTS[@]}"; do
    [ -f "$STEPLOGS/gpu-test-$t.log" ] || continue
    echo; echo "## GPU test output: $t"; echo; echo '```'
    head -n 80 "$STEPLOGS/gpu-test-$t.log"
    echo '```'
  done
} > "$SUMMARY"
append_log "$SUMMARY"

# The short table LAST on stdout (the device tool returns the end of the output).
echo
echo "================================================================================"
echo "GPU check $PART $DATE $SHORT (dirty: $DIRTY): $OVERALL — $TOTAL s"
echo "gpu: $GPU_LINE | $NVCC_LINE | binaries: $MODE"
printf '%-44s %-12s %7s  %s\n' step result seconds note
for i in "${!ROW_STEP[@]}"; do
  printf '%-44s %-12s %7s  %s\n' "${ROW_STEP[$i]}" "${ROW_RESULT[$i]}" "${ROW_SECS[$i]}" "$(echo "${ROW_NOTE[$i]}" | cut -c1-110)"
done
echo "full log: $LOG; summary: $SUMMARY"
[ "$PART" = tests ] && echo "next: the second call, bash tools/gpu/gpu_check.sh bench"
[ "$FAILED" = 0 ] || exit 1
exit 0
