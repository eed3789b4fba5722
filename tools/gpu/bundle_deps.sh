#!/usr/bin/env bash
# tools/gpu/bundle_deps.sh [DEST] — run HERE (a Debian machine with the build dependencies), before a
# call of the device tool: copies the header-only libraries, their CMake package files and
# Oniguruma out of this machine's Debian packages into DEST (default build-gpu-deps/, ignored by
# git, carried to the lent GPU machine with `carry: ["build-gpu-deps"]`). The GPU machine has
# CUDA, CMake, ninja and a C++ compiler, but no Debian packages and no network; tools/gpu/gpu_check.sh
# builds there against this folder (CMAKE_PREFIX_PATH=DEST, DSV2_ONIG_ROOT=DEST).
#
# The layout under DEST mirrors /usr, so the packages' own CMake files, which locate their
# headers relative to themselves, work unchanged:
#   include/{eigen3/Eigen,nlohmann,CLI,catch2,oniguruma.h,...}
#   share/eigen3/cmake, share/cmake/{nlohmann_json,CLI11}, lib/cmake/Catch2 (+ Catch.cmake etc.)
#   lib/libonig.so.5 (+ libonig.so → libonig.so.5), lib/pkgconfig/oniguruma.pc (relocatable)
#   SOURCE: the commit and dirty state of this checkout when the bundle was made (read by
#   gpu_check.sh where .git did not travel).
# File lists come from `dpkg -L`, not from guessed paths.
set -euo pipefail

dest=${1:-build-gpu-deps}
cd "$(dirname "$0")/../.."   # the repository root
packages=(libeigen3-dev nlohmann-json3-dev libcli11-dev catch2 libonig-dev libonig5)

for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    echo "bundle_deps: Debian package $p is not installed here (make deps installs it)" >&2
    exit 1
  fi
done

rm -rf "$dest"
mkdir -p "$dest"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)

# keep PATH: whether a file of a package goes into the bundle, and where (relative to DEST).
# Prints the relative destination, or nothing to leave the file out.
keep() {
  case "$1" in
    /usr/include/eigen3/unsupported/*) ;;                      # not used by dsv2 (3 MB)
    /usr/include/*)                    echo "${1#/usr/}" ;;
    /usr/share/eigen3/cmake/*.cmake)   echo "${1#/usr/}" ;;
    /usr/share/cmake/*/*.cmake)        echo "${1#/usr/}" ;;    # nlohmann_json, CLI11
    /usr/lib/cmake/Catch2/*.cmake)     echo "${1#/usr/}" ;;    # incl. Catch.cmake, CatchAddTests.cmake
    /usr/lib/libCatch2WithMain.a)      echo "lib/libCatch2WithMain.a" ;;  # Catch2Targets checks it exists
    /usr/lib/"$multiarch"/libonig.so.[0-9]) echo "lib/${1##*/}" ;;        # the run-time soname
    *) ;;
  esac
}

files=0
for p in "${packages[@]}"; do
  while IFS= read -r f; do
    [ -f "$f" ] || continue            # directories; symbolic links count as files here
    rel=$(keep "$f")
    [ -n "$rel" ] || continue
    mkdir -p "$dest/$(dirname "$rel")"
    cp -L "$f" "$dest/$rel"            # -L: the soname link becomes the library itself
    files=$((files + 1))
  done < <(dpkg -L "$p")
done

# The link-time name, as the -dev package has it (a relative link; the CMake side also accepts
# libonig.so.5 alone, should the link not travel).
soname=$(cd "$dest/lib" && ls libonig.so.[0-9] | head -n 1)
ln -sf "$soname" "$dest/lib/libonig.so"

# A relocatable pkg-config file for Oniguruma (the Debian one says prefix=/usr).
onig_version=$(dpkg-query -W -f='${Version}' libonig-dev | sed 's/-[^-]*$//')
mkdir -p "$dest/lib/pkgconfig"
cat > "$dest/lib/pkgconfig/oniguruma.pc" <<PC
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: oniguruma
Description: Regular expression library (bundled by tools/gpu/bundle_deps.sh)
Version: $onig_version
Libs: -L\${libdir} -lonig
Cflags: -I\${includedir}
PC

# What was bundled, and from which checkout.
{
  echo "# made by tools/gpu/bundle_deps.sh on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in "${packages[@]}"; do echo "package $p $(dpkg-query -W -f='${Version}' "$p")"; done
} > "$dest/PACKAGES"
if git rev-parse HEAD >/dev/null 2>&1; then
  dirty=$(git status --short | wc -l)
  {
    echo "commit=$(git rev-parse HEAD)"
    echo "dirty_files=$dirty"
    echo "diff_sha256=$(git diff HEAD | sha256sum | cut -c1-16)"
    echo "stamped=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$dest/SOURCE"
fi

size=$(du -sh "$dest" | cut -f1)
echo "bundle_deps: $files files from ${#packages[@]} Debian packages → $dest ($size)"
