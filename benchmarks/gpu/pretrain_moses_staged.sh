#!/bin/bash
# MOSES pre-training in stages that each fit one device command (≤ 10 min), like the shipped QM9
# model's stages: stage 1 trains from scratch at a high learning rate, each later stage continues the
# previous stage's EMA model (--init) at a lower one. Runs live in runs/gpu/moses-sN (ignored by git,
# kept on a warm machine between calls). Each stage writes $OUT/moses-sN.tar (model, config, metrics,
# log); with EVAL=1 it also scores the EMA model on 1,000 samples ($OUT/moses-sN-eval.json).
#   bash benchmarks/gpu/pretrain_moses_staged.sh STAGE SECONDS LR [EVAL]
# NET_ARGS overrides stage 1's network (default "--net edge_dim=64", the width-128, 4-block model that
# plateaued at 3 % validity); the next thing to try is a larger one, e.g.
#   NET_ARGS="--net edge_dim=64 dim=256 depth=8 heads=8" bash benchmarks/gpu/pretrain_moses_staged.sh 1 450 1e-3
STAGE=$1; SECS=$2; LR=$3; EVAL=${4:-0}
R=runs/gpu/moses-s$STAGE; mkdir -p runs/gpu
if [ "$STAGE" -gt 1 ]; then INIT="--init runs/gpu/moses-s$((STAGE - 1))/model"; NET=""; else INIT=""; NET=${NET_ARGS:---net edge_dim=64}; fi
RESUME=; [ -f $R/config.json ] && RESUME=--resume
$FD pretrain moses --device cuda --threads 2 -q --steps 200000 --checkpoint-every 1000 --ema 0.05 \
    --batch-size 1024 --lr $LR $NET $INIT --set time_limit=$SECS --run-dir $R $RESUME > runs/gpu/moses-s$STAGE.log 2>&1
echo "moses stage $STAGE rc=$?"; tail -1 $R/metrics.jsonl | cut -c1-200
if [ "$EVAL" = 1 ]; then
  timeout 200 $FD evaluate $R --device cuda --threads 2 -q --n-samples 1000 --n-valid 500 \
      --json $OUT/moses-s$STAGE-eval.json >> runs/gpu/moses-s$STAGE.log 2>&1
  echo "eval rc=$?"; head -c 1200 $OUT/moses-s$STAGE-eval.json
fi
cp runs/gpu/moses-s$STAGE.log $R/train.log
tar -cf $OUT/moses-s$STAGE.tar -C runs/gpu --exclude=checkpoints --exclude=state moses-s$STAGE
