"""Atomic output files and folders with the user's normal permissions.

Every file the toolkit writes for a user appears whole or not at all: it is written under a temporary hidden name
in the target folder and renamed into place. ``tempfile`` creates such names private (0600 files, 0700 folders);
the finished output gets what ``open``/``mkdir`` would have given it under the process's umask (0644 / 0755 under
umask 022).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The permission bits a new file (or folder) gets from the umask: 0o666 (0o777) without its bits."""
    return (0o777 if folder else 0o666) & ~current_umask()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that pick a format from it work); when the
    block ends without an exception it gets the default permissions and is renamed to ``path``, else it is removed.

    Raises ``OutputError`` (one line) when the folder is missing or not writable.
    """
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=f".tmp{path.suffix}")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; when the block ends without an exception it gets the default
    permissions and is renamed to ``path`` (an existing ``path`` is removed first when ``replace``), else it is
    removed with everything in it."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=parent))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield tmp
        os.chmod(tmp, default_mode(folder=True))
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """``data`` to ``path``, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(data: Any, path: str | os.PathLike[str], indent: int | None = None) -> Path:
    """``data`` as JSON (no NaN or Infinity) to ``path``, atomically."""
    text = json.dumps(data, allow_nan=False, indent=indent)
    with atomic_file(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)
