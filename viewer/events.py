"""Worker -> UI events: one handler per event type, chosen from a table by the event's type.

Handlers run on the UI thread and update the app: new frames go to the textures, model and direction results to the
state, export progress and results to the Export panel and the view's status lines.
"""
from __future__ import annotations

import math
import queue
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import actions
from .invert_worker import InvertDone, InvertFailed, InvertProgress, InvertTarget
from .renderer import RenderResult
from .requests import adapt_resolution
from .worker import (
    DirectionsReady,
    Event,
    ExportDone,
    ExportFailed,
    ExportProgress,
    FrameCancelled,
    FrameReady,
    LatentSaved,
    ModelFailed,
    ModelLoaded,
    RenderFailed,
    VideoFinished,
    VideoProgress,
)

if TYPE_CHECKING:
    from .app import ViewerApp

EXPORT_NOTE_SECONDS = 10.0  # how long an export result stays on the view (it is also in the Export panel)


def poll_events(app: ViewerApp, now: float) -> bool:
    """Handle all pending worker events; True if there were any."""
    any_event = False
    while True:
        try:
            ev = app.events.get_nowait()
        except queue.Empty:
            return any_event
        any_event = True
        HANDLERS[type(ev)](app, ev, now)


def show(app: ViewerApp, result: RenderResult, now: float) -> None:
    """Put a rendered frame on screen and record its timings; a preview also adapts the preview resolution."""
    # Results come back in request order from one worker, but never let an older one replace a newer frame.
    if app.shown is not None and result.request.serial < app.shown.request.serial:
        return
    app.shown = result
    app.render_error = ""
    if result.image is not None:
        app.textures["image"].upload(result.image)
    app.textures["raw"].upload(result.raw)
    app.textures["depth"].upload(result.depth)
    if result.final:
        app.render_rate.tick(now)
        app.log.results.append((result.request.quality.label, result.timings["total"]))
    q, p, r = result.request.quality, app.state.perf, app.state.render
    p.quality, p.stage_ms, p.planes_cached = q.label, dict(result.timings), result.planes_cached
    if q.preview and r.preview_auto:
        cost = result.timings["total"] - result.timings["mapping"] - result.timings["backbone"]
        top = r.full_resolution
        app.preview_resolution = adapt_resolution(app.preview_resolution, cost, 1e3 / r.preview_target_fps,
                                                  lo=min(32, top), hi=top)


def _frame_ready(app: ViewerApp, ev: FrameReady, now: float) -> None:
    show(app, ev.result, now)


def _frame_cancelled(app: ViewerApp, ev: FrameCancelled, now: float) -> None:
    app.scheduler.full_cancelled(ev.request)
    app.state.perf.cancelled += 1


def _render_failed(app: ViewerApp, ev: RenderFailed, now: float) -> None:
    app.render_error = ev.message


def _model_loaded(app: ViewerApp, ev: ModelLoaded, now: float) -> None:
    app.generator, app.info, app.directions = ev.generator, ev.info, None
    custom = app.state.latent.custom
    if custom is not None and tuple(custom.ws.shape[1:]) != (ev.info.num_ws, ev.info.w_dim):
        app.state.latent.custom = None  # another model's latent (a tuned copy of the same model keeps it)
    app.limits = actions.apply_model(app.state, ev.info)
    app.preview_resolution = app.state.render.preview_resolution
    app.render_error = ""


def _model_failed(app: ViewerApp, ev: ModelFailed, now: float) -> None:
    m = app.state.model
    m.loading, m.error, m.message = False, True, ev.message
    if app.info is None and app.options.snapshot is not None:
        # A snapshot run without a model has nothing to wait for.
        print(f"eg3d viewer: {ev.message}", file=sys.stderr)
        app.exit_code = 1


def _directions_ready(app: ViewerApp, ev: DirectionsReady, now: float) -> None:
    app.directions = ev.directions
    d = app.state.directions
    d.amounts = [0.0] * len(ev.directions)
    d.status = (f"{len(ev.directions)} principal directions of W, PCA of {ev.samples} samples "
                f"({'from the cache' if ev.from_cache else 'computed and cached'})")


def _export_progress(app: ViewerApp, ev: ExportProgress, now: float) -> None:
    app.state.export.progress = ev.fraction


def _export_done(app: ViewerApp, ev: ExportDone, now: float) -> None:
    _export_finished(app, ev.message, False, now)


def _export_failed(app: ViewerApp, ev: ExportFailed, now: float) -> None:
    _export_finished(app, ev.message, True, now)


def _export_finished(app: ViewerApp, message: str, error: bool, now: float) -> None:
    e = app.state.export
    e.busy, e.message, e.error = False, message, error
    app.export_note_until = now + EXPORT_NOTE_SECONDS


def _invert_target(app: ViewerApp, ev: InvertTarget, now: float) -> None:
    app.textures["target"].upload(ev.image)
    app.textures["fit"].upload(np.full_like(ev.image, 255))  # blank until the first preview
    app.state.invert.has_preview = True


def _invert_progress(app: ViewerApp, ev: InvertProgress, now: float) -> None:
    inv = app.state.invert
    inv.stage, inv.progress = ev.stage, ev.fraction
    if ev.preview is not None:
        app.textures["fit"].upload(ev.preview)


def _invert_done(app: ViewerApp, ev: InvertDone, now: float) -> None:
    """The fitted latent becomes the current one, seen from the camera estimated for the picture."""
    s = app.state
    inv = s.invert
    inv.busy, inv.progress, inv.stage = False, 1.0, "done"
    app.textures["fit"].upload(ev.fit)
    s.latent.custom, s.latent.mix, s.latent.animate, s.stylemix.enabled = ev.latent, 0.0, False, False
    s.directions.amounts = [0.0] * len(s.directions.amounts)
    if app.info is not None:
        d = app.info.camera
        s.camera.yaw, s.camera.pitch = math.radians(ev.yaw), math.radians(ev.pitch)
        s.camera.radius, s.camera.fov, s.camera.pivot = d.radius, d.fov, tuple(d.pivot)
        s.camera.orbit_animation = False
    inv.message, inv.error = (f"fitted {ev.latent.name} in {ev.seconds:.0f} s: camera yaw {ev.yaw:+.0f} pitch "
                              f"{ev.pitch:+.0f} deg, PSNR {ev.psnr:.1f} dB. Orbit it, export a mesh or save it."), False


def _invert_failed(app: ViewerApp, ev: InvertFailed, now: float) -> None:
    inv = app.state.invert
    inv.busy, inv.stage = False, ""
    inv.message, inv.error = ev.message, not ev.cancelled


def _latent_saved(app: ViewerApp, ev: LatentSaved, now: float) -> None:
    app.state.invert.message, app.state.invert.error = ev.message, ev.error


def _video_progress(app: ViewerApp, ev: VideoProgress, now: float) -> None:
    ks = app.state.keyframes
    ks.progress = ev.done / max(ev.total, 1)
    ks.message = f"rendering frame {ev.done} of {ev.total} ..."


def _video_finished(app: ViewerApp, ev: VideoFinished, now: float) -> None:
    ks = app.state.keyframes
    ks.busy, ks.message, ks.error = False, ev.message, ev.error


HANDLERS: dict[type[Event], Callable[[ViewerApp, Any, float], None]] = {
    FrameReady: _frame_ready,
    FrameCancelled: _frame_cancelled,
    RenderFailed: _render_failed,
    ModelLoaded: _model_loaded,
    ModelFailed: _model_failed,
    DirectionsReady: _directions_ready,
    ExportProgress: _export_progress,
    ExportDone: _export_done,
    ExportFailed: _export_failed,
    VideoProgress: _video_progress,
    VideoFinished: _video_finished,
    LatentSaved: _latent_saved,
    InvertTarget: _invert_target,
    InvertProgress: _invert_progress,
    InvertDone: _invert_done,
    InvertFailed: _invert_failed,
}
