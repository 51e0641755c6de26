"""Background job threads: a queue of jobs run one at a time at a lower CPU priority than the UI thread, with a
cancel flag the running job polls. The export, camera-path video and picture -> 3D threads are such threads."""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def one_line(e: BaseException) -> str:
    """An unexpected exception as one line for the UI: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def throttled(report: Callable[[int, int], None], interval: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that passes on at most one call per ``interval`` seconds, and the last
    one: a few updates per second are enough for a progress bar, and each is an event for the UI thread."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > interval or done >= total:
            last[0] = now
            report(done, total)

    return progress


def lower_thread_priority(increment: int = 5) -> None:
    """Make the calling thread (and the OpenMP threads torch starts from it later) yield the CPU to the UI thread:
    raise its nice value on Linux, where a thread id can be given to setpriority. Elsewhere this does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError):
        pass


class JobThread(threading.Thread):
    """Runs ``handle(job)`` for each submitted job in turn. ``cancel()`` sets the flag the running job reads through
    ``cancelled()`` (a new submission clears it); ``close()`` cancels and ends the thread. ``grad``: whether jobs
    need autograd (an inversion does; renders and exports do not)."""

    grad = False

    def __init__(self, name: str, events: queue.Queue) -> None:
        super().__init__(name=name, daemon=True)
        self.events = events
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._cancel = threading.Event()

    def submit(self, job: Any) -> None:
        self._cancel.clear()
        self._jobs.put(job)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def close(self, timeout: float = 5.0) -> None:
        self._cancel.set()
        self._jobs.put(None)
        self.join(timeout)

    def run(self) -> None:
        # Before any torch work here, so that this thread's OpenMP team inherits the lower priority.
        lower_thread_priority()
        torch.set_grad_enabled(self.grad)
        while (job := self._jobs.get()) is not None:
            self.handle(job)

    def handle(self, job: Any) -> None:
        raise NotImplementedError
