"""flowdisco: flow-matching generative discovery.

    import flowdisco as fd
    dom = fd.domains.get_domain("toy2d")
    model = fd.pretrain(dom, steps=2000, seed=0)
    stats = fd.evaluate(model, dom, n_valid=500, seed=0)
"""

__version__ = "0.1.0"

from flowdisco import domains, guidance, metrics
from flowdisco.evaluate import evaluate, format_table
from flowdisco.expand import expand
from flowdisco.flow import FitConfig, FlowModel, NoiseSchedule, fit
from flowdisco.io import CheckpointError
from flowdisco.pretrain import pretrain

__all__ = ["CheckpointError", "FitConfig", "FlowModel", "NoiseSchedule", "__version__", "domains", "evaluate",
           "expand", "fit", "format_table", "guidance", "metrics", "pretrain"]
