import pytest
import torch

pytest.importorskip("rdkit", reason="molecule tests need the chem extra (installed by `make test`)")

from flowdisco.domains.molgraph import canonical
from flowdisco.domains.moses import MOSES_SPEC, Moses, load_moses_smiles, moses_rejection, moses_valid


def test_moses_test_molecules_pass_the_filters_and_round_trip():
    smiles = load_moses_smiles("test")[:100]
    assert all(moses_valid(s) for s in smiles)
    encodable = [s for s in smiles if MOSES_SPEC.encode(s) is not None]
    assert len(encodable) >= 95
    for s in encodable[:30]:
        assert MOSES_SPEC.decode(MOSES_SPEC.encode(s)[None])[0] == canonical(s)
    # capping leaves real drug-like molecules as they are (sulfonyl S at 6, halogens at 1, ...)
    x = torch.stack([MOSES_SPEC.encode(s) for s in encodable])
    assert MOSES_SPEC.decode(x, decoding="capped") == [canonical(s) for s in encodable]


@pytest.mark.parametrize(("smiles", "why", "reason"), [
    ("C1CCCCCCC1", "8-membered ring", "a ring of 8 or more atoms"),
    ("CC(=O)[O-]", "charge", "a charged atom or a disallowed element"),
    ("c1ccccc1.CC", "two fragments", "several fragments"),
    ("CCI", "iodine", "a charged atom or a disallowed element"),
    ("CC=O", "MCF aldehyde", "an MCF or PAINS substructure"),
    ("C1OC1CC", "MCF epoxide", "an MCF or PAINS substructure"), ("", "empty", "empty"),
    ("C(C)(C)(C)(C)C", "valence", "an atom over its valence"),
])
def test_moses_filters_reject_and_say_why(smiles, why, reason):
    assert not moses_valid(smiles), why
    assert moses_rejection(smiles) == reason
    assert Moses(max_train=50).rejection_reason(smiles) == reason


def test_moses_domain_metadata():
    dom = Moses(max_train=50)
    assert dom.shape == (26, 8 + 26 * 4)
    assert dom.training_data().shape[1:] == dom.shape
    assert dom.check(["CCOc1ccccc1", "CC=O"]).tolist() == [True, False]


def test_the_shipped_moses_model_loads_and_samples_through_the_capped_decoder():
    from flowdisco.domains import get_domain
    from flowdisco.flow.model import FlowModel

    path = Moses().pretrained_model_path()
    assert path is not None and get_domain("moses-capped").pretrained_model_path() == path
    assert Moses(max_train=50).pretrained_model_path() is None  # another training subset: not this model's
    model = FlowModel.load(path)
    assert model.domain_name == "moses" and tuple(model.shape) == MOSES_SPEC.shape
    dom = get_domain("moses-capped", max_train=50)
    gen = torch.Generator().manual_seed(0)
    x = model.sample(4, steps=3, generator=gen, mask=dom.sample_masks(4, gen))
    assert all(canonical(s) is not None for s in dom.decode(x))  # capped graphs always sanitise
    joined = get_domain("moses-connected", max_train=50).decode(x)
    assert all(canonical(s) is not None for s in joined)
    assert sum("." in s for s in joined) <= sum("." in s for s in dom.decode(x))


def test_the_shipped_discrete_moses_model_samples_token_graphs_of_the_drawn_sizes():
    from flowdisco.domains import get_domain
    from flowdisco.flow.model import DiscreteFlowModel, FlowModel

    dom = get_domain("moses-discrete", max_train=50)
    path = Moses(discrete=True).pretrained_model_path()
    assert path is not None and path != Moses().pretrained_model_path()
    model = FlowModel.load(path)
    assert isinstance(model, DiscreteFlowModel) and model.domain_name == "moses-discrete"
    assert tuple(model.shape) == dom.shape == (26 + 26 * 25 // 2,)
    gen = torch.Generator().manual_seed(0)
    masks = dom.sample_masks(4, gen)
    x = model.sample(4, steps=5, generator=gen, mask=masks)
    assert torch.equal(x >= 0, masks > 0)  # every real token drawn, padding left as PAD
    assert ((x[:, :26] < 7) | (x[:, :26] == -1)).all() and ((x[:, 26:] >= 7) | (x[:, 26:] == -1)).all()
    designs = dom.decode(x)
    sizes = masks[:, :26].sum(1).long().tolist()
    Chem = pytest.importorskip("rdkit.Chem")
    for s, n in zip(designs, sizes, strict=True):  # the decoded graph has the drawn number of heavy atoms
        mol = Chem.MolFromSmiles(s, sanitize=False)
        assert mol is not None and mol.GetNumAtoms() == n
