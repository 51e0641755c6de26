"""What the viewer tells the user: the status lines on the view, screenshots, and the timing report printed after a
scripted or snapshot run. Pure apart from writing files and printing; the drawing is in ``layout``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .renderer import RenderResult
from .state import AppState, PerfState
from .timing import frame_stats

ERROR_PREFIXES = ("render error", "export failed")  # status lines drawn in the error colour


def status_lines(state: AppState, loaded: bool, shown: RenderResult | None, full_shown: bool, render_error: str,
                 export_note: bool) -> list[str]:
    """The lines shown at the bottom of the view: model loading, the quality on screen and the frame rates, errors,
    the mesh export. ``export_note``: the last export's result is still recent enough to show."""
    lines = []
    if not loaded:
        lines.append(state.model.message if state.model.error else "loading model ...")
    elif shown is not None:
        status = ("" if full_shown else "  (super-resolution running ...)" if not shown.final else "  (refining ...)")
        lines.append(shown.request.quality.label + status)
        lines.append(rates_line(state.perf, shown))
    if render_error:
        lines.append(f"render error: {render_error}")
    ks = state.keyframes
    if ks.playing:
        lines.append(f"camera path {ks.time:.1f} s (L pauses)")
    if ks.busy:
        lines.append(f"rendering the camera path video ... {100 * ks.progress:.0f}%")
    e = state.export
    if e.busy:
        lines.append(f"exporting mesh ... {100 * e.progress:.0f}%")
    elif e.message and export_note:
        lines.append(("export failed: " if e.error else "") + e.message)
    return lines


def rates_line(perf: PerfState, shown: RenderResult) -> str:
    """The UI frame rate and the shown frame's render time; the render rate only while frames keep coming (idle, a
    rate over the last seconds would read 0)."""
    line = f"UI {perf.ui_fps:.0f} FPS | frame {shown.timings.get('total', 0.0):.0f} ms"
    if perf.render_fps > 0:
        line += f" | {perf.render_fps:.1f} frames/s"
    return line


def save_screenshot(pixels: np.ndarray, path: str, quality: str) -> None:
    """Write ``pixels`` (uint8 [H, W, 3]) to ``path`` and say so."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    print(f"eg3d viewer: saved screenshot {path} ({pixels.shape[1]}x{pixels.shape[0]}, {quality})", flush=True)


@dataclass
class SessionLog:
    """Per-frame measurements of one session, for the report."""

    frames: list[tuple[float, bool]] = field(default_factory=list)  # (frame interval ms, worker busy)
    cpu: list[float] = field(default_factory=list)  # UI thread CPU time per frame (ms): the UI's own cost, whatever the load
    results: list[tuple[str, float]] = field(default_factory=list)  # (quality label, worker ms) per final frame shown

    def report(self, renderer_name: str, perf: PerfState) -> list[str]:
        log = np.array([t for t, _ in self.frames])
        busy = np.array([t for t, b in self.frames if b])
        lines = [f"OpenGL renderer: {renderer_name}",
                 f"UI frame times, all: {frame_stats(log).describe()}",
                 f"UI frame times while the worker rendered: {frame_stats(busy).describe()}",
                 f"UI thread CPU time per frame: {frame_stats(self.cpu).describe()}"]
        for label in dict.fromkeys(q for q, _ in self.results):
            ms = [t for q, t in self.results if q == label]
            lines.append(f"rendered {label}: {frame_stats(ms).describe()}")
        lines.append(f"last frame {perf.quality}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in perf.stage_ms.items())
                     + f"; stale requests dropped {perf.dropped}, full frames cancelled {perf.cancelled}")
        return lines
