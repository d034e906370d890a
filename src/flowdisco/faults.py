"""Fault injection for crash-safety tests: kill this process at a named point of the work.

With ``FLOWDISCO_FAULT=<point>:<k>`` in the environment, the k-th time the process passes
``faults.point(<point>)`` it sends itself SIGKILL — no cleanup, no flushing, as a power cut or the
out-of-memory killer would. Unset (the normal case) every call is a dictionary lookup and nothing else.

Points: ``sample`` (a chunk of designs drawn, not yet verified), ``verify`` (a chunk verified),
``fit`` (an optimizer step done), ``write`` (a file's bytes half written, not yet renamed into
place), ``commit`` (an expansion round's files in place, its LATEST.json not yet updated).
"""

from __future__ import annotations

import os
import signal

POINTS = ("sample", "verify", "fit", "write", "commit")
ENV = "FLOWDISCO_FAULT"

_hits: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, _, k = spec.partition(":")
    if name not in POINTS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected <point>:<k> with point one of {', '.join(POINTS)} and k ≥ 1")
    return name, int(k)


def point(name: str) -> None:
    """Count a pass through ``name``; kill the process if this is the pass ``FLOWDISCO_FAULT`` names."""
    target = _target()
    if target is None or target[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
