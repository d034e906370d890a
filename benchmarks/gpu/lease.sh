#!/bin/bash
# One device command of a lease: the QM9 W = 4,096 expansion runs and one MOSES pre-training stage side
# by side (MPS shares the GPU between processes), and on the first call the GPU tests.
#   bash benchmarks/gpu/lease.sh PART EXPAND_SECONDS MOSES_STAGE MOSES_SECONDS MOSES_LR MOSES_EVAL
source benchmarks/gpu/setup.sh
PART=$1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ! pgrep -f nvidia-cuda-mps-control > /dev/null; then
  if nvidia-cuda-mps-control -d 2>/dev/null && timeout 40 python3 -c "import torch; print((torch.ones(4, device='cuda') * 2).sum().item())"; then
    echo "MPS on"; else echo quit | nvidia-cuda-mps-control 2>/dev/null; echo "MPS off"; fi
fi
if [ "$PART" = 1 ]; then
  (timeout 300 python3 -m pytest -q tests/test_cuda.py -p no:cacheprovider > $OUT/test_cuda.log 2>&1; echo "rc=$?" >> $OUT/test_cuda.log) &
fi
bash benchmarks/gpu/qm9_actflow_large_warmup.sh $2 > $OUT/w4096.log 2>&1 &
EXP=$!
bash benchmarks/gpu/pretrain_moses_staged.sh $3 $4 $5 $6 > $OUT/moses.log 2>&1 &
MOS=$!
( while sleep 90; do for r in runs/gpu/*/metrics.jsonl runs/gpu/w4096/*/metrics.jsonl; do echo "$r: $(tail -1 $r | cut -c1-110)"; done; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
MON=$!
wait $EXP $MOS; kill $MON
cat $OUT/moses.log; tail -12 $OUT/w4096.log; tail -4 $OUT/test_cuda.log 2>/dev/null
