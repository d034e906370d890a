import numpy as np
import pytest
import torch

rdkit = pytest.importorskip("rdkit", reason="molecule tests need the chem extra (installed by `make test`)")

import flowdisco as fd  # noqa: E402
from flowdisco.domains import get_domain  # noqa: E402
from flowdisco.domains.molecules import tanimoto  # noqa: E402
from flowdisco.domains.molgraph import (  # noqa: E402
    GraphSpec,
    argmax_bonds,
    canonical,
    capped_bonds,
    joined_bonds,
    valence_cap,
)
from flowdisco.domains.qm9 import QM9, qm9_rejection, qm9_valid  # noqa: E402


@pytest.fixture(scope="module")
def qm9():
    return QM9(max_train=500)


def test_encode_decode_round_trip_recovers_canonical_smiles(qm9):
    smiles = qm9.splits()["test"][:200]
    spec = GraphSpec()
    ok = 0
    for s in smiles:
        x = spec.encode(s)
        if x is None:
            continue
        ok += 1
        assert spec.decode(x[None])[0] == canonical(s), s
    assert ok >= 190  # nearly all QM9 molecules are representable


def test_verifier_accepts_good_and_rejects_bad_molecules():
    for good in ("CCO", "c1ccccc1", "O=C1CC1", "FC(F)F", "N#CC=O"):
        assert qm9_valid(good), good
    bad = {"C(C)(C)(C)(C)C": "pentavalent carbon", "CC.O": "two fragments", "C[NH3+]": "charged atom",
           "CCCl": "disallowed element", "[CH3]": "radical", "CCCCCCCCCC": "10 heavy atoms", "": "empty",
           "xyz": "unparsable"}
    for smi, why in bad.items():
        assert not qm9_valid(smi), why
    # the verifier names the first check each one fails
    assert [qm9_rejection(s) for s in bad] == [
        "an atom over its valence", "several fragments", "a charged atom or a radical",
        "an element other than C, N, O, F", "a charged atom or a radical", "more than 9 heavy atoms", "empty",
        "not parsable"]
    assert qm9_rejection("c1cccc1") == "cannot be kekulised" and qm9_rejection("CCO") is None


def test_coverage_vendi_novelty_on_hand_checked_sets(qm9):
    fp = qm9.descriptors(["CCO", "CCO", "CCN", "c1ccccc1"])
    sim = tanimoto(fp, fp)
    assert sim[0, 1] == 1.0 and 0 < sim[0, 2] < 1 and sim[0, 3] == 0.0
    assert qm9.coverage(fp) == 2  # {CCO, CCO, CCN} within Tanimoto distance 0.85; benzene alone
    assert qm9.vendi(qm9.descriptors(["CCO", "c1ccccc1", "FC(F)F"])) == pytest.approx(3.0, abs=0.05)
    train = qm9.reference_designs()[:5]
    assert torch.allclose(qm9.nearest_reference_similarity(qm9.descriptors(train)), torch.ones(5, dtype=torch.float64))


def test_sampled_masks_follow_training_sizes(qm9):
    m = qm9.sample_masks(64, torch.Generator().manual_seed(0))
    sizes = m[:, :, 0].sum(1)
    assert m.shape == (64, 9, 43) and sizes.min() >= 1 and sizes.max() <= 9
    assert (m[:, torch.arange(9), 7 + 4 * torch.arange(9)] == 0).all()  # no self-bonds


def test_one_round_expand_on_qm9_with_a_tiny_model(qm9):
    model = fd.pretrain(qm9, steps=400, seed=0, progress=False, batch_size=32, lr=3e-3,
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2})
    run = fd.expand(model, qm9, rounds=1, samples_per_round=16, finetune_steps=5, finetune_batch=8,
                    warmup_valid=2, warmup_batch=32, max_warmup_batches=20, sampler_steps=10, eval_every=0,
                    surrogate_options={"max_steps": 30}, progress=False)
    assert len(run.history) == 2 and run.history[1]["n_generated"] == 16
    assert run.buffer.x.shape[1:] == (9, 43)


def test_missing_data_package_gives_a_clear_error(monkeypatch):
    import importlib.util

    from flowdisco.domains import qm9 as qm9_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'flowdisco\[chem\]'"):
        qm9_module.load_qm9_smiles()


def test_fcd_is_zero_for_identical_sets_and_grows_with_distribution_shift(qm9):
    from flowdisco.metrics.fcd import fcd

    a = qm9.splits()["test"][:300]
    b = qm9.splits()["valid"][:300]
    drug_like = ["CCOc1ccc(cc1)C(=O)Nc1ccccc1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CN1CCC[C@H]1c1cccnc1"] * 100
    same = fcd(a, a)
    near = fcd(a, b)
    far = fcd(a, drug_like)
    assert abs(same) < 1e-3 and near < far


def test_molecule_grid_of_new_designs(qm9, tmp_path):
    out = tmp_path / "new.png"
    assert qm9.plot_designs(str(out), ["CCO", "c1ccccc1O", "not-a-molecule"], ["a", "b", "c"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


OUTSIDE = ["FC(F)F", "C1CC1", "OC1CCC1", "Fc1ccccc1"]  # fluorine, a 3-ring, a 4-ring, fluorine on benzene


def _tiny_ood():
    from flowdisco.domains.qm9 import QM9OutOfDistribution, in_restriction, load_qm9_smiles

    class TinyOOD(QM9OutOfDistribution):  # QM9's first molecules inside the restriction + OUTSIDE
        def all_smiles(self):
            return [s for s in load_qm9_smiles()[:400] if in_restriction(s)] + ["c1ccccc1"] + OUTSIDE

    return TinyOOD()


def test_restriction_and_scaffolds():
    from flowdisco.domains.qm9 import in_restriction, murcko_scaffold

    assert in_restriction("CCO") and in_restriction("c1ccccc1") and in_restriction("CC1CCCC1")
    assert not any(in_restriction(s) for s in OUTSIDE)
    assert murcko_scaffold("Fc1ccccc1") == "c1ccccc1" and murcko_scaffold("CCO") == ""


def test_ood_domain_trains_inside_the_restriction_and_counts_held_out_reach():
    from flowdisco.domains.qm9 import in_restriction, ood_counts

    dom = _tiny_ood()
    assert all(in_restriction(s) for split in dom.splits().values() for s in split)
    mols, scaffolds = dom.held_out()
    assert {canonical(s) for s in OUTSIDE} == mols
    assert scaffolds == {"C1CC1", "C1CCC1"}  # benzene also occurs inside the restriction: not held out
    got = ood_counts(dom, ["C1CC1", "CC1CC1", "Fc1ccccc1", "CCO"])
    assert got["outside_restriction_fraction"] == 0.75
    assert got["held_out_molecules"] == 2 and got["held_out_scaffolds"] == 1
    assert canonical("FC(F)F") in dom.dataset_keys()  # held-out molecules are not "new"


def test_set_metrics_reports_fcd_to_test_extra_coverage_and_domain_metrics():
    import numpy as np

    from flowdisco.evaluate import set_metrics
    from flowdisco.generate import Generated

    dom = _tiny_ood()
    designs = ["C1CC1", "CCO", "CCN", "c1ccccc1", "CC(=O)O", "OCC1CC1"]
    g = Generated(x=torch.zeros(len(designs), 1), mask=None, designs=designs, valid=np.ones(len(designs), bool))
    out = set_metrics(dom, g, reference_features=dom.frechet_features(designs))
    assert out["frechet_to_reference"] == pytest.approx(0.0, abs=1e-3) and out["frechet_to_test"] > 1.0
    assert out["coverage_0.9"] <= out["coverage"] <= out["coverage_0.7"]
    assert out["held_out_scaffolds"] == 1 and out["outside_restriction_fraction"] == pytest.approx(2 / 6)


def test_canonical_and_fingerprint_caches_are_read_back_and_survive_corruption(tmp_path, monkeypatch):
    from flowdisco.domains.molecules import cache_dir, cached_canonical, cached_morgan_bits, morgan_bits

    monkeypatch.setenv("FLOWDISCO_CACHE", str(tmp_path))
    smiles = ["OCC", "C(C)O", "not a smiles", "c1ccccc1"]
    assert cached_canonical(smiles) == ["CCO", "CCO", None, "c1ccccc1"]
    (path,) = cache_dir().glob("canonical-*.json")
    path.write_text('["planted", "CCO", null, "c1ccccc1"]')  # a second call reads the file, not RDKit
    assert cached_canonical(smiles)[0] == "planted"
    path.write_text("[truncated")  # a corrupt cache is recomputed and rewritten, never an error
    assert cached_canonical(smiles) == ["CCO", "CCO", None, "c1ccccc1"]
    assert cached_canonical(smiles) == ["CCO", "CCO", None, "c1ccccc1"]

    bits = cached_morgan_bits(smiles)
    assert torch.equal(bits, morgan_bits(smiles)) and bits[2].sum() == 0
    assert torch.equal(cached_morgan_bits(smiles), bits)  # unpacked from disk bit for bit
    (fp_path,) = cache_dir().glob("morgan-*.safetensors")
    fp_path.write_bytes(b"garbage")
    assert torch.equal(cached_morgan_bits(smiles), bits)


def test_dataset_keys_and_reference_designs_are_canonical(qm9):
    keys = qm9.dataset_keys()
    n_all = sum(len(v) for v in qm9.splits().values())
    assert 0.99 * n_all <= len(keys) <= n_all
    ref = qm9.reference_designs()
    assert len(ref) == len(qm9.training_data())
    assert all(r == canonical(r) for r in ref[:200]) and set(ref) <= keys


def test_valence_caps_follow_rdkit_for_charged_atoms():
    caps = {("C", 0): 4, ("N", 0): 3, ("N", 1): 4, ("O", -1): 1, ("O", 1): 3, ("S", 0): 6, ("F", -1): 0, ("Cl", 0): 1}
    for (element, charge), cap in caps.items():
        assert valence_cap(element, charge) == cap, (element, charge)


def test_capped_bonds_drop_the_least_confident_bond_and_lower_orders():
    # a carbon (atom 0) bonded to five fluorines: the weakest of the five bonds (to atom 5) goes
    pair = torch.zeros(6, 6, 4)
    for j, margin in zip(range(1, 6), (5.0, 4.0, 3.0, 2.0, 1.0), strict=True):
        pair[0, j, 1] = pair[j, 0, 1] = margin
    assert capped_bonds(pair, [4, 1, 1, 1, 1, 1]) == [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1)]
    # an oxygen with an argmax triple bond to carbon keeps a double one; the argmax decoding is over
    pair = torch.zeros(2, 2, 4)
    pair[0, 1, 3] = pair[1, 0, 3] = 1.0
    assert argmax_bonds(pair) == [(0, 1, 3)]
    assert capped_bonds(pair, [valence_cap("O", 0), valence_cap("C", 0)]) == [(0, 1, 2)]


def test_capped_decoding_keeps_valid_molecules_and_never_exceeds_a_valence():
    spec = GraphSpec()
    smiles = [s for s in QM9(max_train=10).splits()["test"][:100] if spec.encode(s) is not None]
    x = torch.stack([spec.encode(s) for s in smiles])
    assert spec.decode(x, decoding="capped") == spec.decode(x) == [canonical(s) for s in smiles]
    # noise with every atom present: most argmax graphs are over-valent, no capped one is
    gen = torch.Generator().manual_seed(0)
    full = spec.mask_for_sizes(torch.full((200,), 9))
    noise = torch.randn(200, *spec.shape, generator=gen) * full
    argmax_ok = [canonical(s) is not None for s in spec.decode(noise, full)]
    capped_ok = [canonical(s) is not None for s in spec.decode(noise, full, decoding="capped")]
    assert all(capped_ok) and sum(argmax_ok) < 100
    with pytest.raises(ValueError, match="argmax, capped, connected"):
        spec.decode(noise[:1], decoding="greedy")


def test_joined_bonds_join_fragments_at_the_most_favoured_pair_with_room():
    # C0-C1 and C2-O3 are two fragments; the model favours 1-3 most, then 0-3, then 1-2 (as a double bond)
    pair = torch.zeros(4, 4, 4)
    pair[..., 0] = 1.0
    for (i, j), (cls, score) in {(1, 3): (1, 3.0), (0, 3): (1, 2.0), (1, 2): (2, 1.5)}.items():
        pair[i, j, cls] = pair[j, i, cls] = score
    bonds = [(0, 1, 1), (2, 3, 1)]
    assert joined_bonds(pair, [4, 4, 4, 2], bonds) == [*bonds, (1, 3, 1)]
    # O3 has no room left (a double bond to C2): the join goes to the next pair, at the order it favours
    assert joined_bonds(pair, [4, 4, 4, 2], [(0, 1, 1), (2, 3, 2)]) == [(0, 1, 1), (2, 3, 2), (1, 2, 2)]
    # ... lowered to the room C1 has left
    assert joined_bonds(pair, [4, 2, 4, 2], [(0, 1, 1), (2, 3, 2)]) == [(0, 1, 1), (2, 3, 2), (1, 2, 1)]
    # no atom has room: the fragments stay; one fragment: nothing is added
    assert joined_bonds(pair, [1, 1, 1, 1], bonds) == bonds
    assert joined_bonds(pair, [4, 4, 4, 2], [(0, 1, 1), (1, 2, 1), (2, 3, 1)]) == [(0, 1, 1), (1, 2, 1), (2, 3, 1)]
    # three isolated carbons: a spanning tree of two bonds, never a ring
    pair = torch.zeros(3, 3, 4)
    pair[..., 1] = 1.0
    assert len(joined_bonds(pair, [4, 4, 4], [])) == 2


def test_connected_decoding_keeps_one_fragment_graphs_and_joins_the_rest():
    spec = GraphSpec()
    smiles = [s for s in QM9(max_train=10).splits()["test"][:100] if spec.encode(s) is not None]
    x = torch.stack([spec.encode(s) for s in smiles])
    assert spec.decode(x, decoding="connected") == [canonical(s) for s in smiles]
    # sparse noise graphs of neutral C, N, O (no F, every charge 0; "none" favoured for every pair)
    gen = torch.Generator().manual_seed(1)
    full = spec.mask_for_sizes(torch.full((200,), 9))
    noise = torch.randn(200, *spec.shape, generator=gen)
    noise[:, :, spec.n_atom_features::4] += 2.0
    noise[:, :, spec.elements.index("F")] = -9.0
    noise[:, :, len(spec.elements) + spec.charges.index(0)] = 9.0
    noise = noise * full
    capped = spec.decode(noise, full, decoding="capped")
    connected = spec.decode(noise, full, decoding="connected")
    Chem = pytest.importorskip("rdkit.Chem")
    for c, j in zip(capped, connected, strict=True):
        assert canonical(j) is not None  # joins never exceed a valence
        if "." not in c:
            assert j == c  # a one-fragment capped graph is left as it is
        # fragments stay only when at most one of them has room (hydrogens, here) for another bond
        with_room = [f for f in j.split(".") if any(a.GetTotalNumHs() for a in Chem.MolFromSmiles(f).GetAtoms())]
        assert "." not in j or len(with_room) <= 1, j
    assert sum("." in c for c in capped) == 200 and sum("." in j for j in connected) < 100


def test_capped_domain_variant_is_named_and_shares_the_model():
    capped = fd.domains.get_domain("qm9-capped", max_train=10)
    assert capped.name == "qm9-capped" and capped.decoding == "capped"
    assert capped.shape == QM9().shape
    assert fd.domains.get_domain("qm9-capped").pretrained_model_path() == QM9().pretrained_model_path() is not None
    connected = fd.domains.get_domain("qm9-connected", max_train=10)
    assert connected.name == "qm9-connected" and connected.decoding == "connected"
    assert fd.domains.get_domain("qm9-connected").pretrained_model_path() == QM9().pretrained_model_path()
    with pytest.raises(ValueError, match="unknown decoding 'x'"):
        QM9(decoding="x")


def test_sample_command_decodes_a_qm9_model_with_the_capped_variant(tmp_path):
    import json

    from flowdisco.cli import main

    model = QM9().pretrained_model_path()
    assert main(["sample", model, "-n", "6", "--steps", "4", "--domain", "qm9-capped", "--out", str(tmp_path / "s"),
                 "--threads", "1", "-q"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s" / "designs.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(canonical(r["design"]) is not None for r in rows)  # capped graphs all sanitise


def test_redecoded_scores_the_same_tensors_with_the_capped_decoder():
    from flowdisco.evaluate import redecoded, rejection_counts, sample_metrics
    from flowdisco.generate import Generated

    argmax, capped = QM9(max_train=200), fd.domains.get_domain("qm9-capped", max_train=200)
    spec = argmax.spec
    good = spec.encode("CC(C)(C)CO")  # atom 1 is the quaternary carbon, atom 5 the oxygen
    bad = good.clone()  # ... plus a weak C1-O5 bond: a five-bonded carbon under argmax
    A, B = spec.n_atom_features, 4
    for i, j in ((1, 5), (5, 1)):
        bad[i, A + j * B: A + (j + 1) * B] = torch.tensor([-0.2, 0.2, -1.0, -1.0])
    x = torch.stack([good, bad])
    designs = argmax.decode(x)
    raw = Generated(x=x, mask=None, designs=designs, valid=argmax.check(designs))
    assert raw.valid.tolist() == [True, False]
    again = redecoded(capped, raw)
    assert again.x is raw.x and again.designs == [canonical("CC(C)(C)CO")] * 2 and again.valid.all()
    stats = sample_metrics(capped, again, 2, again.select(again.valid))
    assert stats["validity"] == 1.0 and stats["n_valid"] == 2 and stats["uniqueness_raw"] == 0.5
    # why the argmax decoding failed, and that capping left nothing to explain
    assert rejection_counts(argmax, raw) == {"an atom over its valence": 1} and rejection_counts(capped, again) == {}


def test_rejection_counts_name_each_failure_and_never_raise():
    from flowdisco.evaluate import format_rejections, rejection_counts
    from flowdisco.generate import Generated

    class Unhelpful(QM9):
        def rejection_reason(self, design):
            raise RuntimeError("no idea")

    designs = [None, "CC.O", "CCO", "C1CC", "CO.C"]
    raw = Generated(x=torch.zeros(5, 1), mask=None, designs=designs, valid=np.array([False, False, True, False, False]))
    counts = rejection_counts(QM9(max_train=200), raw)
    assert counts == {"several fragments": 2, "not decoded": 1, "not parsable": 1}
    assert next(iter(counts)) == "several fragments"  # most common first
    assert rejection_counts(QM9(max_train=200), raw, n_samples=2) == {"not decoded": 1, "several fragments": 1}
    assert rejection_counts(Unhelpful(max_train=200), raw) == {"rejected by the verifier": 3, "not decoded": 1}
    assert format_rejections(counts, 5) == "4 of 5 invalid: 2 several fragments, 1 not decoded, 1 not parsable"
    assert format_rejections({}, 5) == "0 of 5 invalid"


def test_finetuning_on_decoded_designs_swaps_in_the_clean_graph_of_each_design():
    from flowdisco.expand.loop import _decoded_again

    argmax, capped = QM9(max_train=200), fd.domains.get_domain("qm9-capped", max_train=200)
    spec = argmax.spec
    good = spec.encode("CC(C)(C)CO")
    bad = good.clone()  # a weak extra C1-O5 bond: five-bonded carbon under argmax, neopentanol when capped
    A, B = spec.n_atom_features, 4
    for i, j in ((1, 5), (5, 1)):
        bad[i, A + j * B: A + (j + 1) * B] = torch.tensor([-0.2, 0.2, -1.0, -1.0])
    data = {"x": torch.stack([0.7 * good, bad]), "mask": spec.mask_for_sizes(torch.tensor([6, 6]))}
    clean = spec.encode(canonical("CC(C)(C)CO"))
    out = _decoded_again(data, capped)
    assert torch.equal(out["x"][0], clean) and torch.equal(out["x"][1], clean)
    assert torch.equal(out["mask"], data["mask"]) and torch.equal(data["x"][1], bad)  # the input is left alone
    out = _decoded_again(data, argmax)  # the argmax graph of row 1 does not sanitise: its sample stays
    assert torch.equal(out["x"][0], clean) and torch.equal(out["x"][1], bad)


def test_discrete_variant_holds_token_graphs_that_decode_to_the_canonical_smiles():
    dom = get_domain("qm9-discrete", max_train=200)
    assert dom.name == "qm9-discrete" and dom.flow_path == "masked" and dom.shape == (9 + 36,)
    assert dom.model_extra() == {"vocab_size": 4 * 3 + 4} and dom.representation_time == 1.0
    x, mask = dom.training_data(), dom.training_masks()
    assert x.shape == (200, 45) and torch.equal((x >= 0).float(), mask)  # PAD exactly where the mask is 0
    smiles = dom._train_smiles[:100]
    assert dom.decode(x[:100]) == [canonical(s) for s in smiles]
    xe, me = dom.encode_designs([*smiles, "not a molecule"])
    assert torch.equal(xe[:100], x[:100]) and torch.equal(me[:100], mask[:100]) and me[100].sum() == 0
    sampled = dom.sample_masks(50, torch.Generator().manual_seed(0))
    assert set((sampled[:, :9].sum(1)).long().tolist()) <= set(range(1, 10))
    assert dom.pretrained_model_path() != QM9().pretrained_model_path()  # never the Gaussian model's file
    with pytest.raises(ValueError, match="decode as drawn"):
        QM9(discrete=True, decoding="capped")


def test_one_round_expand_on_qm9_discrete_with_a_tiny_model():
    dom = get_domain("qm9-discrete", max_train=500)
    model = fd.pretrain(dom, steps=150, seed=0, progress=False, batch_size=32, lr=3e-3,
                        network_kwargs={"dim": 32, "depth": 1, "heads": 2, "edge_dim": 8})
    assert model.kind == "discrete" and model.network_name == "graph-mp-tokens"
    run = fd.expand(model, dom, rounds=1, samples_per_round=16, finetune_steps=5, finetune_batch=8,
                    warmup_valid=2, warmup_batch=32, max_warmup_batches=20, sampler_steps=10, eval_every=0,
                    elbo_samples=2, surrogate_options={"max_steps": 30}, progress=False)
    assert len(run.history) == 2 and run.history[1]["n_generated"] == 16
    assert run.buffer.x.shape[1:] == (45,)
    designs = dom.decode(run.buffer.x)
    assert all(isinstance(s, str) and s for s in designs)


def test_the_shipped_discrete_qm9_model_is_a_working_generator():
    from flowdisco.flow.model import DiscreteFlowModel, FlowModel
    from flowdisco.generate import generate

    dom = get_domain("qm9-discrete", max_train=200)  # atom counts drawn from 200 molecules
    model = FlowModel.load(QM9(discrete=True).pretrained_model_path())
    assert isinstance(model, DiscreteFlowModel) and model.domain_name == "qm9-discrete"
    g = generate(model, dom, 200, generator=torch.Generator().manual_seed(0), steps=20)
    sizes = g.mask[:, :9].sum(1)
    assert torch.equal(g.x >= 0, g.mask > 0) and sizes.min() >= 1
    # measured 0.74 ± 0.03 own validity at 50 steps (BENCHMARKS.md); a broken file or decoder gives ~0
    assert g.valid.mean() > 0.5, g.valid.mean()
    assert len(set(np.array(g.designs)[g.valid])) > 0.9 * g.valid.sum()  # not one molecule over and over


def test_descriptor_representation_gives_unit_fingerprints_and_zero_for_undecodable_designs():
    from flowdisco.expand.representation import DescriptorRepresentation, make_representation

    class OneUndecodable(QM9):
        def decode_safe(self, x):
            out = super().decode_safe(x)
            return [*out[:-1], None]

    spec = GraphSpec()
    x = torch.stack([spec.encode(s) for s in ("CCO", "OCC", "c1ccccc1", "CCN")])
    feats = make_representation(None, "descriptors", 1.0, OneUndecodable(max_train=10)).features(x)
    assert feats.shape == (4, 2048)
    assert torch.equal(feats[0], feats[1])  # one molecule, two SMILES
    assert torch.allclose(feats[:3].norm(dim=1), torch.ones(3))
    cos = float(feats[0] @ feats[2])
    bits = QM9(max_train=10).descriptors(["CCO", "c1ccccc1"]).float()
    assert cos == pytest.approx(float(bits[0] @ bits[1]) / float(bits[0].norm() * bits[1].norm()))
    assert not feats[3].any()  # the design that did not decode
    plain = make_representation(None, "descriptors", 1.0, QM9(max_train=10))
    assert torch.equal(plain.features(x, batch_size=3), plain.features(x))  # batched: the same rows

    class NoneDecodes(QM9):
        def decode_safe(self, x):
            return [None] * x.shape[0]

    nothing = make_representation(None, "descriptors", 1.0, NoneDecodes(max_train=10)).features(x[:2])
    assert nothing.shape == (2, 2048) and not nothing.any()  # the width of the fitted features, not 1

    class NoWidth(NoneDecodes):
        def descriptors(self, designs):
            return torch.as_tensor(np.asarray(designs, dtype=np.float32)).reshape(len(designs), -1)

    with pytest.raises(ValueError, match="gives no width"):
        make_representation(None, "descriptors", 1.0, NoWidth(max_train=10)).features(x[:2])
    with pytest.raises(ValueError, match="needs a domain with descriptors"):
        make_representation(None, "descriptors", 1.0)
    assert isinstance(make_representation(None, "descriptors", 1.0, QM9(max_train=10)), DescriptorRepresentation)


def test_descriptor_representation_refuses_gradient_guidance_of_a_continuous_model():
    from flowdisco.domains.toy2d import Toy2D

    model = fd.FlowModel("mlp", {"shape": [2], "width": 8, "depth": 1}, (2,))
    with pytest.raises(ValueError, match="no gradient"):
        fd.expand(model, Toy2D(n_train=16), rounds=1, representation_layer="descriptors", progress=False)
