"""The viewer application: one UI thread drawing at display rate, a render worker, an export worker.

Per frame the UI thread: polls worker events (``events``; new frames are uploaded to textures), advances animations,
draws the panel and the view (``layout``) with mouse orbit / pan / zoom and shortcuts (``inputs``), applies script steps
(``script``), turns the state into a scene and asks the scheduler whether to submit a preview or a full-quality request.
It never waits for the generator. What it reports (status lines, screenshots, timings) is in ``report``.
"""
from __future__ import annotations

import math
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgui_bundle import imgui

import eg3d_core
from eg3d_core.errors import EG3DError

from . import actions, events, inputs, keyframes, layout, report
from . import camera_controller as cc
from .directions import Directions
from .gl_texture import Texture
from .invert_worker import STEPS, InvertJob, InvertWorker, load_latent
from .model_info import ModelInfo
from .path_video import PathVideoWorker
from .renderer import RenderResult
from .requests import Scene, full_quality, preview_quality, scene_of
from .scheduler import RenderScheduler
from .script import ScriptRunner, Step
from .state import AppState
from .timing import RateCounter, RollingTimes
from .window import Window
from .worker import Event, ExportWorker, MeshJob, RenderWorker, SaveFrameJob, SaveLatentJob

IDLE_WAIT = 0.5  # longest sleep between frames when idle (s)
ACTIVE_FRAMES = 6  # frames drawn after the last input before idling


class WakingQueue(queue.Queue):
    """Worker -> UI event queue that wakes the UI thread from its idle wait."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


@dataclass
class AppOptions:
    model: str | None = None
    device: str = "cpu"
    cache_dir: str | None = None
    width: int = 1280
    height: int = 800
    vsync: bool = True
    fps_limit: int = 60
    script: list[Step] = field(default_factory=list)
    snapshot: str | None = None
    frames: int = 0
    timeout: float = 600.0


class ViewerApp:
    def __init__(self, options: AppOptions) -> None:
        self.options = options
        self.state = AppState()
        self.state.perf.fps_limit = options.fps_limit
        self.state.model.path = options.model or ""
        self.window = Window("EG3D viewer", options.width, options.height, options.vsync)
        self.panel_width = layout.PANEL_WIDTH * self.window.ui_scale
        self.events: queue.Queue[Event] = WakingQueue(self.window.wake)
        self.worker = RenderWorker(self.events, options.device, options.cache_dir)
        self.exporter = ExportWorker(self.events)
        self.inverter = InvertWorker(self.events)
        self.video = PathVideoWorker(self.events)  # the camera path's MP4
        self.file_dialog: list = []  # the open "Open image..." dialog, if any (see widgets.invert_widget)
        self.scheduler = RenderScheduler()
        self.script = ScriptRunner(options.script)
        self._view_released = False  # the mouse let go of the view this frame (see _view_input)
        self._keys_down: set[str] = set()  # keys a script holds down (see _press_keys)
        self.textures = {"image": Texture(), "raw": Texture(), "depth": Texture(), "target": Texture(),
                         "fit": Texture()}
        self.info: ModelInfo | None = None
        self.generator: eg3d_core.Generator | None = None  # only handed to export jobs; the UI thread never runs it
        self.directions: Directions | None = None
        self.limits: cc.CameraLimits | None = None
        self.shown: RenderResult | None = None
        self.render_error = ""
        self.preview_resolution = 64
        self.ui_times = RollingTimes()
        self.render_rate = RateCounter()
        self.log = report.SessionLog()
        self.frame = 0
        self.screenshot_path: str | None = None
        self.exit_code: int | None = None
        self.export_note_until = 0.0
        self._active_frames = 0
        self._wait_conditions = {
            "full": self.full_frame_shown,
            "model": lambda: self.info is not None and not self.state.model.loading,
            "export": lambda: not self.state.export.busy,
            "directions": lambda: bool(self.state.directions.amounts),
            "invert": lambda: not self.state.invert.busy and not self.state.invert.fit_requested,
            "video": lambda: not self.state.keyframes.busy and not self.state.keyframes.render_requested,
        }

    # ------------------------------------------------------------------------------------------------------------
    # main loop

    def run(self) -> int:
        self.worker.start()
        self.exporter.start()
        self.inverter.start()
        self.video.start()
        self.state.model.loading = True
        self.worker.load(self.options.model or "")
        started = last = time.perf_counter()
        waited = False
        try:
            while self.exit_code is None and not self.window.should_close:
                # Idle (nothing moving, rendering or pending): sleep until input or a worker event instead of
                # redrawing an unchanged window, which would take CPU from the renderer and the rest of the machine.
                wait = IDLE_WAIT if self._idle() else 0.0
                now = time.perf_counter()
                cpu0 = time.thread_time()
                dt = now - last
                self._frame(now, dt, wait)
                busy = self.worker.slot.busy
                # dt spans the previous frame, including its idle wait: such intervals are not frame times.
                if self.frame > 1 and not waited:
                    self.log.frames.append((dt * 1e3, busy))
                    self.ui_times.add(dt * 1e3)
                if self.frame > 1 and wait == 0.0:
                    self.log.cpu.append((time.thread_time() - cpu0) * 1e3)
                last, waited = now, wait > 0
                if now - started > self.options.timeout and self.options.snapshot is not None:
                    print(f"eg3d viewer: timed out after {self.options.timeout:.0f} s waiting for the frame", file=sys.stderr)
                    self.exit_code = 1
                # FPS limit: without vsync (e.g. Xvfb) the loop would otherwise spin and steal the worker's CPU.
                spare = 1.0 / max(self.state.perf.fps_limit, 1) - (time.perf_counter() - now)
                if spare > 0:
                    time.sleep(spare)
        finally:
            self.worker.close()
            self.exporter.close()
            self.inverter.close()
            self.video.close()
            for t in self.textures.values():
                t.delete()
            self.window.close()
        if (self.options.snapshot is not None or self.options.script) and self.log.results:
            self.print_report()
        return self.exit_code or 0

    def _idle(self) -> bool:
        s = self.state
        return (self._active_frames <= 0 and not s.model.loading and (self.scheduler.at_rest or self.info is None)
                and not self.worker.slot.busy and not s.latent.animate and not s.camera.orbit_animation
                and not s.export.busy and not s.invert.busy and not s.keyframes.busy and not s.keyframes.playing
                and not self.file_dialog and self.options.snapshot is None
                and self.script.finished)

    def _frame(self, now: float, dt: float, wait: float) -> None:
        woke = self.window.begin_frame(wait)
        had_events = events.poll_events(self, now)
        io = imgui.get_io()
        if woke or had_events or io.want_text_input or imgui.is_any_item_active() or io.mouse_wheel or any(
                imgui.is_mouse_down(b) for b in range(3)) or io.mouse_delta.x or io.mouse_delta.y:
            # Keep drawing a few frames after any activity so hover and release states settle on screen.
            self._active_frames = ACTIVE_FRAMES
        self._active_frames -= 1
        if self.limits is not None:
            actions.animate(self.state, min(dt, 0.1))
            keyframes.update(self.state, self.info, self.limits, min(dt, 0.1))
        layout.draw_panel(self.state, self.info, self.limits, self.panel_width, self._thumbnail, self.file_dialog)
        inv = self.state.invert
        # While a picture is being fitted, the view shows it next to the fit so far.
        view = "fitting" if inv.busy and inv.has_preview else self.state.render.view
        layout.draw_view(self.panel_width, view, self._texture_for, self._view_input,
                         self._status_lines)
        if self.limits is not None:
            inputs.shortcuts(self.state, self.limits, self.window.request_close)
            if inputs.key_motion(self.state, self.limits, min(dt, 0.1)):
                self._active_frames = ACTIVE_FRAMES  # keys held: keep drawing (no idle wait between key repeats)
        self._run_script(now)
        self._handle_requests()
        self._schedule(now)
        self.window.end_frame()
        if self.screenshot_path is not None:
            report.save_screenshot(self.window.screenshot(), self.screenshot_path, self.state.perf.quality)
            self.screenshot_path = None
        self.window.present()
        self.frame += 1
        p = self.state.perf
        p.ui_ms, p.ui_fps = self.ui_times.mean(), 1e3 / max(self.ui_times.mean(), 1e-3)
        p.render_fps = self.render_rate.rate(now)
        p.dropped = self.worker.slot.dropped

    # ------------------------------------------------------------------------------------------------------------
    # the view

    def _view_input(self, viewport_px: float) -> None:
        if self.limits is not None:
            # Letting go of the view ends a drag: the camera is at rest, so the full frame need not wait for rest_delay.
            self._view_released = inputs.view_input(self.state, self.limits, viewport_px) or self._view_released

    def _texture_for(self, name: str) -> Texture | None:
        if name in ("target", "fit"):
            return self.textures[name]
        if self.shown is None:
            return None
        if name == "image" and self.shown.image is None:
            return self.textures["raw"]  # a preview without super-resolution: show its raw render, upscaled
        return self.textures[name]

    def _thumbnail(self, name: str) -> object | None:
        tex = self.textures.get(name)
        return None if tex is None or tex.empty else tex.ref

    def _status_lines(self) -> list[str]:
        lines = report.status_lines(self.state, self.info is not None, self.shown, self.full_frame_shown(),
                                    self.render_error, time.perf_counter() < self.export_note_until)
        inv = self.state.invert
        if inv.busy:
            lines.append(f"fitting {Path(inv.image_path).name}: {inv.stage} {100 * inv.progress:.0f}% "
                         "(Your picture -> 3D: Cancel)")
        return lines

    # ------------------------------------------------------------------------------------------------------------
    # scheduling

    def _current_scene(self) -> Scene | None:
        return scene_of(self.state, self.info) if self.info is not None else None

    def _schedule(self, now: float) -> None:
        if self.info is None or self.state.model.loading:
            return
        r = self.state.render
        res = self.preview_resolution if r.preview_auto else r.preview_resolution
        request = self.scheduler.update(self._current_scene(), preview_quality(r, res), full_quality(r), now,
                                        r.rest_delay, r.progressive, released=self._view_released)
        self._view_released = False
        if request is not None:
            self.worker.submit(request)

    def full_frame_shown(self) -> bool:
        """The full-quality frame of the current view is on screen."""
        s = self.shown
        return (s is not None and self.info is not None and s.final and not s.request.quality.preview
                and s.request.scene == self._current_scene() and s.request.quality == full_quality(self.state.render))

    # ------------------------------------------------------------------------------------------------------------
    # requests from widgets (load, save, mesh)

    def _handle_requests(self) -> None:
        for path in self.window.take_dropped():
            actions.open_path(self.state, path)
        self._handle_invert()
        keyframes.handle_requests(self)
        m, e = self.state.model, self.state.export
        if m.load_requested is not None:
            m.loading, m.message, m.error = True, "", False
            self.worker.load(m.load_requested)
            m.load_requested = None
        if e.save_requested:
            e.save_requested = False
            if self.shown is None:
                e.message, e.error = "nothing rendered yet", True
            else:
                self.exporter.submit(SaveFrameJob(self.shown, e.directory, self._stem()))
                e.message, e.error = "saving ...", False
        if e.mesh_requested:
            e.mesh_requested = False
            if self.generator is not None and self.info is not None and not e.busy:
                path = str(Path(e.directory) / f"{self._stem()}_mesh{e.mesh_resolution}{e.mesh_format}")
                self.exporter.submit(MeshJob(self.generator, self.directions, scene_of(self.state, self.info).latent,
                                             e.mesh_resolution, path, e.mesh_colors))
                e.busy, e.progress, e.message, e.error = True, 0.0, f"extracting {e.mesh_resolution}^3 ...", False

    def _handle_invert(self) -> None:
        inv = self.state.invert
        if inv.cancel_requested:
            inv.cancel_requested = False
            self.inverter.cancel()
        if inv.fit_requested:
            inv.fit_requested = False
            if self.generator is None or self.state.model.loading:
                inv.message, inv.error = "no model loaded yet", True
            elif inv.busy:
                inv.message, inv.error = "a picture is being fitted already: cancel it first", True
            elif not inv.image_path:
                inv.message, inv.error = "no picture: type its path, open it or drop it on the window", True
            else:
                steps = min(max(int(inv.steps), STEPS[0]), STEPS[1])
                yaw, pitch = (None, None) if inv.estimate_camera else (float(inv.yaw), float(inv.pitch))
                self.inverter.submit(InvertJob(self.generator, inv.image_path, steps, yaw, pitch))
                inv.busy, inv.progress, inv.stage, inv.has_preview = True, 0.0, "starting", False
                inv.message, inv.error = f"fitting {Path(inv.image_path).name} ...", False
        if inv.save_requested:
            inv.save_requested = False
            if self.generator is None or self.info is None:
                inv.message, inv.error = "no model loaded yet", True
            else:
                self.exporter.submit(SaveLatentJob(self.generator, self.directions,
                                                   scene_of(self.state, self.info).latent, inv.latent_path))
                inv.message, inv.error = "saving the latent ...", False
        if inv.load_requested:
            inv.load_requested = False
            if self.generator is None:
                inv.message, inv.error = "no model loaded yet", True
                return
            try:
                self.state.latent.custom = load_latent(self.generator, inv.latent_path)
            except (EG3DError, OSError) as e:
                inv.message, inv.error = str(e).strip().splitlines()[0], True
            else:
                self.state.latent.mix, self.state.stylemix.enabled = 0.0, False
                inv.message, inv.error = f"loaded {inv.latent_path}", False

    def _stem(self) -> str:
        lat = self.state.latent
        stem = lat.custom.name if lat.custom is not None else f"seed{lat.seed:04d}"
        if lat.mix > 0:
            stem += f"-{lat.seed_b:04d}x{lat.mix:.2f}"
        c = self.state.camera
        return f"{stem}_yaw{math.degrees(c.yaw):+.0f}_pitch{math.degrees(c.pitch):+.0f}"

    # ------------------------------------------------------------------------------------------------------------
    # scripts and snapshots

    def _run_script(self, now: float) -> None:
        if not self.script.finished:
            path = self.script.advance(self.state, self.limits, self.frame, now, self._wait_conditions)
            self._press_keys(self.script.held_keys)
            if path is not None:
                self.screenshot_path = path
            return
        if (self.options.snapshot is not None and self.frame >= self.options.frames and self.exit_code is None
                and self.screenshot_path is None and self.full_frame_shown()):
            self.screenshot_path = self.options.snapshot
            self.exit_code = 0

    def _press_keys(self, names: tuple[str, ...]) -> None:
        """Synthetic key events for a script's "hold" step: down while held, up after. ImGui reads them at the next
        frame's start, like the window's own key events."""
        io = imgui.get_io()
        for key, name in inputs.HELD_KEYS.items():
            if (name in names) != (name in self._keys_down):
                io.add_key_event(key, name in names)
        self._keys_down = set(names)

    def print_report(self) -> None:
        for line in self.log.report(self.window.renderer_name, self.state.perf):
            print(f"eg3d viewer: {line}")
        sys.stdout.flush()
