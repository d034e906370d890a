#!/bin/bash
# MOSES pre-training spread over several device commands (each ≤ 10 min) and, if need be, several
# leases: every call trains SECONDS more and resumes the same run, runs/gpu/moses-long (ignored by
# git, so it stays on the warm machine between calls; carry it to the next lease with
#   run(carry=[".devcarry", "runs/gpu/moses-long"])
# after unpacking the previous call's $OUT/moses-long.tar into runs/gpu/ here). After training it
# scores the EMA model on 1,000 samples (Euler, 100 steps) and writes $OUT/moses-long.tar (model,
# checkpoints, logs) and $OUT/eval.json.
#   bash benchmarks/gpu/pretrain_moses_long.sh SECONDS
# The recipe is the 400-second run of BENCHMARKS.md (validity 0.027 after 7,400 steps) continued;
# 200,000 steps at a constant learning rate is an upper bound that the time limit ends first.
source benchmarks/gpu/setup.sh
SECONDS_PER_CALL=${1:-420}
RUN=runs/gpu/moses-long
mkdir -p runs/gpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ -f $RUN/config.json ]; then RESUME=--resume; echo "resuming $RUN"; else RESUME=; echo "new run $RUN"; fi
$FD pretrain moses --device cuda --threads 2 -q --steps 200000 --checkpoint-every 1000 --ema 0.05 \
    --batch-size 256 --lr 2e-3 --net edge_dim=64 --set time_limit=$SECONDS_PER_CALL \
    --run-dir $RUN $RESUME 2>&1 | tail -5
echo "pretrain rc=${PIPESTATUS[0]}"
tail -2 $RUN/metrics.jsonl | cut -c1-200
timeout 150 $FD evaluate $RUN --device cuda --threads 2 -q --n-samples 1000 --n-valid 500 \
    --json $OUT/eval.json > $OUT/eval.log 2>&1
echo "eval rc=$?"; head -c 1500 $OUT/eval.json
tar -cf $OUT/moses-long.tar -C runs/gpu moses-long
ls -la $OUT
