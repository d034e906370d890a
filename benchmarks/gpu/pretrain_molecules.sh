#!/bin/bash
# Pre-train QM9 and MOSES graph models on one GPU, several network variants side by side, each for a
# fixed wall-clock (time_limit), then evaluate each on 2,000 samples. Run on the lent GPU machine:
#   bash benchmarks/gpu/pretrain_molecules.sh QM9_SECONDS MOSES_SECONDS
source benchmarks/gpu/setup.sh
QT=${1:-390}; MT=${2:-330}
W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
(timeout 240 python3 -m pytest -q -x tests/test_cuda.py -p no:cacheprovider > $OUT/test_cuda.log 2>&1; echo "test_cuda rc=$?" >> $OUT/test_cuda.log) &
train() {  # name domain time_limit extra-args...
  local name=$1 dom=$2 tl=$3; shift 3
  $FD pretrain $dom --device cuda --threads 2 -q --steps 200000 --checkpoint-every 2000 --ema 0.05 \
      --run-dir $W/$name --set time_limit=$tl "$@" > $W/$name.log 2>&1
  echo "train $name rc=$?" >> $W/$name.log
  timeout 150 $FD evaluate $W/$name --device cuda --threads 2 -q --n-samples 2000 --n-valid 1000 \
      --json $W/$name/eval2000.json >> $W/$name.log 2>&1
  echo "eval $name rc=$?" >> $W/$name.log
}
PIDS=""
train qm9-a qm9 $QT --batch-size 512 --lr 3e-3 & PIDS="$PIDS $!"
train qm9-b qm9 $QT --batch-size 512 --lr 3e-3 --net edge_dim=64 & PIDS="$PIDS $!"
train qm9-c qm9 $QT --batch-size 512 --lr 3e-3 --net dim=192 depth=6 heads=6 edge_dim=64 & PIDS="$PIDS $!"
train moses-a moses $MT --batch-size 256 --lr 2e-3 & PIDS="$PIDS $!"
train moses-b moses $MT --batch-size 256 --lr 2e-3 --net edge_dim=64 & PIDS="$PIDS $!"
( while sleep 60; do for r in $W/*/metrics.jsonl; do echo "$r: $(tail -1 $r | cut -c1-90)"; done; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
MON=$!
wait $PIDS
kill $MON
for n in qm9-a qm9-b qm9-c moses-a moses-b; do
  cp $W/$n.log $W/$n/train.log 2>/dev/null
  tar -cf $OUT/$n.tar -C $W --exclude=checkpoints $n
  tail -3 $W/$n.log; cat $W/$n/eval2000.json 2>/dev/null | head -30
done
cat $OUT/test_cuda.log | tail -30
