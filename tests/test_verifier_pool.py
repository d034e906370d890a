import os
import time

import numpy as np
import pytest

from flowdisco.domains.toy2d import Toy2D
from flowdisco.verifier_pool import VerifierPool


def moody_verify(designs):
    """Valid iff even; 3 hangs, 5 kills its process, 7 raises."""
    out = []
    for d in designs:
        if d == 3:
            time.sleep(60)
        if d == 5:
            os._exit(13)
        if d == 7:
            raise ValueError("seven is not a design")
        out.append(d % 2 == 0)
    return out


def test_pool_costs_only_the_designs_that_hang_crash_or_raise():
    designs = list(range(10))
    t0 = time.monotonic()
    with VerifierPool(moody_verify, workers=3, timeout=1.0) as pool:
        flags, report = pool.map(designs)
        assert time.monotonic() - t0 < 20  # the hanging design did not hold the run for its 60 s
        assert flags.tolist() == [d % 2 == 0 for d in designs]  # 3, 5, 7 invalid, the others verified
        assert (report.timeouts, report.crashes, report.errors) == (1, 1, 1)
        again, report2 = pool.map([0, 2, 5, 4])  # replaced workers serve the next call
        assert again.tolist() == [True, True, False, True] and report2.crashes == 1


def test_pool_keeps_input_order_with_uneven_durations():
    def slow_odd(designs):
        time.sleep(0.05 if designs[0] % 2 else 0.0)
        return [designs[0] > 10]

    with VerifierPool(slow_odd, workers=4) as pool:
        flags, report = pool.map(list(range(20)))
    assert flags.tolist() == [d > 10 for d in range(20)] and report.failures == 0


def test_domain_check_uses_the_pool_and_matches_in_process_verification(caplog):
    dom = Toy2D()
    rng = np.random.default_rng(0)
    designs = [rng.normal(size=2).astype(np.float32) for _ in range(40)]
    expected = dom.check(designs)
    dom.verify_workers, dom.verify_timeout = 2, 5.0
    assert dom.check(designs).tolist() == expected.tolist()
    assert dom.check([None, designs[0]]).tolist() == [False, bool(expected[0])]
    dom.verifier_pool().close()


def test_bad_pool_settings_are_refused():
    with pytest.raises(ValueError, match="workers"):
        VerifierPool(moody_verify, workers=0)
    with pytest.raises(ValueError, match="timeout"):
        VerifierPool(moody_verify, timeout=0)
