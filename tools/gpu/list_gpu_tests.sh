#!/usr/bin/env bash
# tools/gpu/list_gpu_tests.sh BUILD — the GPU test binaries of build tree BUILD (the tests CTest
# labels gpu), one name a line, in the order the GPU check runs them: cheapest first, the
# whole-model engine last, then any GPU test not named below (a new one joins without an edit).
# The exercises' CUDA solutions are left out: their kernels are the project's own, tested as such,
# and a device call has no minutes for them. Used by prepare.sh (here) and gpu_check.sh (there).
set -euo pipefail
build=${1:?usage: list_gpu_tests.sh BUILD}
order=(test_cuda_rmsnorm test_cuda_linear test_cuda_moe test_cuda_mla test_cuda_mla_prefill test_cuda_backend test_cuda_engine)
# From the CTest files themselves: `ctest --show-only` names no command before it is built.
listed=$(python3 - "$build" <<'PY'
import os, pathlib, re, sys
cmds, labels = {}, {}
for f in sorted(pathlib.Path(sys.argv[1]).rglob("CTestTestfile.cmake")):
    text = f.read_text(errors="replace")
    for m in re.finditer(r'add_test\(\[=\[(.*?)\]=\] "([^"]+)"', text):
        cmds[m[1]] = m[2]
    for m in re.finditer(r'set_tests_properties\(\[=\[(.*?)\]=\] PROPERTIES (.*)', text):
        lab = re.search(r'LABELS "([^"]*)"', m[2])
        labels[m[1]] = lab[1].split(";") if lab else []
for name, cmd in cmds.items():
    if "gpu" in labels.get(name, []) and "/exercises/" not in cmd:
        print(os.path.basename(cmd))
PY
)
listed=$(sort -u <<< "$listed")
[ -n "$listed" ] || exit 0
for t in "${order[@]}"; do
  grep -qx "$t" <<< "$listed" && echo "$t"
done
grep -vxF "$(printf '%s\n' "${order[@]}")" <<< "$listed" || true
