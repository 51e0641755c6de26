"""Limits every checkpoint reader applies before it trusts what a file says.

A checkpoint may be crafted. Running no code from it is not enough: a few hundred bytes of shared references, a
tensor view that repeats one number a billion times or a config that asks for a huge network can still make loading
take forever or exhaust memory. These checks keep the work of loading proportional to what the file really holds.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from typing import Any

import torch

from ..errors import CheckpointError

# Config data in a checkpoint (constructor kwargs, an embedded config) is a few dozen values, a few levels deep.
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_NODES = 100_000
# Floating-point types a generator's weights may be stored in (float8 and other exotic types are refused).
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MIN_WEIGHT_BYTES = 2  # the smallest of WEIGHT_DTYPES: a file holds at least this many bytes per weight

_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


def regular_file_size(path: str | os.PathLike[str]) -> int:
    """Size in bytes of ``path``; ``CheckpointError`` unless it is a regular file.

    Checked before anything opens the path: opening a named pipe waits for a writer forever, and a device
    (``/dev/zero``) never ends."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise CheckpointError(f"cannot read {one_line(os.fspath(path))}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise CheckpointError(f"{one_line(os.fspath(path))} is {kind}, not a checkpoint file")
    return st.st_size


def plain_data(value: Any, what: str) -> Any:
    """A copy of config data made of dicts (subclasses become ``dict``), lists, tuples and scalars.

    The formats write config data as a tree. A crafted file can make it a graph (one list referenced twice at every
    level doubles the work per level), so a non-empty container met a second time, nesting deeper than
    ``MAX_CONFIG_DEPTH`` or more than ``MAX_CONFIG_NODES`` values are refused: the copy is linear in the file."""
    seen: set[int] = set()
    nodes = 0

    def copy(v: Any, depth: int) -> Any:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise CheckpointError(f"{what} holds more than {MAX_CONFIG_NODES} values")
        if v is None or isinstance(v, bool | int | float | str | bytes):
            return v
        if not isinstance(v, dict | list | tuple):
            raise CheckpointError(f"{what} holds a value of type {type(v).__name__}")
        if depth >= MAX_CONFIG_DEPTH:
            raise CheckpointError(f"{what} is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if v:  # empty containers cannot repeat work (and () is one shared object in Python)
            if id(v) in seen:
                raise CheckpointError(f"{what} references the same {type(v).__name__} twice "
                                      "(shared references are not config data)")
            seen.add(id(v))
        if isinstance(v, dict):
            return {copy(k, depth + 1): copy(item, depth + 1) for k, item in v.items()}
        items = [copy(item, depth + 1) for item in v]
        return items if isinstance(v, list) else tuple(items)

    return copy(value, 0)


def check_tensor_views(tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Refuse tensors that show more data than their storage holds, before anything copies them.

    A pickled tensor is a strided view of a storage: stride 0 repeats one element along a dimension, and
    overlapping views or several tensors over one storage show the same bytes again. Each tensor must be a
    weight dtype, lie inside its storage, repeat nothing along a dimension longer than one and hold no more
    elements than its storage from its offset; all of them together no more bytes than their distinct storages.
    Converting or copying them then costs at most what the file holds."""
    storages: dict[int, int] = {}
    total = 0
    for name, t in tensors:
        if t.dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"tensor {name!r} has dtype {t.dtype}, not a floating-point weight type")
        if t.numel() == 0:
            continue
        storage = t.untyped_storage()
        available = storage.nbytes() // t.element_size() - t.storage_offset()
        if any(s == 0 and n > 1 for n, s in zip(t.shape, t.stride(), strict=True)):
            raise CheckpointError(f"tensor {name!r} repeats its data (stride 0 over a dimension of "
                                  f"{max(n for n, s in zip(t.shape, t.stride(), strict=True) if s == 0)})")
        extent = 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride(), strict=True))
        if t.numel() > available or extent > available:
            raise CheckpointError(f"tensor {name!r} shows {max(t.numel(), extent)} elements of a storage that "
                                  f"holds {max(available, 0)} from its offset")
        storages[storage.data_ptr()] = storage.nbytes()
        total += t.numel() * t.element_size()
    held = sum(storages.values())
    if total > held:
        raise CheckpointError(f"tensors overlap: together they show {total} bytes of storages holding {held}")


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], source: str) -> None:
    """Refuse NaN or infinite weights (they render black images without any other sign), naming the first."""
    for name, t in tensors:
        if not bool(torch.isfinite(t).all()):
            kind = "NaN" if bool(torch.isnan(t).any()) else "infinite"
            raise CheckpointError(f"{source}: weight {name!r} holds {kind} values")


_FORBIDDEN_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*([^\n]*?)(?:\.\s|\n|$)")


def weights_only_failure(e: BaseException) -> str:
    """One line for a failed ``torch.load(weights_only=True)``.

    torch's refusal advises loading again with ``weights_only=False``, which would run whatever code the file
    names; that advice is never passed on. The refused global is named instead."""
    text = str(e)
    found = _FORBIDDEN_GLOBAL.search(text)
    if found:
        return f"it references the forbidden global {found.group(1)} (only tensors and plain containers are allowed)"
    found = _UNPICKLER_ERROR.search(text)
    if found:
        return f"it holds something other than tensors and plain containers ({one_line(found.group(1))})"
    if "weights_only" in text:
        return "it holds something other than tensors and plain containers"
    lines = text.strip().splitlines()
    return one_line(f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__)


_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int = 200) -> str:
    """``text`` with line breaks and other control characters escaped, cut to ``limit`` characters."""
    text = _LINE_BREAKING.sub(lambda m: ascii(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
