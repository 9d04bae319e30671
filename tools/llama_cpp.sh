#!/usr/bin/env bash
# Build llama.cpp's command-line tools (llama-bench, llama-perplexity, llama-completion, llama-quantize) from the
# llama.cpp that PyPI's llama-cpp-python source archive vendors, into build/llama.cpp/bin. Only the GGUF export's
# optional tests and the book's deployment numbers use them; nothing else depends on this build.
# About 12 minutes on 2 cores. Usage: tools/llama_cpp.sh [VERSION]   (make llama-cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-0.3.36}"
src=build/llama-cpp-src
out=build/llama.cpp
stamp="$version no-amx"
if [ -x "$out/bin/llama-perplexity" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$stamp" ]; then
  echo "llama.cpp tools of llama-cpp-python $version are already in $out/bin"; exit 0
fi
for tool in cmake ninja g++; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to build llama.cpp (Debian: apt-get install cmake ninja-build g++)" >&2; exit 1; }
done
mkdir -p "$src"
[ -f "$src/llama_cpp_python-$version.tar.gz" ] || python3 -m pip download --no-deps --no-binary :all: -q -d "$src" "llama-cpp-python==$version"
[ -d "$src/llama_cpp_python-$version" ] || tar -xzf "$src/llama_cpp_python-$version.tar.gz" -C "$src"
# CPU only, tuned for this machine (GGML_NATIVE: AVX2/AVX-512 where the CPU has them) but without AMX tiles: on
# this project's VMs ggml's AMX kernels crash on quantized matrices (general protection fault in libggml-cpu),
# while its AVX-512/VNNI kernels run; no HTTPS downloads
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$src/llama_cpp_python-$version/vendor/llama.cpp" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
  -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
cmake --build "$out" -j "$(nproc)" --target llama-bench llama-perplexity llama-completion llama-quantize
echo "$stamp" > "$out/VERSION"
ls "$out/bin"
