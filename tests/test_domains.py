import math

import numpy as np
import pytest
import torch

from flowdisco.domains import Domain, UnknownNameError, get_domain
from flowdisco.domains.toy2d import chamber_of, in_valid_set


def test_unknown_domain_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match=r"available: .*toy2d"):
        get_domain("qm10")


def test_toy_verifier_is_exact_on_known_points(toy):
    inside = [(0.9, 0.0), (-0.9, 0.0), (0.0, -0.75)]
    outside = [(0.0, 0.0), (1.2, 0.0), (0.9 * math.cos(math.pi / 3) * (1 + 0.15), 0.9 * math.sin(math.pi / 3) * 1.15)]
    assert list(toy.verify(inside)) == [True] * 3
    # the last point is 0.135 from the ring centre-line at the 60° corridor (half-width 0.08) → outside
    assert list(toy.verify(outside)) == [False] * 3


def test_corridors_are_narrow_and_chambers_cover_the_ring():
    a = math.pi / 3
    on_corridor = torch.tensor([[math.cos(a) * r, math.sin(a) * r] for r in (0.85, 0.95, 1.05)])
    assert in_valid_set(on_corridor).tolist() == [True, True, False]
    assert chamber_of(torch.tensor([[1.0, 0.0], [-1.0, 0.1], [0.0, -1.0]])).tolist() == [0, 1, 2]


def test_training_data_lie_in_one_chamber(toy):
    x = toy.training_data()
    assert x.shape == (512, 2)
    assert in_valid_set(x).all()
    assert (chamber_of(x) == 0).all()
    assert torch.equal(x, get_domain("toy2d").training_data())  # deterministic


class Flaky(Domain):
    name = "flaky"
    shape = (2,)

    def training_data(self):
        return torch.zeros(4, 2)

    def decode(self, x):
        return x.tolist()

    def verify(self, designs):
        out = []
        for d in designs:
            if d[0] < 0:
                raise RuntimeError("verifier crashed")
            out.append(d[0] > 0.5)
        return out


def test_a_verifier_that_raises_costs_the_design_not_the_call():
    dom = Flaky()
    flags = dom.check([[1.0, 0], [-1.0, 0], [0.0, 0], [2.0, 0], None])
    assert flags.tolist() == [True, False, False, True, False]
    assert dom.check([]).shape == (0,)


def test_domain_metric_hooks_on_hand_sets(toy):
    d = torch.tensor([[0.0, 0.0], [0.05, 0.0], [1.0, 0.0]])
    assert toy.coverage(d) == 2  # the first two are within 0.1
    assert np.isclose(toy.vendi(torch.tensor([[0.0, 0.0], [10.0, 0.0]])), 2.0)


class Hanging(Flaky):
    verify_timeout = 0.2

    def verify(self, designs):
        import time

        if any(d[0] < 0 for d in designs):
            time.sleep(30)  # a hung verifier
        return [d[0] > 0.5 for d in designs]


def test_a_hanging_verifier_costs_the_design_not_the_run(caplog):
    import time

    t0 = time.perf_counter()
    flags = Hanging().check([[1.0, 0], [-1.0, 0], [0.0, 0]])
    assert flags.tolist() == [True, False, False]
    assert time.perf_counter() - t0 < 5
    assert "took longer" in caplog.text
