#!/usr/bin/env bash
# Builds the CUDA-enabled vigil binary on a machine without a GPU or CUDA toolkit, from
# PyPI's CUDA 13.0 wheels (the GPU machines' driver is 580 / CUDA 13.0: PTX from a newer
# nvcc would not load there, so the versions are pinned).
#
#   scripts/build-cuda.sh            -> target/cuda/release/vigil
#
# At run time the binary needs libcuda.so.1 (the driver), libcublas.so.13,
# libcurand.so.10 and libcudart.so.13: point LD_LIBRARY_PATH at a CUDA 13 runtime
# (PyTorch's nvidia/cu13/lib on the GPU machine has them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIGIL_CUDA_CACHE:-$root/.cuda}
venv=$cache/venv
tk=$cache/toolkit
mkdir -p "$cache"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q \
  'nvidia-cuda-nvcc==13.0.*' 'nvidia-cuda-crt==13.0.*' 'nvidia-cuda-cccl==13.0.*' \
  'nvidia-cuda-runtime==13.0.*' 'nvidia-cublas==13.1.*' 'nvidia-curand==10.4.0.*' \
  'nvidia-cuda-nvrtc==13.0.*' 'nvidia-nvvm==13.0.*'
cu=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')

# A toolkit folder laid out the way nvcc and cudarc expect.
rm -rf "$tk" && mkdir -p "$tk/lib64"
ln -s "$cu/bin" "$tk/bin"
ln -s "$cu/include" "$tk/include"
ln -s "$cu/nvvm" "$tk/nvvm"
for lib in "$cu"/lib/lib*.so.*; do
  base=$(basename "$lib")
  ln -sf "$lib" "$tk/lib64/$base"
  ln -sf "$lib" "$tk/lib64/${base%%.so.*}.so"
done
# Link-time stub of the driver library (the real one comes with the GPU's driver).
gcc -E -P "$cu/include/cuda.h" -D__CUDA_API_VERSION_INTERNAL 2>/dev/null \
  | grep -oE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' | sed 's/\s*($//' | sort -u \
  | awk '{print "void " $1 "(void) {}"}' > "$cache/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$tk/lib64/libcuda.so" "$cache/cuda_stub.c"
ln -sf libcuda.so "$tk/lib64/libcuda.so.1"

export PATH="$tk/bin:$PATH" CUDA_HOME="$tk" CUDA_PATH="$tk" CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
export NVCC_APPEND_FLAGS="-I$tk/include/cccl"
export LIBRARY_PATH="$tk/lib64:${LIBRARY_PATH:-}"
cd "$root"
CARGO_TARGET_DIR="$root/target/cuda" cargo build --release -p vigil --features cuda
echo "built $root/target/cuda/release/vigil"
