"""Process-level tuning for CPU inference.

A full-size frame allocates well over a gigabyte of short-lived activations (a 128-channel 512x512 float32 map alone
is 134 MB). glibc's malloc serves blocks that large with fresh ``mmap`` pages and unmaps them when they are freed, so
every frame pays a page fault per 4 KiB page the first time it writes them, several times the cost of writing memory
the process already owns. Keeping freed memory in the heap instead avoids that; how much a frame gains depends on the
state glibc's own adaptive threshold has reached (benchmarks/RESULTS.md). This is a decision for the whole process,
so the library never makes it on import: the front ends (viewer, web demo, CLIs, benchmarks) call
``reuse_freed_memory()`` at start-up, and so can scripts.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

# Threads that may spread their rendering over helper threads (see ``spread_work``).
_SPREADING = threading.local()

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Freed memory at the top of the heap beyond this much is still returned to the system.
KEEP_BYTES = 2**31 - 1


def reuse_freed_memory(max_arenas: int | None = None) -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of returning it to the system.

    Large blocks then come from the heap (no per-block ``mmap``), and up to ``KEEP_BYTES`` of freed memory stays
    mapped, so the resident size of a rendering process stays near its peak. Each thread that allocates may get its
    own malloc arena holding its own freed memory: a server whose requests render on many pool threads should
    bound them with ``max_arenas``. Returns whether the settings took (False on other C libraries and systems,
    where nothing changes). Safe to call more than once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: different allocator, no such knobs
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    if max_arenas is not None:
        ok = mallopt(_M_ARENA_MAX, max_arenas) == 1 and ok
    return ok


def cache_dir() -> Path:
    """Where the toolkit caches what it derives (latent directions, compiled kernels): ``$EG3D_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/eg3d_toolkit``, else ``~/.cache/eg3d_toolkit``."""
    if os.environ.get("EG3D_CACHE_DIR"):
        return Path(os.environ["EG3D_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eg3d_toolkit"


def may_spread_work() -> bool:
    """Whether rendering called from this thread may split its work over helper threads (one per intra-op thread):
    on the main thread, and on a thread inside ``spread_work()``. Elsewhere, e.g. on a server's request threads, the
    callers themselves keep the cores busy and helpers would only add threads and malloc arenas."""
    return threading.current_thread() is threading.main_thread() or getattr(_SPREADING, "on", False)


@contextlib.contextmanager
def spread_work() -> Iterator[None]:
    """Let this (non-main) thread's rendering use helper threads, as the main thread's does: for the one render
    thread of an interactive program (the desktop viewer's worker)."""
    before = getattr(_SPREADING, "on", False)
    _SPREADING.on = True
    try:
        yield
    finally:
        _SPREADING.on = before
