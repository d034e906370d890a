"""Metrics: validity, uniqueness, novelty, sphere-exclusion coverage, Vendi, Fréchet distance."""

from flowdisco.metrics.basic import (
    chunked_max_similarity,
    novel_fraction,
    novelty,
    uniqueness,
    validity,
)
from flowdisco.metrics.coverage import coverage, sphere_exclusion
from flowdisco.metrics.frechet import frechet_distance, frechet_from_stats
from flowdisco.metrics.vendi import vendi_score

__all__ = ["chunked_max_similarity", "coverage", "frechet_distance", "frechet_from_stats", "novel_fraction",
           "novelty", "sphere_exclusion", "uniqueness", "validity", "vendi_score"]
