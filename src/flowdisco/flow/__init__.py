"""Flow matching: paths, solvers, the FlowModel and the one training loop."""

from flowdisco.flow.fit import FitConfig, FitResult, fit
from flowdisco.flow.model import FlowModel
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

__all__ = ["FitConfig", "FitResult", "FlowModel", "GuidanceState", "LinearGaussianPath", "NoiseSchedule",
           "PathSample", "divergence", "fit", "flow_matching_loss", "log_prob", "masked_mse", "solve_ode",
           "solve_sde", "time_grid"]
