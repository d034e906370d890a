"""Benchmark: how the sequence verifiers treat real, shuffled and random sequences.

    python benchmarks/verifiers.py            # → benchmarks/results/verifiers.json

For each sequence domain: the acceptance rate on its training sequences, on the held-out split
(valid + test), on the held-out sequences shuffled (same composition, order destroyed; 3 shuffles
each) and on uniformly random sequences of the same lengths (3 each); for peptides also on modlamp's
UniProt non-AMP sequences, and the shipped AMP classifier's cross-validated ROC-AUC. Targets for the
protein verifier (issue): ≥ 90 % of held-out real accepted, ≥ 95 % of shuffled and of random rejected.
"""

from __future__ import annotations

import random
import time

import numpy as np

import flowdisco as fd
from common import write_result

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def rates(dom, groups: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, seqs in groups.items():
        t0 = time.perf_counter()
        ok = np.asarray(dom.check(seqs), dtype=bool)
        out[name] = {"n": len(seqs), "accepted": float(ok.mean()) if len(seqs) else float("nan"),
                     "seconds_per_1000": 1000 * (time.perf_counter() - t0) / max(1, len(seqs))}
        print(f"{dom.name:10s} {name:24s} n={len(seqs):5d} accepted {out[name]['accepted']:.3f}", flush=True)
    return out


def controls(seqs: list[str], seed: int = 0, copies: int = 3) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {"held-out shuffled": ["".join(rng.sample(s, len(s))) for s in seqs for _ in range(copies)],
            "random (same lengths)": ["".join(rng.choice(AMINO) for _ in s) for s in seqs for _ in range(copies)]}


def main() -> None:
    started = time.time()
    result = {}
    pep = fd.domains.get_domain("peptides")
    sp = pep.splits()
    held = sp["valid"] + sp["test"]
    from flowdisco.domains.amp import amp_dataset

    seqs, labels = amp_dataset()
    negatives = [s for s, y in zip(seqs, labels, strict=True) if y == 0]
    groups = {"training AMPs": sp["train"], "held-out AMPs": held, "UniProt non-AMPs": negatives, **controls(held)}
    result["peptides"] = {"acceptance": rates(pep, groups), "classifier": pep.classifier().info}
    rules = pep.rule_checks(sp["train"])
    result["peptides"]["training_AMPs_passing_each_rule"] = {k: float(v.mean()) for k, v in rules.items()}

    prot = fd.domains.get_domain("proteins")
    sp = prot.splits()
    held = sp["valid"] + sp["test"]
    acc = rates(prot, {"training": sp["train"], "held-out": held, **controls(held)})
    profile = prot.family_profile()
    result["proteins"] = {"acceptance": acc, "hmm_length": int(prot.family_hmm().M),
                          "min_score_bits": profile["min_score"], "min_score_quantile": prot.min_score_quantile,
                          "anchors": {str(k): r for k, r in profile["anchors"].items()},
                          "anchor_conservation": prot.anchor_conservation,
                          "targets_met": {"held_out_accepted_at_least_0.90": acc["held-out"]["accepted"] >= 0.9,
                                          "shuffled_rejected_at_least_0.95":
                                              acc["held-out shuffled"]["accepted"] <= 0.05,
                                          "random_rejected_at_least_0.95":
                                              acc["random (same lengths)"]["accepted"] <= 0.05}}
    write_result("verifiers", result, started)


if __name__ == "__main__":
    main()
