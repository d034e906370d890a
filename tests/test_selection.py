"""Uncertainty selection (ActFlow's sampling-time exploration without gradients): the Gumbel-top-k draw
against exact probabilities, and generate() verifying only the kept designs."""

import math

import pytest
import torch

from flowdisco.domains.toy2d import Toy2D
from flowdisco.expand.loop import ExpandConfig
from flowdisco.expand.representation import Representation
from flowdisco.expand.selection import UncertaintySelection, gumbel_top_k
from flowdisco.expand.surrogates import GPSurrogate
from flowdisco.flow import FlowModel
from flowdisco.generate import generate


def test_gumbel_top_one_draws_each_index_with_its_softmax_probability():
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    g = torch.Generator().manual_seed(0)
    picks = torch.cat([gumbel_top_k(logits, 1, g) for _ in range(20000)])
    freq = torch.bincount(picks, minlength=4).double() / picks.numel()
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.012)


def test_gumbel_top_two_is_drawing_without_replacement():
    # P(first two draws are {0, 1}) = p0·p1/(1 − p0) + p1·p0/(1 − p1) with p = (0.5, 0.3, 0.2)
    p = [0.5, 0.3, 0.2]
    expected = p[0] * p[1] / (1 - p[0]) + p[1] * p[0] / (1 - p[1])
    g = torch.Generator().manual_seed(1)
    logits = torch.log(torch.tensor(p))
    hits = sum(gumbel_top_k(logits, 2, g).tolist() == [0, 1] for _ in range(20000))
    assert hits / 20000 == pytest.approx(expected, abs=0.012)


def test_gumbel_top_k_keeps_all_or_the_best_at_the_extremes():
    g = torch.Generator().manual_seed(2)
    assert gumbel_top_k(torch.zeros(5), 5, g).tolist() == [0, 1, 2, 3, 4]
    logits = torch.tensor([0.0, 5.0, 1.0, 4.0]) / 1e-3  # α → 0: the k highest rewards, in index order
    assert gumbel_top_k(logits, 2, g).tolist() == [1, 3]


class CountingToy(Toy2D):
    checked = 0

    def check(self, designs):
        CountingToy.checked += len(designs)
        return super().check(designs)


def _toy_selection(factor: int, alpha: float = 0.05) -> tuple[FlowModel, CountingToy, UncertaintySelection]:
    torch.manual_seed(0)
    dom = CountingToy(n_train=64)
    model = FlowModel("mlp", {"shape": [2], "width": 16, "depth": 1}, (2,))
    gp = GPSurrogate(lengthscale=1.5).fit(torch.zeros(1, 2))  # σ: 0 at the origin, → 1 away from it
    return model, dom, UncertaintySelection(Representation(model, None), gp, alpha=alpha, factor=factor)


def test_selection_verifies_only_the_kept_designs_and_prefers_uncertain_ones():
    model, dom, sel = _toy_selection(factor=8)
    CountingToy.checked = 0
    g = generate(model, dom, 40, generator=torch.Generator().manual_seed(3), steps=4, chunk_size=16, selection=sel)
    assert len(g) == 40 and CountingToy.checked == 40  # 320 candidates drawn, 40 verified
    summary = sel.summary()
    assert summary["select_factor"] == 8
    assert summary["select_reward_kept"] > summary["select_reward_candidates"] + 0.05
    kept_sigma = sel.surrogate.uncertainty(g.x.double()).mean()
    assert kept_sigma == pytest.approx(summary["select_reward_kept"], rel=1e-6)


def test_selection_with_factor_one_keeps_the_plain_samples():
    model, dom, sel = _toy_selection(factor=1)
    kwargs = {"steps": 4, "chunk_size": 16}
    plain = generate(model, dom, 20, generator=torch.Generator().manual_seed(4), **kwargs)
    selected = generate(model, dom, 20, generator=torch.Generator().manual_seed(4), selection=sel, **kwargs)
    assert torch.equal(plain.x, selected.x)


def test_selection_settings_are_validated():
    ExpandConfig(select_factor=4, select_alpha=0.1).validate()
    for bad, match in (({"select_factor": 0}, "select_factor"), ({"select_alpha": 0.0}, "select_alpha"),
                       ({"select_alpha": math.nan}, "select_alpha"),
                       ({"select_factor": 2, "method": "rec-f"}, "actflow")):
        with pytest.raises(ValueError, match=match):
            ExpandConfig(**bad).validate()
    _, _, sel = _toy_selection(factor=2)
    with pytest.raises(ValueError, match="at least 4 candidates"):
        sel(torch.zeros(3, 2), None, 4, torch.Generator())
