"""Parallel verification: a pool of worker processes, one design per task, each under a time limit.

Slow verifiers (docking, folding, an external program) dominate an expansion round; this pool runs
``verify([design])`` in ``workers`` processes. The workers are forked from the running process, so
they inherit the domain object as it is — a user's verifier needs no pickling or import path. A design
whose verification raises, runs past ``timeout`` seconds, or kills its worker (a crash in native code,
``os._exit``) counts invalid; a hung or dead worker is killed and replaced, and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

log = logging.getLogger("flowdisco")

Verify = Callable[[Sequence[Any]], Sequence[bool]]


def _serve(verify: Verify, conn: Connection) -> None:
    """Worker loop: receive (index, design), send (index, verdict, error message or None)."""
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        i, design = task
        try:
            out = list(verify([design]))
            conn.send((i, bool(out[0]) if len(out) == 1 else False,
                       None if len(out) == 1 else f"returned {len(out)} results for 1 design"))
        except Exception as e:  # reported to the parent, which counts the design invalid
            conn.send((i, False, f"{type(e).__name__}: {e}"))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: int | None = None
    started: float = 0.0


@dataclass
class PoolReport:
    """What went wrong in one :meth:`VerifierPool.map` call (counts of designs)."""

    errors: int = 0
    timeouts: int = 0
    crashes: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.errors + self.timeouts + self.crashes


class VerifierPool:
    """``workers`` forked processes running ``verify`` on one design at a time.

    timeout: seconds per design (None: no limit). Use as a context manager or call :meth:`close`;
    workers are also stopped when the pool is garbage-collected."""

    def __init__(self, verify: Verify, workers: int = 2, timeout: float | None = None, name: str = "verifier") -> None:
        if workers < 1:
            raise ValueError(f"verifier workers must be ≥ 1, got {workers}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"verifier timeout must be > 0 seconds or None, got {timeout}")
        if "fork" not in mp.get_all_start_methods():
            raise RuntimeError("parallel verification needs the 'fork' start method (Linux/macOS)")
        self.verify, self.n_workers, self.timeout, self.name = verify, workers, timeout, name
        self._ctx = mp.get_context("fork")
        self._workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(self.verify, child), daemon=True,
                                 name=f"{self.name}-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _replace(self, w: _Worker) -> _Worker:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()
        new = self._spawn()
        self._workers[self._workers.index(w)] = new
        return new

    def map(self, designs: Sequence[Any]) -> tuple[np.ndarray, PoolReport]:
        """Verdicts [len(designs)] bool in input order, and a report of the failures."""
        designs = list(designs)
        flags = np.zeros(len(designs), dtype=bool)
        report = PoolReport()
        while len(self._workers) < min(self.n_workers, max(len(designs), 1)):
            self._workers.append(self._spawn())
        todo = list(range(len(designs)))[::-1]
        pending = len(designs)
        while pending:
            for w in list(self._workers):
                if w.task is None and todo:
                    if not w.process.is_alive():  # died while idle (e.g. killed from outside)
                        w = self._replace(w)
                    i = todo.pop()
                    try:
                        w.conn.send((i, designs[i]))
                    except (BrokenPipeError, OSError):  # died while idle: replace it and retry the design
                        todo.append(i)
                        self._replace(w)
                        continue
                    w.task, w.started = i, time.monotonic()
            busy = [w for w in self._workers if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=self._poll(busy))
            for w in busy:
                if w.conn in ready:
                    try:
                        i, ok, err = w.conn.recv()
                    except (EOFError, OSError):
                        self._fail(w, report, "crashes", "the verifier process died")
                        pending -= 1
                        continue
                    flags[i] = ok
                    if err is not None:
                        report.errors += 1
                        report.messages.append(f"design {i}: {err}")
                    w.task = None
                    pending -= 1
                elif w.process.sentinel in ready or not w.process.is_alive():
                    self._fail(w, report, "crashes", f"the verifier process died (exit code {w.process.exitcode})")
                    pending -= 1
                elif self.timeout is not None and time.monotonic() - w.started > self.timeout:
                    self._fail(w, report, "timeouts", f"took longer than {self.timeout:g} s")
                    pending -= 1
        if report.failures:
            log.warning("%s: %d of %d designs counted invalid (%d raised, %d timed out, %d crashed the verifier)%s",
                        self.name, report.failures, len(designs), report.errors, report.timeouts, report.crashes,
                        f"; first: {report.messages[0]}" if report.messages else "")
        return flags, report

    def _poll(self, busy: list[_Worker]) -> float | None:
        if self.timeout is None or not busy:
            return None
        first_deadline = min(w.started for w in busy) + self.timeout
        return max(0.0, first_deadline - time.monotonic()) + 1e-3

    def _fail(self, w: _Worker, report: PoolReport, kind: str, why: str) -> None:
        setattr(report, kind, getattr(report, kind) + 1)
        report.messages.append(f"design {w.task}: {why}")
        self._replace(w)

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=2)
            w.conn.close()
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
