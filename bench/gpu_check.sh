#!/usr/bin/env bash
# The prepared GPU session (one H100/H200, about 10 minutes): correctness first, then throughput, then accuracy.
# From the repo root, with CIFAR-10 carried along:
#   mkdir -p .device_data && cp ../shared/data/cifar10_jpeg.npz .device_data/   (git-ignored; name it in `carry`)
#   bash bench/gpu_check.sh            # writes packed.txt, epoch.txt, accuracy.txt to $OUT (or ./bench_out)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export SYMZOO_CIFAR10_NPZ=${SYMZOO_CIFAR10_NPZ:-$PWD/.device_data/cifar10_jpeg.npz} SYMZOO_DATA_DIR=/tmp/symzoo
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 bench/packed.py --device cuda --ks 1,8,32,128 --steps 20 --check 2>&1 | tee "$OUT/packed.txt"
python3 bench/packed_kernels.py --device cuda --k 32 --batch 512 2>&1 | tee "$OUT/kernels.txt"
python3 bench/epoch.py --device cuda --steps 50 2>&1 | tee "$OUT/epoch.txt"
timeout 330 python3 bench/accuracy.py --device cuda --networks 16 --pack 16 2>&1 | tee "$OUT/accuracy.txt"
