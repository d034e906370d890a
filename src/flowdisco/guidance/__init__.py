"""Guidance: classifier-free guidance (and, with the AGD issue, adapter guidance distillation)."""

from flowdisco.guidance.cfg import cfg_velocity, cfg_velocity_fn

__all__ = ["cfg_velocity", "cfg_velocity_fn"]
