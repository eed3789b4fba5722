#!/usr/bin/env bash
# tools/make/exercise.sh BUILD JOBS N — builds YOUR exercises/exN_*/stub.cpp (or stub.cu) against
# the fixed tests exercises/tests/test_exN.cpp and runs them, saying PASSED, SKIPPED (a CUDA
# exercise without a device) or FAILED. (`make exercise N=3`)
set -uo pipefail
build=${1:?usage: exercise.sh BUILD JOBS N}; jobs=${2:-2}; n=${3:-}
[ -n "$n" ] || { echo "usage: make exercise N=<number>   (exercises/README.md lists them)"; exit 2; }
dir=$(ls -d exercises/ex"$n"_* 2>/dev/null | head -n 1)
[ -n "$dir" ] || { echo "make exercise: there is no exercise ex$n under exercises/"; exit 2; }
targets=$(cmake --build "$build" --target help 2>/dev/null)
if ! grep -Eq "(^|[ .:])ex$n(:|$)" <<< "$targets"; then
  echo "ex$n: this build ($build) has no target ex$n: CUDA exercises need nvcc (exercises/README.md)"; exit 1
fi
if ! cmake --build "$build" --target "ex$n" -j "$jobs"; then
  echo "ex$n: BUILD FAILED — fix the compile errors above in $dir/stub.*"; exit 1
fi
"$build/exercises/bin/ex$n"; rc=$?; echo
if [ $rc -eq 0 ]; then echo "ex$n: PASSED — every test in exercises/tests/test_ex$n.cpp holds"
elif [ $rc -eq 77 ]; then echo "ex$n: SKIPPED — it builds, but there is no CUDA device here to run it"
else echo "ex$n: FAILED — see the failures above; TODO(ex$n) means a function of $dir/stub.* is not written yet"; exit 1; fi
