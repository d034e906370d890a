#!/bin/bash
# On the lent GPU: the shipped QM9 model expanded by ActFlow (the paper's ensemble surrogate, and the GP
# surrogate), and Rec-F, seeds 0-2, with the paper's warm-up W = 4,096 valid molecules. Every call runs
# RUN_SECONDS more and resumes the runs in runs/gpu/w4096 (ignored by git; it stays on a warm machine
# between calls), then copies each run's metrics.jsonl and config.json to $OUT/qm9-w4096.tar.
#   bash benchmarks/gpu/qm9_actflow_large_warmup.sh RUN_SECONDS [ROUNDS]
# Sourcing setup.sh (and starting MPS) is the caller's job when this runs beside other work; alone:
#   source benchmarks/gpu/setup.sh; bash benchmarks/gpu/qm9_actflow_large_warmup.sh 500
RT=${1:-500}; ROUNDS=${2:-24}
W=runs/gpu/w4096; mkdir -p $W
OMP_NUM_THREADS=4 python3 -c "from flowdisco.domains import get_domain; get_domain('qm9').test_frechet_features()"
PIDS=""
for seed in 0 1 2; do for arm in actflow actflow-gp rec-f; do
  case $arm in
    actflow-gp) M=actflow; EXTRA="surrogate=gp guidance_strength=10";;
    *) M=$arm; EXTRA="";;
  esac
  R=$W/$arm-s$seed
  if [ -f $R/config.json ]; then RESUME=--resume; else RESUME=; fi
  timeout $RT $FD expand qm9 --method $M --seed $seed --device cuda --threads 1 -q --rounds $ROUNDS --eval-every 4 \
    --set warmup_valid=4096 warmup_batch=1024 max_warmup_batches=40 eval_samples=1000 eval_valid=500 $EXTRA \
    --run-dir $R $RESUME >> $W/$arm-s$seed.log 2>&1 & PIDS="$PIDS $!"
done; done
wait $PIDS
(cd $W && tar -cf $OUT/qm9-w4096.tar */metrics.jsonl */config.json *.log)
for f in $W/*.log; do echo "== $f: $(grep -c . ${f%.log}/metrics.jsonl 2>/dev/null) lines"; tail -1 $f | cut -c1-160; done
