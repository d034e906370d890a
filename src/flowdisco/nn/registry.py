"""Velocity networks by name, so a checkpoint can name its architecture in JSON (no pickle).

Every registered network is built as ``cls(**kwargs)`` from JSON-serialisable keyword arguments
and is called as ``net(x, t, mask=None, cond=None)`` with x [B, *shape], t [B] → v [B, *shape].
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_NETWORKS: dict[str, type[nn.Module]] = {}


def register_network(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _NETWORKS and _NETWORKS[name] is not cls:
            raise ValueError(f"network name {name!r} is already registered")
        _NETWORKS[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def build_network(name: str, kwargs: dict) -> nn.Module:
    try:
        cls = _NETWORKS[name]
    except KeyError:
        raise ValueError(
            f"unknown network {name!r}; available: {', '.join(sorted(_NETWORKS))}"
        ) from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for network {name!r}: {e}") from None


def list_networks() -> list[str]:
    return sorted(_NETWORKS)
