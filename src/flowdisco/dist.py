"""torch.distributed in one place: launched by ``torchrun`` or not, the rest of flowdisco asks here.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process and every
helper is a no-op. Under ``torchrun`` the process group is initialised on first use: gloo on CPU,
NCCL when the model lives on a GPU (``FLOWDISCO_DIST_BACKEND=gloo`` forces gloo, e.g. for several
ranks sharing one GPU, which NCCL refuses).
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as tdist


def launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_gpu_count(n_gpus: int) -> None:
    """Refuse, with the fix, a torchrun job whose NCCL ranks on this node outnumber its GPUs: NCCL
    cannot put two ranks on one GPU and otherwise fails at the first collective with its own error."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    backend = os.environ.get("FLOWDISCO_DIST_BACKEND") or "nccl"
    if n_gpus == 0:
        raise ValueError("--device cuda, but no CUDA GPU is visible to this process")
    if backend == "nccl" and local_ranks > n_gpus:
        raise ValueError(f"{local_ranks} torchrun processes on this node but {n_gpus} GPU(s): NCCL needs one GPU "
                         f"per process. Use --nproc_per_node {n_gpus}, or set FLOWDISCO_DIST_BACKEND=gloo to "
                         "let processes share GPUs")


def init(device: torch.device | str = "cpu") -> None:
    """Initialise the default process group if launched by torchrun and not done yet."""
    if not launched_distributed() or tdist.is_initialized():
        return
    on_gpu = torch.device(device).type == "cuda"
    backend = os.environ.get("FLOWDISCO_DIST_BACKEND") or ("nccl" if on_gpu else "gloo")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"FLOWDISCO_DIST_BACKEND must be 'nccl' or 'gloo', got {backend!r}")
    if on_gpu:  # before the group exists: NCCL binds each rank to its current GPU
        index = torch.device(device).index
        if index is None:  # "cuda": this rank's GPU; ranks beyond the GPU count share (gloo only)
            index = int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(index)
    tdist.init_process_group(backend=backend)
    atexit.register(shutdown)  # a group left alive at exit can abort the interpreter ("terminate called")


def shutdown() -> None:
    """Destroy the process group (idempotent); registered to run at exit by :func:`init`."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def is_active() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if is_active() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_active():
        tdist.barrier()


def _comm_device(x: torch.Tensor) -> torch.device:
    """Where a collective must see its tensor: NCCL works only on the current GPU, gloo anywhere."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return x.device


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks, on ``x``'s own device."""
    if not is_active():
        return x
    y = x.detach().clone().to(_comm_device(x))
    tdist.all_reduce(y, op=tdist.ReduceOp.SUM)
    return (y / world_size()).to(x.device)


def broadcast_object(obj: object, src: int = 0) -> object:
    if not is_active():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_dict(part: dict) -> dict:
    """Merge every rank's ``part`` (disjoint keys) into one dict, the same on every rank.

    Objects travel pickled between the ranks of this one job (never from files)."""
    if not is_active():
        return dict(part)
    parts: list[dict | None] = [None] * world_size()
    tdist.all_gather_object(parts, part)
    merged: dict = {}
    for p in parts:
        merged.update(p or {})
    return merged


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` [k, ...] (the same shape on all ranks) in rank order: [W·k, ...]."""
    if not is_active():
        return x
    y = x.contiguous().to(_comm_device(x))
    parts = [torch.empty_like(y) for _ in range(world_size())]
    tdist.all_gather(parts, y)
    return torch.cat(parts).to(x.device)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank."""
    if not is_active():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            tdist.broadcast(t.data, src=src)
