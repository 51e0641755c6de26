"""Atomic output files and folders with the user's normal permissions.

Every file the toolkit writes for a user appears whole or not at all: it is written under a temporary hidden name
in the target folder, flushed to disk, and renamed into place. ``tempfile`` creates such names private (0600 files,
0700 folders); the finished output gets what ``open``/``mkdir`` would have given it under the process's umask
(0644 / 0755 under umask 022). Any ``OSError`` on the way (a full disk, a read-only folder) becomes one
``OutputError`` line and leaves nothing behind.

A process killed before it can clean up (SIGKILL, power loss) leaves its temporary file. Their names carry the
writer's PID, ``.NAME.PID.XXXXXXXX.tmpSUFFIX``, and the writer holds an exclusive ``flock`` on it until the rename;
the next write of the same output removes such leftovers whose writer is gone (no process with that PID, no lock
held), so a file another live process is writing is never touched.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
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
    return f".{path.name}.{os.getpid()}."


def _cannot_write(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {e.strerror or e}")


def _lock(path: Path) -> int:
    """An open descriptor of ``path`` (a file or folder, not followed if a link) holding an exclusive lock, released
    when it is closed or the process dies; -1 when the lock is held elsewhere or cannot be had (no ``flock`` on
    this system or file system)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (ImportError, OSError):
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # EPERM: alive, another user's; overflow: not a PID, so not ours to judge
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike[str], suffix: str, folder: bool = False) -> list[Path]:
    """Remove the temporary files (or folders) that killed writers of ``path`` left beside it; returns them.

    Only names of this module's pattern for ``path`` and ``suffix`` count, and only when the PID in the name is no
    running process and nobody holds the entry's lock; anything unreadable or in doubt is kept.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"{re.escape('.' + path.name + '.')}(\d+)\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(f".{path.name}.") and n.endswith(suffix)]
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if not match or not _process_gone(int(match[1])):
            continue
        stale = parent / name
        try:
            kind_matches = (stat.S_ISDIR if folder else stat.S_ISREG)(os.lstat(stale).st_mode)
        except OSError:
            continue
        fd = _lock(stale) if kind_matches else -1
        if fd < 0:  # a live writer holds it, it is gone already, or it cannot be locked here
            continue
        try:
            if folder:
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed.append(stale)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _sync(path: Path) -> None:
    """Flush a written file's data to the disk, so that a full disk or an I/O error shows before the rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that pick a format from it work); when the
    block ends without an exception it is synced to disk, gets the default permissions and is renamed to ``path``,
    else it is removed. Stale temporaries of ``path`` from killed writers are removed first.

    Raises ``OutputError`` (one line) when the folder is missing or not writable, or when writing fails with an
    ``OSError`` (a full disk: ``ENOSPC``, a file-size limit: ``EFBIG``).
    """
    path = Path(path)
    suffix = f".tmp{path.suffix}"
    remove_stale_temporaries(path, suffix)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=suffix)
    except OSError as e:
        raise _cannot_write(path, e) from None
    os.close(fd)
    tmp = Path(name)

    def publish() -> None:
        _sync(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)

    with _publishing(path, tmp, publish, lambda: tmp.unlink(missing_ok=True)):
        yield tmp


@contextlib.contextmanager
def _publishing(path: Path, tmp: Path, publish: Callable[[], None], discard: Callable[[], None]) -> Iterator[None]:
    """Hold the lock on ``tmp`` while the block writes it; then ``publish()`` (sync, permissions, rename). Whatever
    happens, ``discard()`` removes what is left of ``tmp``; an ``OSError`` on the way is one ``OutputError`` line."""
    lock = _lock(tmp)  # -1 where locks are missing: the PID in the name still keeps cleaners away while it runs
    try:
        yield
        publish()
    except OutputError:
        raise
    except OSError as e:
        raise _cannot_write(path, e) from None
    finally:
        discard()
        if lock >= 0:
            os.close(lock)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; when the block ends without an exception its files are synced to
    disk, it gets the default permissions and is renamed to ``path`` (an existing ``path`` is removed first when
    ``replace``), else it is removed with everything in it. Stale temporaries of ``path`` are removed first; an
    ``OSError`` on the way is one ``OutputError`` line, as for :func:`atomic_file`."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path, ".tmp", folder=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=parent))
    except OSError as e:
        raise _cannot_write(path, e) from None

    def publish() -> None:
        for root, _, files in os.walk(tmp):
            for f in files:
                _sync(Path(root) / f)
        os.chmod(tmp, default_mode(folder=True))
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)

    def discard() -> None:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    with _publishing(path, tmp, publish, discard):
        yield tmp


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
