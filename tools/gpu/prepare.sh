#!/usr/bin/env bash
# tools/gpu/prepare.sh [CARRY] — run HERE (`make gpu-prepare`), before the calls of the device tool:
# builds what the GPU check runs, portable, so that the lent machine spends its minutes testing,
# not compiling (a fresh device machine would build for 90–150 s of its 15 minutes).
#
#   1. CARRY/deps: the Debian build dependencies (tools/gpu/bundle_deps.sh), for the fallback build
#      there when the carried binaries do not start;
#   2. build-gpu/ here: Release, -DDSV2_NATIVE=OFF (a -march=native binary from this machine can
#      die of an illegal instruction on the device's CPU), the targets dsv2, every GPU test
#      binary (the tests labelled gpu, exercises left out) and the two GPU benchmarks;
#   3. CARRY/bin: those binaries, stripped; CARRY/lib: the shared libraries they need that the
#      device image may lack (Oniguruma, libgomp) — CUDA's own (cuBLAS) are the device's;
#      CARRY/gpu-tests.txt: the GPU test binaries in the order the check runs them;
#      CARRY/SOURCE: commit, dirty state, date; CARRY/ldd.txt: what each binary links.
# CARRY defaults to build-gpu-carry/ (ignored by git). The device call then carries that one path
# (cuda/README.md, "Running the GPU check on a lent H100 or H200"). Everything that travels —
# the working tree and CARRY — must stay under the device tool's 64 MiB; this script prints the
# sizes and fails if CARRY alone passes GPU_PREPARE_MAX_MIB (default 40).
set -euo pipefail

cd "$(dirname "$0")/../.."   # the repository root
carry=${1:-build-gpu-carry}
build=${GPU_PREPARE_BUILD:-build-gpu}
jobs=${GPU_PREPARE_JOBS:-$(nproc 2>/dev/null || echo 2)}
max_mib=${GPU_PREPARE_MAX_MIB:-40}
t0=$(date +%s)

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "gpu-prepare: no nvcc here: the GPU binaries cannot be built (the check would build there instead)" >&2
  exit 1
fi
export PATH=$PATH:/usr/local/cuda/bin

rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib"
bash tools/gpu/bundle_deps.sh "$carry/deps" > /dev/null
echo "gpu-prepare: bundle in $carry/deps ($(du -sh "$carry/deps" | cut -f1))"

# The same configure as on the device, but portable.
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV2_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=90a > "$build/prepare-configure.log" 2>&1 \
  || { tail -n 30 "$build/prepare-configure.log"; echo "gpu-prepare: configure failed (log: $build/prepare-configure.log)" >&2; exit 1; }
grep -q "^DSV2_NATIVE:BOOL=OFF" "$build/CMakeCache.txt" || { echo "gpu-prepare: $build is not portable (DSV2_NATIVE)" >&2; exit 1; }

# The GPU test binaries (tools/gpu/list_gpu_tests.sh: the tests labelled gpu, in the check's order).
mapfile -t tests < <(bash tools/gpu/list_gpu_tests.sh "$build")
[ "${#tests[@]}" -gt 0 ] || { echo "gpu-prepare: CTest lists no GPU tests in $build (was nvcc found?)" >&2; exit 1; }
benches=(dsv2_gpu_bench dsv2_gpu_moe_bench)

echo "gpu-prepare: building dsv2 ${tests[*]} ${benches[*]} in $build ($jobs jobs)"
cmake --build "$build" -j "$jobs" --target dsv2 "${tests[@]}" "${benches[@]}" > "$build/prepare-build.log" 2>&1 \
  || { tail -n 40 "$build/prepare-build.log"; echo "gpu-prepare: build failed (log: $build/prepare-build.log)" >&2; exit 1; }

for b in dsv2 "${tests[@]}" "${benches[@]}"; do
  cp "$build/bin/$b" "$carry/bin/$b"
  strip --strip-unneeded "$carry/bin/$b"
done
printf '%s\n' "${tests[@]}" > "$carry/gpu-tests.txt"

# Shared libraries the device image may lack: every non-CUDA library outside glibc and libstdc++
# (the image has a C++ compiler, hence both, newer than these).
: > "$carry/ldd.txt"
for b in "$carry"/bin/*; do
  { echo "== ${b##*/}"; ldd "$b"; } >> "$carry/ldd.txt"
done
for lib in $(awk '/=> \// { print $3 }' "$carry/ldd.txt" | sort -u); do
  case "${lib##*/}" in
    libonig.so.*|libgomp.so.*) cp -L "$lib" "$carry/lib/" ;;
  esac
done
if grep -q "not found" "$carry/ldd.txt"; then
  grep "not found" "$carry/ldd.txt" >&2; echo "gpu-prepare: a binary lacks a library here" >&2; exit 1
fi

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$( (git status --short 2>/dev/null || true) | { grep -v '^??' || true; } | wc -l)
{
  echo "commit=$commit"
  echo "dirty_files=$dirty"
  echo "diff_sha256=$(git diff HEAD 2>/dev/null | sha256sum | cut -d' ' -f1)"
  echo "stamped=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "built_on=$(uname -m), $(${CXX:-c++} --version | head -n 1), $(nvcc --version | grep -i release)"
  echo "portable=DSV2_NATIVE=OFF"
} > "$carry/SOURCE"
cp "$carry/SOURCE" "$carry/deps/SOURCE"

carry_mib=$(du -sm "$carry" | cut -f1)
tree_mib=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 du -cm 2>/dev/null | tail -n 1 | cut -f1 || true)
echo "gpu-prepare: $carry = ${carry_mib} MiB (bin $(du -sh "$carry/bin" | cut -f1), lib $(du -sh "$carry/lib" | cut -f1), deps $(du -sh "$carry/deps" | cut -f1)); working tree ≈ ${tree_mib} MiB; the device tool carries at most 64 MiB in all"
[ "$carry_mib" -le "$max_mib" ] || { echo "gpu-prepare: $carry is over $max_mib MiB" >&2; exit 1; }
echo "gpu-prepare: ready in $(( $(date +%s) - t0 )) s, commit ${commit:0:7} (dirty files: $dirty). Device calls:"
echo "  1. run(command=\"bash tools/gpu/gpu_check.sh tests\", carry=[\"$carry\"], timeout_s=600)"
echo "  2. run(command=\"bash tools/gpu/gpu_check.sh bench\", carry=[\"$carry\"], timeout_s=600)"
