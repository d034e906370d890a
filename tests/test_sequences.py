"""Peptide and protein domains: encodings, verifiers, identity metrics, the shipped AMP classifier,
and one round of expansion on each domain with a tiny model."""

import random
from typing import ClassVar

import numpy as np
import pytest
import torch

import flowdisco as fd
from flowdisco.domains import get_domain
from flowdisco.domains.hmm import HmmHit, conserved_states, hmm_hits
from flowdisco.domains.sequences import Peptides, Proteins, longest_run, read_fasta
from flowdisco.metrics.identity import identity, identity_leaders, kmer_spectrum, max_identity

pytest.importorskip("modlamp")
pytest.importorskip("Bio")


@pytest.fixture(scope="module")
def peptides():
    return get_domain("peptides")


@pytest.fixture(scope="module")
def proteins():
    pytest.importorskip("pyhmmer")
    return get_domain("proteins")


# ------------------------------------------------------------------ identity metrics
def test_identity_on_hand_checked_pairs():
    assert identity("ACDEFGHIK", "ACDEFGHIK") == 1.0
    assert identity("ACDEFGHIK", "ACDEFGHIR") == pytest.approx(8 / 9)
    # a deletion: the shorter sequence aligns fully inside the longer one
    assert identity("ACDEFGHIKLMN", "ACDEFHIKLMN") == pytest.approx(1.0)
    assert identity("", "ACD") == 0.0


def test_identity_leaders_count_hand_checked_clusters():
    base = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    near = base[:10] + "W" + base[11:]  # one substitution: identity 32/33
    other = "GSSGSSPLHNVLEDWCRRLPSGTSTASGCDDDY"
    assert identity(base, other) < 0.35
    seqs = [base, near, other, near, base]
    assert identity_leaders(seqs, 0.35) == [0, 2]
    assert identity_leaders(seqs, 0.99) == [0, 1, 2]  # 32/33 < 0.99: the mutant is its own centre
    assert np.allclose(max_identity([near, other], [base]), [32 / 33, identity(other, base)])


def test_kmer_spectra_are_unit_vectors():
    spec = kmer_spectrum(["ACDA", "KKKK", ""])
    assert spec.shape == (3, 420)
    assert np.allclose(np.linalg.norm(spec[:2], axis=1), 1.0) and not spec[2].any()


# ------------------------------------------------------------------ encodings
@pytest.mark.parametrize("discrete", [False, True])
def test_encode_decode_round_trip_on_real_peptides(peptides, discrete):
    dom = Peptides(discrete=discrete)
    seqs = dom.splits()["train"][:50]
    x, mask = dom.encode(seqs)
    assert x.shape == ((50, 50) if discrete else (50, 50, 20))
    assert dom.decode(x) == seqs
    lengths = (mask if discrete else mask[..., 0]).sum(1).long().tolist()
    assert lengths == [len(s) for s in seqs]
    with pytest.raises(ValueError, match="cannot encode"):
        dom.encode(["ACDXZ"])


def test_sample_masks_follow_the_training_lengths(peptides):
    masks = peptides.sample_masks(4000, torch.Generator().manual_seed(0))
    lengths = masks[..., 0].sum(1)
    train = peptides.training_lengths().float()
    assert abs(lengths.mean().item() - train.mean().item()) < 0.5


def test_splits_are_fixed_and_disjoint(peptides):
    a, b = Peptides().splits(), Peptides().splits()
    assert a == b
    assert not set(a["train"]) & set(a["test"]) and not set(a["train"]) & set(a["valid"])


# ------------------------------------------------------------------ peptide verifier
def test_peptide_verifier_accepts_known_amps_and_rejects_bad_ones(peptides):
    good = ["GIGKFLHSAKKFGEIMNS",  # magainin 2
            "LLGDFFRKSKEKIGKEFKRIVQRIKDFLRNLVPRTES",  # LL-37
            "GIGKFLKKAKKFGKAFVKILKK"]  # pexiganan
    bad = ["KLAK",  # too short
           "GIGKFLKKAKKXGKAFVKILKK",  # non-canonical letter
           "KKKKKKKKKKKK",  # no hydrophobic residue
           "DDEEDLLAAGDDEE",  # negative net charge
           "MSTNPKPQRKTKRNTNRRPQDVKFPGG"]  # hydrophobic ratio too low
    assert peptides.verify(good) == [True] * 3
    assert peptides.verify(bad) == [False] * 5
    assert list(peptides.check([None, "GIGKFLHSAKKFGEIMNS"])) == [False, True]


def test_shipped_amp_classifier_reproduces_its_record_and_scores_proxies(peptides):
    clf = peptides.classifier()
    assert clf.info["cv_roc_auc_mean"] > 0.9 and "proxy" in clf.info
    p = clf.probability(["GIGKFLKKAKKFGKAFVKILKK", "DDEEDLLAAGDDEE"])
    assert p[0] > 0.5 > p[1]


def test_exported_forest_matches_scikit_learn():
    from sklearn.ensemble import RandomForestClassifier

    from flowdisco.forest import Forest

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(int)
    rf = RandomForestClassifier(n_estimators=7, random_state=0).fit(x, y)
    forest = Forest.from_sklearn(rf)
    test = rng.normal(size=(200, 6)).astype(np.float32)
    assert np.allclose(forest.predict_proba(test), rf.predict_proba(test)[:, 1])


# ------------------------------------------------------------------ protein verifier
def test_protein_verifier_accepts_held_out_family_members_and_rejects_shuffled_and_random(proteins):
    held = proteins.splits()["test"][:40]
    rng = random.Random(0)
    shuffled = ["".join(rng.sample(s, len(s))) for s in held]
    uniform = ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in s) for s in held]
    assert np.mean(proteins.verify(held)) >= 0.9
    assert np.mean(proteins.verify(shuffled)) <= 0.05
    assert np.mean(proteins.verify(uniform)) <= 0.05
    s = held[0]
    assert proteins.verify([s[:20] + "AAAAAAA" + s[27:], s[:5] + "X" + s[6:]]) == [False, False]


def test_protein_verifier_requires_the_conserved_anchor_residues(proteins):
    anchors = proteins.family_profile()["anchors"]
    hmm = proteins.family_hmm()
    assert {hmm.consensus[k - 1].upper() for k in anchors} >= {"C", "W"}  # the Ig-fold disulfide and Trp
    s = next(x for x in proteins.splits()["test"] if proteins.verify([x]) == [True])
    no_cys = s.replace("C", "S")  # the disulfide pair gone, everything else kept: HMMER alone still hits it
    assert hmm_hits(hmm, [no_cys]).tolist() == [True]
    assert proteins.verify([s, no_cys]) == [True, False]


def test_conserved_states_counts_missing_hits_against_conservation():
    hits = [HmmHit(50.0, 1e-9, {1: "C", 2: "W", 3: "A"}), HmmHit(40.0, 1e-8, {1: "C", 2: "W", 3: "G"}),
            HmmHit(45.0, 1e-8, {1: "C", 2: "-", 3: "A"}), None]
    assert conserved_states(hits, 0.75) == {1: "C"}
    assert conserved_states(hits, 0.5) == {1: "C", 2: "W", 3: "A"}
    assert conserved_states([], 0.5) == {}


def test_fasta_reader_and_homopolymer_runs(tmp_path):
    (tmp_path / "a.faa").write_text(">one desc\nMKT\nAYI*\n>two\nGG\n")
    assert read_fasta(tmp_path / "a.faa") == [("one desc", "MKTAYI"), ("two", "GG")]
    assert longest_run("MKKKTAAAAAAAY") == 7 and longest_run("") == 0


# ------------------------------------------------------------------ one round of expansion
class LaxPeptides(Peptides):
    """Real encodings, descriptors and metrics; a lax verifier (charge ≥ 0, any length ≥ 2) so that a
    model trained for seconds finds valid designs: this checks the plumbing, not the verifier."""

    verify_rules: ClassVar[dict] = {"min_length": 2, "max_length": 50, "min_charge": -50.0,
                                    "hydrophobic_ratio": (0.0, 1.0)}

    def verify(self, designs):
        return [bool(v) for v in np.logical_and.reduce(list(self.rule_checks(designs).values()))]


class LaxProteins(Proteins):
    evalue = 1e6  # the HMM search still runs, without its filters: nearly anything canonical passes
    min_score_quantile = None
    anchor_conservation = None
    hmm_options: ClassVar[dict] = {"F1": 1.0, "F2": 1.0, "F3": 1.0, "bias_filter": False}


@pytest.mark.parametrize("make", [lambda: LaxPeptides(), lambda: LaxPeptides(discrete=True),
                                  lambda: LaxProteins()], ids=["peptides", "peptides-discrete", "proteins"])
@pytest.mark.parametrize("method", ["actflow", "rec-f"])
def test_one_round_expand_on_sequence_domains_with_a_tiny_model(make, method, tmp_path):
    if isinstance(make(), Proteins):
        pytest.importorskip("pyhmmer")
    dom = make()
    model = fd.pretrain(dom, steps=20, seed=0, progress=False, batch_size=16,
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2})
    run = fd.expand(model, dom, method=method, rounds=1, samples_per_round=8, finetune_steps=3, finetune_batch=8,
                    warmup_valid=4, warmup_batch=16, max_warmup_batches=5, sampler_steps=6, eval_every=1,
                    eval_samples=16, eval_valid=4, surrogate_options={"lengthscale": 0.5},
                    run_dir=tmp_path / "run", progress=False)
    assert [h["round"] for h in run.history] == [0, 1]
    assert run.history[1]["n_generated"] == 8
    ev = run.history[1]["eval"]
    assert "coverage" in ev and ("coverage_kmer" in ev or ev["n_valid"] == 0)
    if method == "actflow" and dom.discrete:
        assert 1.0 <= run.history[1]["tilt_ess"] <= run.buffer.n_valid
        assert "logp_gen" in run.buffer.aux and run.buffer.aux["logp_gen"].shape == (len(run.buffer),)
    # a resumed run of the finished directory changes nothing
    again = fd.expand(model, dom, method=method, rounds=1, samples_per_round=8, finetune_steps=3, finetune_batch=8,
                      warmup_valid=4, warmup_batch=16, max_warmup_batches=5, sampler_steps=6, eval_every=1,
                      eval_samples=16, eval_valid=4, surrogate_options={"lengthscale": 0.5},
                      run_dir=tmp_path / "run", resume=True, progress=False)
    assert torch.equal(again.buffer.x, run.buffer.x)


@pytest.mark.parametrize("layer", ["encoder_head", "descriptors"])
def test_actflow_selection_on_a_discrete_domain_keeps_the_round_size_and_resumes(layer, tmp_path):
    dom = LaxPeptides(discrete=True)
    model = fd.pretrain(dom, steps=20, seed=0, progress=False, batch_size=16,
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2})
    settings = {"rounds": 1, "samples_per_round": 8, "finetune_steps": 3, "finetune_batch": 8, "warmup_valid": 4,
                "warmup_batch": 16, "max_warmup_batches": 5, "sampler_steps": 6, "eval_every": 0,
                "surrogate_options": {"lengthscale": 0.5}, "select_factor": 4, "select_alpha": 0.05,
                "representation_layer": layer}
    run = fd.expand(model, dom, method="actflow", run_dir=tmp_path / "run", progress=False, **settings)
    h = run.history[1]
    assert h["n_generated"] == 8 and h["select_factor"] == 4  # 32 candidates drawn, 8 kept and verified
    assert h["select_reward_kept"] >= h["select_reward_candidates"]
    again = fd.expand(model, dom, method="actflow", run_dir=tmp_path / "run", resume=True, progress=False,
                      **settings)
    assert torch.equal(again.buffer.x, run.buffer.x)


def test_missing_sequence_data_package_gives_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "riot_na" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'flowdisco\[bio\]'"):
        Proteins().all_sequences()


def test_cli_trains_the_amp_verifier(tmp_path):
    from flowdisco.cli import main

    assert main(["train-verifier", "peptides", "--out", str(tmp_path / "clf"), "--trees", "5", "-q"]) == 0
    from flowdisco.domains.amp import AMPClassifier

    clf = AMPClassifier(tmp_path / "clf")
    assert clf.info["n_trees"] == 5 and 0.5 < clf.info["cv_roc_auc_mean"] <= 1.0
