"""Hand-made run directories with known numbers, for the report tests (no training needed)."""

import json
from pathlib import Path

SMILES = ["CC(=O)NC1CC1", "OCC1=CN=CO1", "CC1(C)OC1C#N", "N#CC1=COC=N1"]


def make_expand_run(root: Path, method: str, seed: int, validity: list[float], coverage: list[float],
                    discoveries: bool = True, corrupt_line: bool = False,
                    rejections: list[dict[str, int]] | None = None) -> Path:
    """A qm9 expansion run dir: evaluations at rounds 0, 2, 4 with the given validity/coverage (and,
    when given, why each evaluation's invalid samples were rejected)."""
    d = root / f"{method}-s{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "kind": "expand", "domain": "qm9", "config": {"method": method, "seed": seed, "rounds": 4,
                                                      "eval_samples": 100},
        "provenance": {"command": f"flowdisco expand qm9 --method {method}", "device": "cpu",
                       "machine": "test", "flowdisco_version": "0.1.0", "started": "2026-11-23T00:00:00"}}))
    lines = []
    for i, r in enumerate([0, 2, 4]):
        rec = {"phase": "expand", "round": r, "round_seconds": 10.0, "eval_validity": validity[i],
               "eval_coverage": coverage[i], "eval_seconds": 2.0}
        if r > 0:  # as in real runs: the distance to the pre-trained samples exists from round 1 on
            rec["eval_frechet_to_reference"] = 0.5 * i
        if rejections is not None:
            rec["rejections"] = rejections[i]
        lines.append(json.dumps(rec))
    if corrupt_line:
        lines.append('{"phase": "expand", "rou')  # cut by a crash
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if discoveries:
        (d / "discoveries.json").write_text(json.dumps({
            "domain": "qm9", "method": method, "similarity": "Tanimoto similarity (Morgan r = 2, 2048 bits)",
            "errors": {}, "n_new": 17,
            "designs": [{"design": s, "round": 1 + k, "nearest_similarity": 0.3 + 0.1 * k}
                        for k, s in enumerate(SMILES)],
            "properties": {"pre-trained (warm-up)": {"Length": [5, 6, 7]},
                           "new in the expansion": {"Length": [6, 8]}}}))
    return d
