#!/usr/bin/env bash
# The prepared GPU session (one H100/H200, under 10 minutes): correctness first, then throughput, then accuracy.
# Each step has its own time limit and writes its log to $OUT as it goes, so a cut-off run still reports.
# From the repo root, with CIFAR-10 carried along:
#   mkdir -p .device_data && cp ../shared/data/cifar10_jpeg.npz .device_data/   (git-ignored; name it in `carry`)
#   bash bench/gpu_check.sh                   # every step below, logs to $OUT (or ./bench_out)
#   bash bench/gpu_check.sh kernels profile   # only the named steps (decode always runs first)
#   bash bench/gpu_check.sh kernels_autotuned max_autotune   # inductor's own Triton convolutions, per layer and step
#   bash bench/gpu_check.sh mli               # one 10-minute call: the paper's MLI on a fresh CIFAR-10 zoo, then
#                                             # metanet epochs if time is left; zoo + units come back in $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export SYMZOO_CIFAR10_NPZ=${SYMZOO_CIFAR10_NPZ:-$PWD/.device_data/cifar10_jpeg.npz} SYMZOO_DATA_DIR=/tmp/symzoo
step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.txt, never stop the script
  local name=$1 limit=$2
  shift 2
  echo "=== $name ($(date +%T), limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  echo "=== $name exit ${PIPESTATUS[0]} ($(date +%T))"
}
ALL="packed accuracy epoch compiled profile kernels"  # zoo: the long accuracy run through the shard code
STEPS=${*:-$ALL}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/gpu.txt"
step decode 90 python3 -c "from symzoo.zoo.data import load_dataset; print(load_dataset('cifar10').x_train.shape)"
for s in $STEPS; do
  case $s in
    packed) step packed 150 python3 bench/packed.py --device cuda --ks 1,8,32,64,128 --steps 20 --check \
      --variants standard,w_asym,sigma_asym ;;
    accuracy) step accuracy 270 python3 bench/accuracy.py --device cuda --networks 32 --pack 16 --budget-s 180 ;;
    epoch) step epoch 40 python3 bench/epoch.py --device cuda --steps 50 ;;
    compiled) step compiled 100 python3 bench/packed.py --device cuda --ks 32,64 --steps 20 --compile --no-loop \
      --variants standard ;;
    profile) step profile 120 python3 bench/packed.py --device cuda --profile 32 --steps 10 --compile \
      --variants standard ;;
    kernels) step kernels 40 python3 bench/packed_kernels.py --device cuda --k 32 --batch 512 ;;
    kernels_wide) step kernels_wide 60 python3 bench/packed_kernels.py --device cuda --k 32 --batch 512 \
      --methods grouped,grouped_nhwc,blockdiag2,blockdiag4,blockdiag8 ;;
    kernels_fp16) step kernels_fp16 40 python3 bench/packed_kernels.py --device cuda --k 32 --batch 512 \
      --methods grouped,blockdiag4 --dtype float16 ;;
    kernels_autotuned) step kernels_autotuned 300 python3 bench/packed_kernels.py --device cuda --k 32 --batch 512 \
      --methods grouped,grouped_autotuned ;;
    max_autotune) step max_autotune 300 python3 bench/packed.py --device cuda --ks 32 --steps 20 --no-loop \
      --compile --also max-autotune --variants standard ;;
    # 32 per variant: packs of 32, 16, 8, six graphs (~34 s each) as 24 built; 36 would build eight
    zoo) step zoo 540 python3 -m symzoo.pipelines.local zoo configs/cifar10_paper.yaml --networks 32 --device cuda \
      --out /tmp/zoo_local ;;
    # train configs/cifar10_mli_call.yaml, evaluate the MLI stage's units until the deadline, then time metanet
    # epochs in what is left of CALL_S (default 585 s from the script's start); the zoo and the units come back
    # (a dry run on a CPU: MLI_CONFIG=configs/digits_study.yaml MLI_ARGS='--networks 2 --device cpu' CALL_S=120)
    # as $OUT/mli_call.tar.* (split under the 16 MiB a returned file may have): `cat mli_call.tar.* | tar x`
    mli)
      step mli 540 python3 -m symzoo.pipelines.local mli ${MLI_CONFIG:-configs/cifar10_mli_call.yaml} \
        --work /tmp/mli_call --deadline-s 490 ${MLI_ARGS:-}
      left=$(( ${CALL_S:-585} - SECONDS - 15 ))
      if [ -f /tmp/mli_call/zoo/manifest.json ] && [ "$left" -gt 20 ]; then
        step metanet_epoch "$left" python3 bench/metanet_epoch.py /tmp/mli_call/zoo --networks 5000
      fi
      (cd /tmp/mli_call && tar cf - zoo mli) | split -b 15M - "$OUT/mli_call.tar."
      ls -la "$OUT" ;;
    *) echo "unknown step $s (steps: $ALL kernels_wide kernels_fp16 kernels_autotuned max_autotune zoo mli)" ;;
  esac
done
