"""Neural network building blocks and velocity networks."""

from flowdisco.nn.dit import SIZES, DiT
from flowdisco.nn.ema import PowerEMA, sigma_rel_to_gamma
from flowdisco.nn.graph import GraphTransformer
from flowdisco.nn.mlp import MLPVelocity
from flowdisco.nn.registry import build_network, list_networks, register_network
from flowdisco.nn.sequence import SequenceTransformer

__all__ = ["SIZES", "DiT", "GraphTransformer", "MLPVelocity", "PowerEMA", "SequenceTransformer", "build_network",
           "list_networks", "register_network", "sigma_rel_to_gamma"]
