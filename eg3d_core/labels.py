"""Camera labels: the official ``dataset.json`` and MMagic's annotation JSON, parsed and validated.

* official (``dataset_tool.py`` / EG3D preprocessing): ``{"labels": [[name, [25 numbers]], ...]}``;
* MMagic (``BasicConditionalDataset`` ``ann_file``): ``{name: [25 numbers], ...}``.

Every entry is checked (string name, unique, exactly 25 finite numbers); the first bad entry is named in the
error (:class:`~eg3d_core.errors.InputError`, one line).
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from .errors import InputError

LABEL_SIZE = 25
# Largest label file read: a label is about 500 bytes of JSON, so this holds half a million (FFHQ with its mirrored
# copies has 140k); parsed, a file this size takes a few GB of Python objects.
MAX_LABEL_BYTES = 256 * 2**20

Labels = list[tuple[str, list[float]]]


def _entry_name(name: object) -> str:
    return repr(name) if isinstance(name, str) else "no valid name"


def _check_label(index: int, name: object, label: object) -> list[float]:
    where = f"entry {index} ({_entry_name(name)})"
    if not isinstance(name, str):
        raise InputError(f"{where}: the name must be a string, got {type(name).__name__}")
    if not isinstance(label, list):
        raise InputError(f"{where}: the label must be a list of {LABEL_SIZE} numbers, got {type(label).__name__}")
    if len(label) != LABEL_SIZE:
        raise InputError(f"{where}: the label has {len(label)} values, expected {LABEL_SIZE}")
    values = []
    for j, v in enumerate(label):
        # bool is an int subclass in Python but never a camera value.
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}: value {j} is not a finite number ({v!r})")
        values.append(float(v))
    return values


def _is_official(data: Any) -> bool:
    """``{"labels": null | [[...], ...]}``; an MMagic file could have an image called "labels", whose value
    would be a list of numbers, not of pairs."""
    if not (isinstance(data, dict) and set(data) == {"labels"}):
        return False
    raw = data["labels"]
    return raw is None or (isinstance(raw, list) and (not raw or isinstance(raw[0], list)))


def parse_labels(data: Any) -> tuple[str, Labels]:
    """Validate a parsed label document -> (layout, [(name, 25 floats)]) in file order.

    Raises InputError naming the first bad entry by index and name.
    """
    if _is_official(data):
        layout, raw = "official", data["labels"]
        if raw is None:
            raise InputError("the file has no labels (\"labels\": null: an unconditional dataset)")
        pairs = []
        for i, entry in enumerate(raw):
            if not (isinstance(entry, list) and len(entry) == 2):
                name = entry[0] if isinstance(entry, list) and entry else None
                raise InputError(f"entry {i} ({_entry_name(name)}): expected [name, [{LABEL_SIZE} numbers]]")
            pairs.append((entry[0], entry[1]))
    elif isinstance(data, dict):
        layout, pairs = "mmagic", list(data.items())
    else:
        raise InputError("expected a JSON object: {\"labels\": [[name, label], ...]} or {name: label, ...}")
    if not pairs:
        raise InputError("the file has no labels")
    seen: dict[str, int] = {}
    labels: Labels = []
    for i, (name, label) in enumerate(pairs):
        values = _check_label(i, name, label)
        if name in seen:
            raise InputError(f"entry {i} ({name!r}): duplicate name (first at entry {seen[name]})")
        seen[name] = i
        labels.append((name, values))
    return layout, labels


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_LABEL_BYTES``. Opened without blocking (a named pipe would wait
    for a writer) and checked after opening, so what is read is what was checked; at most one byte more than the
    limit is read (files in /proc report size 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file")
        data = f.read(MAX_LABEL_BYTES + 1)
    if len(data) > MAX_LABEL_BYTES:
        raise InputError(f"{path}: larger than {MAX_LABEL_BYTES // 2**20} MiB, the most a label file may hold")
    return data


def read_labels(path: str | os.PathLike[str]) -> tuple[str, Labels]:
    """Read and validate a label file of either layout; errors are one line and start with the file name.

    Only a regular file of at most ``MAX_LABEL_BYTES`` is read."""
    path = Path(path)
    try:
        text = _read_bounded(path).decode("utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    try:
        return parse_labels(data)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


__all__ = ["LABEL_SIZE", "MAX_LABEL_BYTES", "Labels", "parse_labels", "read_labels"]
