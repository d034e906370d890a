import warnings

import numpy as np
import pytest
import torch

from flowdisco.metrics import (
    coverage,
    frechet_distance,
    frechet_from_stats,
    novel_fraction,
    novelty,
    sphere_exclusion,
    uniqueness,
    validity,
    vendi_score,
)


def test_sphere_exclusion_by_hand():
    pts = torch.tensor([[0.0], [0.3], [0.6], [1.0], [5.0]])
    d = torch.cdist(pts, pts)
    # 0 is a centre; 0.3 within 0.5 of it; 0.6 > 0.5 → centre; 1.0 within 0.5 of 0.6; 5 → centre
    assert sphere_exclusion(d, 0.5) == [0, 2, 4]
    assert coverage(d, 10.0) == 1
    assert coverage(d, 0.0) == 5


def test_vendi_extremes():
    assert vendi_score(torch.eye(7)) == pytest.approx(7.0)
    assert vendi_score(torch.ones(7, 7)) == pytest.approx(1.0)
    # two identical pairs → 2 effective designs
    k = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float64)
    assert vendi_score(k) == pytest.approx(2.0)


def test_validity_uniqueness_novelty():
    assert validity(np.array([True, False, True, True])) == 0.75
    assert uniqueness(["a", "b", "a", "c"]) == 0.75
    assert novel_fraction(["a", "b", "z"], {"a", "b"}) == pytest.approx(1 / 3)
    sim = torch.tensor([[1.0, 0.2], [0.5, 0.4]])
    assert novelty(sim) == pytest.approx(1 - (1.0 + 0.5) / 2)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 2))
    b = rng.normal(size=(20000, 2)) * 2 + 3
    # ‖μ‖² = 18; Tr(I + 4I − 2·2I) = 2
    assert frechet_distance(a, b) == pytest.approx(20.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_from_stats_on_singular_diagonal_covariances_matches_the_closed_form():
    # commuting covariances: Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) = Σ (√a − √b)²; zeros make both singular
    va, vb = np.array([4.0, 0.0, 1.0, 0.0]), np.array([1.0, 9.0, 0.0, 0.0])
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.0, 0.0, 2.0])
    expected = 5.0 + float(((np.sqrt(va) - np.sqrt(vb)) ** 2).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singular-matrix or complex-part warnings
        got = frechet_from_stats(mu1, np.diag(va), mu2, np.diag(vb))
    assert got == pytest.approx(expected, abs=1e-9)
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))[0]  # same in any basis
    assert frechet_from_stats(rot @ mu1, rot @ np.diag(va) @ rot.T, rot @ mu2, rot @ np.diag(vb) @ rot.T) == (
        pytest.approx(expected, abs=1e-12))  # round-off eigenvalues (1e-16) are zeroed, not rooted (1e-8)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_free_of_round_off_noise():
    # 30 samples in 64 dimensions: each covariance has 35 zero eigenvalues that come out as ±1e-16;
    # their square roots (1e-8 each) used to leave about 1e-6 of BLAS-dependent noise in the distance
    a = np.random.default_rng(2).normal(size=(30, 64))
    assert frechet_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-11)
