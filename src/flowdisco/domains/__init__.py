"""Design domains: the protocol, the registry and the built-in domains."""

from __future__ import annotations

from collections.abc import Callable

from flowdisco.domains.base import Domain
from flowdisco.domains.toy2d import Toy2D


class UnknownNameError(ValueError):
    """An unknown domain (or other registry) name; the message lists the valid ones."""


def _digits(**kwargs: object) -> Domain:
    from flowdisco.domains.digits import Digits

    return Digits(**kwargs)


def _qm9(decoding: str = "argmax", discrete: bool = False, ring_systems: str = "any") -> Callable[..., Domain]:
    def make(**kwargs: object) -> Domain:
        from flowdisco.domains.qm9 import QM9

        return QM9(decoding=decoding, discrete=discrete, ring_systems=ring_systems, **kwargs)

    return make


def _qm9_ood(**kwargs: object) -> Domain:
    from flowdisco.domains.qm9 import QM9OutOfDistribution

    return QM9OutOfDistribution(**kwargs)


def _moses(decoding: str = "argmax", discrete: bool = False, ring_systems: str = "any") -> Callable[..., Domain]:
    def make(**kwargs: object) -> Domain:
        from flowdisco.domains.moses import Moses

        return Moses(decoding=decoding, discrete=discrete, ring_systems=ring_systems, **kwargs)

    return make


def _peptides(discrete: bool = False) -> Callable[..., Domain]:
    def make(**kwargs: object) -> Domain:
        from flowdisco.domains.sequences import Peptides

        return Peptides(discrete=discrete, **kwargs)

    return make


def _proteins(discrete: bool = False) -> Callable[..., Domain]:
    def make(**kwargs: object) -> Domain:
        from flowdisco.domains.sequences import Proteins

        return Proteins(discrete=discrete, **kwargs)

    return make


_DOMAINS: dict[str, Callable[..., Domain]] = {
    "toy2d": Toy2D, "digits": _digits, "qm9": _qm9(), "qm9-capped": _qm9("capped"),
    "qm9-connected": _qm9("connected"), "qm9-discrete": _qm9(discrete=True), "qm9-ood": _qm9_ood,
    "moses": _moses(), "moses-capped": _moses("capped"), "moses-connected": _moses("connected"),
    "moses-discrete": _moses(discrete=True),
    # the same with "every ring system occurs in a training molecule" added to the verifier
    "qm9-known-rings": _qm9(ring_systems="known"),
    "qm9-discrete-known-rings": _qm9(discrete=True, ring_systems="known"),
    "moses-known-rings": _moses(ring_systems="known"),
    "moses-discrete-known-rings": _moses(discrete=True, ring_systems="known"),
    "peptides": _peptides(), "peptides-discrete": _peptides(discrete=True),
    "proteins": _proteins(), "proteins-discrete": _proteins(discrete=True)}


def register_domain(name: str, factory: Callable[..., Domain]) -> None:
    """Make ``get_domain(name)`` build ``factory(**kwargs)`` (a Domain subclass or a function)."""
    _DOMAINS[name] = factory


def list_domains() -> list[str]:
    return sorted(_DOMAINS)


def get_domain(name: str | Domain, **kwargs: object) -> Domain:
    """A domain by name (or pass a Domain instance through)."""
    if isinstance(name, Domain):
        return name
    try:
        factory = _DOMAINS[name]
    except KeyError:
        raise UnknownNameError(f"unknown domain {name!r}; available: {', '.join(list_domains())}") from None
    try:
        return factory(**kwargs)
    except TypeError as e:
        if kwargs and "unexpected keyword" in str(e):
            raise UnknownNameError(f"domain {name!r} does not take option(s) {', '.join(sorted(kwargs))} "
                                   "(a data file works with the molecule and sequence domains)") from None
        raise


__all__ = ["Domain", "Toy2D", "UnknownNameError", "get_domain", "list_domains", "register_domain"]
