"""Guidance: classifier-free guidance, and Adapter Guidance Distillation (AGD).

- :mod:`~flowdisco.guidance.cfg`: CFG velocity v_u + ω(v_c − v_u) as one doubled batch;
- :mod:`~flowdisco.guidance.adapters`: offset and cross-attention adapters on a frozen model;
- :mod:`~flowdisco.guidance.trajectories`: the CFG teacher's sampling states and guided targets;
- :mod:`~flowdisco.guidance.distill`: training the student (CFG trajectories, standard data, full FT).
"""

from flowdisco.guidance.adapters import CrossAttentionAdapter, GuidanceStudent, OffsetAdapter
from flowdisco.guidance.cfg import cfg_velocity, cfg_velocity_fn
from flowdisco.guidance.distill import DistillConfig, GuidanceDistillation, distill, full_finetune_student
from flowdisco.guidance.trajectories import TrajectoryStore, collect_trajectories

__all__ = ["CrossAttentionAdapter", "DistillConfig", "GuidanceDistillation", "GuidanceStudent", "OffsetAdapter",
           "TrajectoryStore", "cfg_velocity", "cfg_velocity_fn", "collect_trajectories", "distill",
           "full_finetune_student"]
