"""Flow matching: paths, solvers, the FlowModel and the one training loop."""

from flowdisco.flow.discrete import MaskedPath, denoising_cross_entropy
from flowdisco.flow.fit import FitConfig, FitResult, fit
from flowdisco.flow.model import DiscreteFlowModel, FlowModel, model_class
from flowdisco.flow.path import LinearGaussianPath, PathSample, flow_matching_loss, masked_mse
from flowdisco.flow.solvers import (
    GuidanceState,
    NoiseSchedule,
    divergence,
    log_prob,
    solve_ode,
    solve_sde,
    time_grid,
)

__all__ = [
    "DiscreteFlowModel",
    "FitConfig",
    "FitResult",
    "FlowModel",
    "GuidanceState",
    "LinearGaussianPath",
    "MaskedPath",
    "NoiseSchedule",
    "PathSample",
    "denoising_cross_entropy",
    "divergence",
    "fit",
    "flow_matching_loss",
    "log_prob",
    "masked_mse",
    "model_class",
    "solve_ode",
    "solve_sde",
    "time_grid",
]
