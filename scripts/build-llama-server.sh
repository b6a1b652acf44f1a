#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (the ?backend=llamacpp backend) into a bin folder, from source.
#
# Why from source: no prebuilt llama.cpp for Python loads on Debian 12 (glibc 2.36, GCC 12 libstdc++):
# llama-cpp-py-sync needs glibc 2.38, llama-cpp-cffi needs GCC 14's libstdc++ (docs/decisions.md).
# The sources come from the llama-cpp-python sdist on PyPI (MIT; it vendors llama.cpp), pinned by
# version and sha256, so the build needs only the package registry. Only the server target is built.
#
#   scripts/build-llama-server.sh [BIN_DIR]     (default: .venv/bin; needs cmake and a C++ compiler)
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
BIN_DIR=${1:-.venv/bin}
PIP=${PIP:-.venv/bin/pip}
JOBS=${JOBS:-$(nproc)}

if [ -x "$BIN_DIR/llama-server" ]; then echo "llama-server already in $BIN_DIR"; exit 0; fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing; install cmake and g++ (apt-get install cmake g++)" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PIP" download -q --no-deps --no-binary=:all: "llama-cpp-python==$VERSION" -d "$work"
tarball="$work/llama_cpp_python-$VERSION.tar.gz"
echo "$SHA256  $tarball" | sha256sum -c --quiet - || { echo "error: $tarball does not match the pinned sha256" >&2; exit 2; }
tar -xzf "$tarball" -C "$work" "llama_cpp_python-$VERSION/vendor/llama.cpp"

src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# GGML_NATIVE: kernels for this machine's CPU (AVX2/AVX-512 where present). The binary is built where
# it runs (into the venv), so it is not meant to be copied to another machine.
cmake -S "$src" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_NATIVE=ON >"$work/cmake.log" 2>&1 || { tail -20 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j "$JOBS" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
mkdir -p "$BIN_DIR"
install -m 755 "$work/build/bin/llama-server" "$BIN_DIR/llama-server"
echo "built $BIN_DIR/llama-server (llama.cpp from llama-cpp-python $VERSION)"
