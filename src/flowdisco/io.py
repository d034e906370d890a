"""Files on disk: atomic writes, checksums, and pickle-free storage of nested training state.

Every file flowdisco writes goes through :func:`atomic_write_bytes` (temp file in the same directory,
fsync, rename), so a run killed at any moment leaves either the old file or the new one, never half of
one. Nested state (optimizer state, RNG state, buffers) is split into tensors, stored with
safetensors, and a JSON skeleton: loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from flowdisco import faults


class CheckpointError(RuntimeError):
    """A checkpoint or state file is missing, corrupt, or does not fit the model it is loaded into."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's own files are private (0600)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            faults.point("write")  # tests: a kill with half the bytes in the temporary file
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file, turning a missing or corrupt file into a :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} is corrupt (not valid JSON): {path}: {e}") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors encoding of ``tensors`` (detached, contiguous, on CPU)."""
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically write a safetensors file; returns its sha256."""
    data = tensor_bytes(tensors)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def load_tensors(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file with a clear error naming the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    data = path.read_bytes()
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise CheckpointError(
            f"weights file is corrupt or was changed after saving (checksum mismatch): {path}"
        )
    try:
        return st_load(data)
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"weights file is corrupt (not a readable safetensors file): {path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Nested state (dicts / lists / scalars / tensors) <-> (tensors, JSON skeleton)
# ---------------------------------------------------------------------------------------------
_TENSOR_TAG = "__tensor__"


def split_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in a nested structure by a reference; returns (skeleton, tensors).

    The skeleton contains only JSON types. Dict keys are stored as strings with their type kept,
    since optimizer state uses integer keys.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = obj
            return {_TENSOR_TAG: key}
        if isinstance(obj, dict):
            return {"__dict__": [[_key(k), walk(v)] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return {"__list__": [walk(v) for v in obj], "tuple": isinstance(obj, tuple)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if hasattr(obj, "item"):
            return obj.item()
        raise TypeError(f"cannot store {type(obj).__name__} in training state")

    return walk(state), tensors


def _key(k: Any) -> list:
    if isinstance(k, bool) or not isinstance(k, (int, str)):
        raise TypeError(f"unsupported state key type {type(k).__name__}")
    return ["i", k] if isinstance(k, int) else ["s", k]


def join_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""

    def walk(obj: Any) -> Any:
        if isinstance(obj, dict):
            if _TENSOR_TAG in obj:
                return tensors[obj[_TENSOR_TAG]]
            if "__dict__" in obj:
                return {(int(k[1]) if k[0] == "i" else k[1]): walk(v) for k, v in obj["__dict__"]}
            if "__list__" in obj:
                items = [walk(v) for v in obj["__list__"]]
                return tuple(items) if obj.get("tuple") else items
        return obj

    return walk(skeleton)


def save_state(directory: str | os.PathLike, name: str, state: Any) -> None:
    """Store nested ``state`` as ``name-<sha256 prefix>.safetensors`` + ``name.json`` (the JSON last,
    naming the tensors file and its checksum). A new state never overwrites the tensors the current
    JSON names, so a kill between the two writes leaves the previous state whole; older tensor files
    are removed once the JSON names the new one."""
    directory = Path(directory)
    skeleton, tensors = split_state(state)
    data = tensor_bytes(tensors)
    digest = sha256_bytes(data)
    file = f"{name}-{digest[:16]}.safetensors"
    atomic_write_bytes(directory / file, data)
    atomic_write_json(directory / f"{name}.json", {"skeleton": skeleton, "sha256": digest, "tensors": file})
    for old in directory.glob(f"{name}*.safetensors"):
        if old.name != file and (old.name == f"{name}.safetensors" or old.name[len(name) + 1:-12].isalnum()):
            old.unlink(missing_ok=True)


def load_state(directory: str | os.PathLike, name: str) -> Any:
    directory = Path(directory)
    meta = read_json(directory / f"{name}.json", what="state file")
    if not isinstance(meta, dict) or "skeleton" not in meta:
        raise CheckpointError(f"state file is corrupt (missing fields): {directory / f'{name}.json'}")
    file = meta.get("tensors", f"{name}.safetensors")  # states written before 0.1.1 used a fixed name
    if not isinstance(file, str) or "/" in file or "\\" in file:
        raise CheckpointError(f"state file is corrupt (bad tensors file name): {directory / f'{name}.json'}")
    tensors = load_tensors(directory / file, expected_sha256=meta.get("sha256"))
    try:
        return join_state(meta["skeleton"], tensors)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"state file is corrupt: {directory / f'{name}.json'}: {e}") from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (metrics logs). A crash can at worst leave a truncated last line,
    which :func:`read_jsonl` skips."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=_json_default) + "\n"
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a line cut by a crash: end it, so this record stays readable
                line = "\n" + line
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out
