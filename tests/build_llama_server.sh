#!/usr/bin/env bash
# Build llama.cpp's C++ `llama-server` (the llama.cpp that llama-cpp-python 0.3.36 vendors) for the
# slow tier's Responses and Messages tests (tests/llama_cpp_server.py). No root needed.
#
#   bash tests/build_llama_server.sh     # prints the path of the binary as its last line
#
# The binary lands in $STREAMSHIM_LLAMA_SERVER (a directory; default
# ${XDG_CACHE_HOME:-$HOME/.cache}/streamshim/llama-server-0.3.36/) as `llama-server`, statically
# linked against llama/ggml, so it survives the removal of the build tree. When it is already there
# (and runs) nothing is done. A build downloads the sdist with pip (~77 MB), compiles for ~12
# CPU-minutes (CPU backend only, no -march=native, no curl/openssl, no web UI) and removes its
# sources and objects again. Needs python3 (with venv) and a C/C++ compiler; when ninja or a
# cmake >= 3.18 is missing it is pip-installed into a throwaway venv next to the build.
set -euo pipefail

version=0.3.36
dest=${STREAMSHIM_LLAMA_SERVER:-${XDG_CACHE_HOME:-$HOME/.cache}/streamshim/llama-server-$version}
binary=$dest/llama-server

if [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

say() { echo "== build_llama_server: $*" >&2; }

mkdir -p "$dest"
work=$(mktemp -d "$dest/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "building llama-server (llama-cpp-python $version sdist) in $work"

python=${PYTHON:-python3}
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip -q --disable-pip-version-check)
# only llama-cpp-python as source: pip prepares its metadata in an isolated env, and with
# --no-binary :all: it would compile that env's build requirements (ninja, cmake) from source too
"${pip[@]}" download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$work/sdist" >&2
tar -xzf "$work"/sdist/llama_cpp_python-"$version".tar.gz -C "$work"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
[ -f "$src/CMakeLists.txt" ] || { say "no vendor/llama.cpp in the sdist"; exit 1; }

cmake_ok() {
    local v
    v=$(cmake --version 2>/dev/null | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p')
    [ -n "$v" ] && [ "$(printf '%s\n' 3.18 "$v" | sort -V | head -n 1)" = 3.18 ]
}
if ! cmake_ok; then
    say "no cmake >= 3.18 on PATH: pip-installing cmake into the build venv"
    "${pip[@]}" install cmake >&2
    export PATH="$work/venv/bin:$PATH"
fi
generator=(-G Ninja)
if ! command -v ninja >/dev/null 2>&1; then
    say "no ninja on PATH: pip-installing ninja into the build venv"
    if "${pip[@]}" install ninja >&2; then
        export PATH="$work/venv/bin:$PATH"
    else
        say "no ninja (and pip could not install it): using Unix Makefiles"
        generator=(-G "Unix Makefiles")
    fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
start=$SECONDS
cmake -S "$src" -B "$work/build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF >&2
cmake --build "$work/build" --target llama-server -j "$jobs" >&2
built=$work/build/bin/llama-server
"$built" --version >&2
install -m 0755 "$built" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
say "built in $((SECONDS - start)) s (wall, $jobs jobs)"
echo "$binary"
