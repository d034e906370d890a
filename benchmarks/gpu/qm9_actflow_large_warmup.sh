#!/bin/bash
# On the lent GPU: the shipped QM9 model expanded by ActFlow and Rec-F (seeds 0-2) with the paper's
# warm-up W = 4,096 valid molecules, each run stopped after RUN_SECONDS of wall-clock (rounds finished
# by then are in its metrics.jsonl).
#   bash benchmarks/gpu/qm9_actflow_large_warmup.sh RUN_SECONDS
source benchmarks/gpu/setup.sh
RT=${1:-360}
W=/tmp/w; mkdir -p $W
# MPS lets the many small processes share the GPU concurrently instead of time-slicing; off if it fails
if nvidia-cuda-mps-control -d 2>/dev/null && timeout 40 python3 -c "import torch; print((torch.ones(4, device='cuda') * 2).sum().item())"; then
  echo "MPS on"; else echo quit | nvidia-cuda-mps-control 2>/dev/null; echo "MPS off"; fi
(sleep $((RT + 40)); cd $W && tar -cf $OUT/qm9-expand-partial.tar --exclude=state --exclude=frames */metrics.jsonl */config.json) &
(timeout 200 python3 -m pytest -q -x tests/test_cuda.py -p no:cacheprovider > $OUT/test_cuda.log 2>&1; echo "rc=$?" >> $OUT/test_cuda.log) &
OMP_NUM_THREADS=4 python3 -c "from flowdisco.domains import get_domain; get_domain('qm9').test_frechet_features()" &
sleep 20  # the test split's ChemNet features: cached once for every run's evaluations
PIDS=""
for seed in 0 1 2; do for m in actflow rec-f; do
  timeout $RT $FD expand qm9 --method $m --seed $seed --device cuda --threads 1 -q --rounds 400 --eval-every 2 \
    --set warmup_valid=4096 warmup_batch=1024 max_warmup_batches=40 eval_samples=1000 eval_valid=500 \
    --run-dir $W/$m-s$seed > $W/$m-s$seed.log 2>&1 & PIDS="$PIDS $!"
done; done
( while sleep 60; do for r in $W/*/metrics.jsonl; do echo "$r: $(tail -1 $r | cut -c1-100)"; done; done ) &
MON=$!
wait $PIDS; kill $MON
cd $W && tar -cf $OUT/qm9-expand.tar --exclude=state --exclude=frames actflow-s* rec-f-s* *.log
for f in *.log; do echo "== $f"; tail -2 $f; done; tail -5 $OUT/test_cuda.log
