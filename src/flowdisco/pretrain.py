"""pretrain(): fit a fresh flow model to a domain's training data with the shared loop."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import torch

from flowdisco import dist
from flowdisco.domains import Domain, get_domain
from flowdisco.flow.fit import FitConfig, fit
from flowdisco.flow.model import FlowModel, load_weights_strict, model_class
from flowdisco.runs import open_run
from flowdisco.seeding import seeded

DEFAULT_CHECKPOINT_EVERY = 500


def data_file_record(dom: Domain) -> dict:
    """{"data_file": {path, sha256}} for a domain trained on a user's file (stored in run configs), else {}."""
    path = getattr(dom, "data_file", None)
    if not path:
        return {}
    from flowdisco.io import sha256_file

    return {"data_file": {"path": str(path), "sha256": sha256_file(path)}}


def build_model(domain: Domain, seed: int = 0, network: str | None = None,
                network_kwargs: dict | None = None) -> FlowModel:
    """A freshly initialised FlowModel for ``domain`` (deterministic under ``seed``)."""
    name, kwargs = domain.default_network()
    if network is not None:
        name, kwargs = network, {}
    kwargs = {**kwargs, **(network_kwargs or {})}
    extra = {"num_classes": domain.num_classes, "label_dropout": domain.label_dropout} if domain.num_classes else {}
    extra.update(domain.model_extra())
    with seeded(seed):
        return model_class(domain.flow_path)(name, kwargs, domain.shape, path=domain.flow_path, domain=domain.name,
                                             extra=extra)


def init_model(domain: Domain, init: str | os.PathLike, network_kwargs: dict | None = None) -> FlowModel:
    """A model for ``domain`` that starts from the weights of the saved model ``init``: its network, with
    ``network_kwargs`` overrides that keep every weight's shape (a training setting such as
    ``endpoint_loss``); anything else is a clear error. Its ``loaded_sha256`` is ``init``'s."""
    from flowdisco.io import CheckpointError

    src = FlowModel.load(init)
    if src.domain_name not in (None, domain.name):
        raise CheckpointError(f"--init model {init} was trained on domain {src.domain_name!r}, not {domain.name!r}")
    if tuple(src.shape) != tuple(domain.shape):
        raise CheckpointError(f"--init model {init} has design shape {list(src.shape)}; domain {domain.name!r} "
                              f"needs {list(domain.shape)}")
    kwargs = {**src.network_kwargs, **(network_kwargs or {})}
    model = model_class(domain.flow_path)(src.network_name, kwargs, domain.shape, path=domain.flow_path,
                                          domain=domain.name, extra=src.extra)
    load_weights_strict(model.net, src.net.state_dict(), init)
    model.loaded_sha256 = src.loaded_sha256
    return model


def pretrain(domain: str | Domain, *, steps: int | None = None, seed: int = 0,
             run_dir: str | os.PathLike | None = None, resume: bool = False,
             network: str | None = None, network_kwargs: dict | None = None, init: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", progress: bool = True,
             on_log: Callable[[dict, FlowModel], None] | None = None, **fit_kwargs: Any) -> FlowModel:
    """Pre-train a flow model on ``domain``'s data.

    Defaults come from ``domain.default_pretrain()``; ``steps`` and any FitConfig field override
    them. With ``run_dir`` the run writes config.json, metrics.jsonl, resumable checkpoints and the
    final model (``run_dir/model``), with a resumable checkpoint every 500 steps unless
    ``checkpoint_every`` says otherwise; ``resume=True`` continues a killed run. ``on_log(record, model)``
    is called at every log step (record: step, loss, lr) and may add fields (logged with it).
    """
    dom = get_domain(domain)
    allowed = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(fit_kwargs) - allowed)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; available: {', '.join(sorted(allowed))}")
    settings = {**dom.default_pretrain(), **fit_kwargs, "seed": seed, "progress": progress and dist.is_main(),
                "desc": f"pretrain {dom.name}"}
    if steps is not None:
        settings["steps"] = steps
    if run_dir is not None and "checkpoint_every" not in fit_kwargs:
        settings["checkpoint_every"] = DEFAULT_CHECKPOINT_EVERY  # a killed run loses at most this many steps
    cfg = FitConfig(**settings)
    cfg.validate()
    if init is not None:
        if network is not None:
            raise ValueError("init continues a saved model's network: leave network unset")
        model = init_model(dom, init, network_kwargs).to(device)
    else:
        model = build_model(dom, seed=seed, network=network, network_kwargs=network_kwargs).to(device)
    data = dom.training_set()
    run = None
    if run_dir is not None:  # under torchrun rank 0 writes, the other ranks read
        init_record = {"init": {"path": str(init), "sha256": model.loaded_sha256}} if init is not None else {}
        run = open_run(run_dir, {"kind": "pretrain", "domain": dom.name, "seed": seed, **data_file_record(dom),
                                 **init_record,
                                 "network": model.network_name, "network_kwargs": model.network_kwargs,
                                 "fit": {k: v for k, v in asdict(cfg).items() if k != "progress"}},
                       resume=resume, device=device)
    # a resumed run replays the steps after its last checkpoint bit-exactly: their lines are already logged
    logged = max((r.get("step", 0) for r in run.records() if r.get("phase") == "pretrain"), default=0) \
        if run is not None and resume else 0

    def log_step(rec: dict) -> None:
        if on_log is not None:
            on_log(rec, model)
        if run is not None and rec["step"] > logged:
            run.log({"phase": "pretrain", **rec})

    result = fit(model, data, cfg, state_dir=run.checkpoints if run else None, resume=resume, on_log=log_step)
    if result.steps < cfg.steps:  # time_limit reached: say how far it got (rerun with --steps N to reproduce)
        if run is not None:
            run.log({"phase": "pretrain", "stopped_by_time_limit": True, "steps_done": result.steps,
                     "seconds": result.seconds})
        if dist.is_main():
            print(f"time limit of {cfg.time_limit:g} s reached: stopped after {result.steps} of {cfg.steps} steps")
    if result.ema is not None:  # the model to sample from is the EMA of the weights
        model.net.load_state_dict(result.ema.net.state_dict())
    if run is not None and run.writable:
        model.save(run.model_dir)
    dist.barrier()
    return model
