"""ActFlow: active flow expansion with verifier feedback, and its baselines Rec-F / Rec-NF."""

from flowdisco.expand.buffer import DesignBuffer
from flowdisco.expand.exploration import UncertaintyGuidance
from flowdisco.expand.loop import METHODS, ExpandConfig, ExpandRun, expand, make_config
from flowdisco.expand.representation import Representation
from flowdisco.expand.surrogates import EnsembleSurrogate, GPSurrogate, make_surrogate

__all__ = ["METHODS", "DesignBuffer", "EnsembleSurrogate", "ExpandConfig", "ExpandRun", "GPSurrogate",
           "Representation", "UncertaintyGuidance", "expand", "make_config", "make_surrogate"]
