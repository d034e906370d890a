"""Fault injection for crash-safety tests: kill this process at a named point of the work.

With ``FLOWDISCO_FAULT=<point>:<k>`` in the environment, the k-th time the process passes
``faults.point(<point>)`` it sends itself SIGKILL — no cleanup, no flushing, as a power cut or the
out-of-memory killer would. Unset (the normal case) every call is a dictionary lookup and nothing else.

With ``FLOWDISCO_FAULT_COUNTS=<file>`` the process writes how often it passed each point to that JSON
file at exit (to choose kill points that a run really reaches).

Points: ``sample`` (a chunk of designs drawn, not yet verified), ``verify`` (a chunk verified),
``fit`` (an optimizer step done), ``write`` (a file's bytes half written, not yet renamed into
place), ``commit`` (an expansion round's files in place, its LATEST.json not yet updated).
"""

from __future__ import annotations

import atexit
import json
import os
import signal

POINTS = ("sample", "verify", "fit", "write", "commit")
ENV = "FLOWDISCO_FAULT"
COUNTS_ENV = "FLOWDISCO_FAULT_COUNTS"

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
    counts = os.environ.get(COUNTS_ENV)
    target = _target()
    if counts is None and (target is None or target[0] != name):
        return
    if counts is not None and not _hits:
        atexit.register(_write_counts, counts)
    _hits[name] = _hits.get(name, 0) + 1
    if target is not None and target[0] == name and _hits[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_counts(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_hits, f)
