import pytest
import torch

from flowdisco import FlowModel
from flowdisco.expand.representation import Representation, pool


def _model():
    torch.manual_seed(0)
    return FlowModel("mlp", {"shape": [2], "width": 24, "depth": 3}, (2,))


def test_hidden_layer_features_are_unit_vectors_of_the_layer_width():
    rep = Representation(_model(), layer="act.1", s=0.9)
    f = rep.features(torch.randn(10, 2), generator=torch.Generator().manual_seed(0))
    assert f.shape == (10, 24)
    assert torch.allclose(f.norm(dim=1), torch.ones(10), atol=1e-5)


def test_features_follow_the_current_network():
    m = _model()
    rep = Representation(m, layer="act.1", s=1.0)
    x = torch.randn(4, 2)
    a = rep.features(x)
    with torch.no_grad():
        m.net.hidden[0].weight.mul_(-1.0)
    assert not torch.allclose(a, rep.features(x))


def test_raw_representation_is_the_design_itself():
    x = torch.randn(5, 2)
    assert torch.equal(Representation(_model(), layer=None).features(x), x)


def test_features_are_differentiable_for_guidance():
    rep = Representation(_model(), layer="act.2", s=0.8)
    x = torch.randn(3, 2, requires_grad=True)
    rep(x, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_layer_lists_the_modules():
    with pytest.raises(ValueError, match=r"no module 'nope'.*act\.1.*'descriptors'"):
        Representation(_model(), layer="nope")


def test_masked_mean_pooling():
    h = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[[1.0], [1.0], [0.0]]])
    assert torch.equal(pool(h, mask), torch.tensor([[2.0, 2.0]]))
