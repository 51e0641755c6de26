"""Frame timing: rolling UI frame times and event rates for the performance panel and the snapshot report."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameStats:
    count: int
    mean_ms: float
    p95_ms: float
    max_ms: float

    @property
    def fps(self) -> float:
        return 1e3 / self.mean_ms if self.mean_ms > 0 else 0.0

    def describe(self) -> str:
        return (f"{self.count} frames: mean {self.mean_ms:.1f} ms ({self.fps:.0f} FPS), p95 {self.p95_ms:.1f} ms, "
                f"max {self.max_ms:.1f} ms")


def frame_stats(times_ms: list[float] | np.ndarray) -> FrameStats:
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        return FrameStats(0, 0.0, 0.0, 0.0)
    return FrameStats(int(t.size), float(t.mean()), float(np.percentile(t, 95)), float(t.max()))


class RollingTimes:
    """The last ``n`` durations (ms), for a smooth readout that still follows changes within a second or two."""

    def __init__(self, n: int = 60) -> None:
        self._times: deque[float] = deque(maxlen=n)

    def add(self, ms: float) -> None:
        self._times.append(ms)

    def mean(self) -> float:
        return float(np.mean(self._times)) if self._times else 0.0


class RateCounter:
    """Events per second over a sliding window (e.g. frames delivered by the worker)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._stamps: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._stamps.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._stamps) < 2:
            return 0.0
        return (len(self._stamps) - 1) / max(self._stamps[-1] - self._stamps[0], 1e-6)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()
