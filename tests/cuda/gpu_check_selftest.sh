#!/usr/bin/env bash
# tests/cuda/gpu_check_selftest.sh BUILD — the GPU check's own logic (tools/gpu/gpu_check.sh), on a
# machine without a GPU: the binaries of BUILD carried as `make gpu-prepare` carries them, and
# stand-ins for nvidia-smi (an H100) and compute-sanitizer on PATH, so that every branch a device
# run can take is taken here: a sanitizer that refuses the device or hangs (probe N/A, step
# skipped, saying why), one that is clean (the queue in order, MLA kernels first), one whose
# racecheck never returns (INCONCLUSIVE, not a failure), a GPU test that exits 77 on a machine
# that has a GPU (FAIL), and a carried dsv2 that dies of SIGILL (the fallback build is chosen).
set -u
build=$(cd "${1:?usage: gpu_check_selftest.sh BUILD}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
expect() {  # FILE PATTERN WHAT
  if grep -qE "$2" "$1"; then echo "ok: $3"; else echo "FAIL: $3 (no line matching: $2)"; fails=$((fails + 1)); fi
}

# The carried folder, as prepare.sh lays it out (links instead of copies).
carry=$work/carry
mkdir -p "$carry/bin" "$carry/lib"
bash "$root/tools/gpu/list_gpu_tests.sh" "$build" > "$carry/gpu-tests.txt"
for b in dsv2 $(cat "$carry/gpu-tests.txt"); do ln -s "$build/bin/$b" "$carry/bin/$b"; done
printf 'commit=selftest\nbuilt_on=here\n' > "$carry/SOURCE"
expect "$carry/gpu-tests.txt" "^test_cuda_mla$" "list_gpu_tests.sh names the MLA test"
if grep -q "solution" "$carry/gpu-tests.txt"; then echo "FAIL: the exercises' solutions are listed"; fails=$((fails + 1)); fi

mkdir -p "$work/fake"
cat > "$work/fake/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-selftest)" ;;
  *query*) echo "NVIDIA H100 80GB HBM3, 0.0 (stand-in), 81559 MiB, 9.0" ;;
  *) echo "stand-in nvidia-smi" ;;
esac
EOF
cat > "$work/fake/compute-sanitizer" <<'EOF'
#!/bin/sh
[ "$1" = --version ] && { echo "Version 0 (stand-in)"; exit 0; }
tool=$2
case "$FAKE_SAN" in
  refuse) echo "========= COMPUTE-SANITIZER"; echo "========= Error: Device not supported"; exit 1 ;;
  hang) sleep 60 ;;
  clean|slowrace)
    [ "$FAKE_SAN" = slowrace ] && [ "$tool" = racecheck ] && sleep 60
    echo "device: stand-in"
    if [ "$tool" = racecheck ]; then echo "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
    else echo "========= ERROR SUMMARY: 0 errors"; fi ;;
esac
exit 0
EOF
chmod +x "$work/fake/"*

check() {  # NAME FAKE_SAN [ENV...] — one call of the check, its stdout in $work/NAME.out
  local name=$1 san=$2; shift 2
  # -u OUT: never the outer run's result folder (a GPU check that runs the CPU suite runs this);
  # CUDA_VISIBLE_DEVICES=: the GPU tests skip as on a machine without one, even where there is one.
  (cd "$root" && env -u OUT -u GPU_CHECK_BUDGET_S -u GPU_CHECK_CAP_FACTOR -u GPU_CHECK_SANITIZERS CUDA_VISIBLE_DEVICES= \
     PATH="$work/fake:$PATH" FAKE_SAN="$san" GPU_CHECK_CARRY="$carry" GPU_CHECK_BUILD="$work/build-gpu" \
     GPU_CHECK_FIRST_RUN=1 GPU_CHECK_SKIP="gpu-compare compare sass" GPU_CHECK_SANITIZER_TIMEOUT_S=15 "$@" \
     bash tools/gpu/gpu_check.sh tests) > "$work/$name.out" 2>&1
  echo "== $name: exit $?"
}
check refuse refuse
expect "$work/refuse.out" "^binaries: carried +PASS" "the carried binaries start"
expect "$work/refuse.out" "^b\. test_cuda_mla +FAIL .*SKIPPED: no CUDA device" "a GPU test that skips on a machine with a GPU fails"
expect "$work/refuse.out" "^d\. compute-sanitizer +N/A .*Device not supported" "a refusing sanitizer: step skipped, saying why"
check hang hang GPU_CHECK_SKIP="gpu-compare compare sass gpu-tests"
expect "$work/hang.out" "^d\. compute-sanitizer +N/A .*timed out after 20 s" "a hanging sanitizer: the 20 s probe stops it"
check clean clean GPU_CHECK_SKIP="gpu-compare compare sass gpu-tests"
expect "$work/clean.out" "^d\. memcheck: test_cuda_rmsnorm \(probe\) +PASS" "a clean probe"
if awk '/^d\. /' "$work/clean.out" | sed -n 2,5p | tr '\n' '|' | grep -q "memcheck: test_cuda_mla .*racecheck: test_cuda_mla .*memcheck: test_cuda_mla_prefill .*racecheck: test_cuda_mla_prefill "; then
  echo "ok: memcheck and racecheck on the MLA kernels first, binary by binary"
else echo "FAIL: the sanitizer queue does not start with the MLA kernels"; fails=$((fails + 1)); fi
expect "$work/clean.out" "^GPU check tests .*: PASS" "all clean: the check passes"
check slowrace slowrace GPU_CHECK_SKIP="gpu-compare compare sass gpu-tests" GPU_CHECK_SANITIZE_BUDGET_S=40
expect "$work/slowrace.out" "^d\. racecheck: test_cuda_mla +INCONCLUSIVE" "a sanitizer run out of time is inconclusive"
expect "$work/slowrace.out" "^GPU check tests .*: PASS" "inconclusive is not a failure"

# A carried dsv2 that dies of an illegal instruction: the fallback (configure + build there) is chosen.
rm "$carry/bin/dsv2"; printf '#!/bin/sh\nkill -ILL $$\n' > "$carry/bin/dsv2"; chmod +x "$carry/bin/dsv2"
check sigill clean GPU_CHECK_BUDGET_S=45 GPU_CHECK_SKIP="gpu-compare compare sass gpu-tests sanitize"
expect "$work/sigill.out" "^binaries: carried +N/A .*illegal instruction" "a carried binary that dies of SIGILL is not used, and why"
expect "$work/sigill.out" "^fallback: configure .* PASS" "the fallback build is chosen, and configures"

for f in "$work"/*.out; do echo "--- ${f##*/}"; sed -n '/^step /,$p' "$f" | head -n 30; done
echo "$fails failure(s)"
[ "$fails" = 0 ]
