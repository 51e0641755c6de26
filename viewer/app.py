"""The viewer application: one UI thread drawing at display rate, a render worker, an export worker.

Per frame the UI thread: polls worker events (new frames are uploaded to textures), advances animations, draws the
widgets and the view (mouse orbit / pan / zoom), applies shortcuts and script steps, turns the state into a scene
and asks the scheduler whether to submit a preview or a full-quality request. It never waits for the generator.
"""
from __future__ import annotations

import math
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eg3d_viewer.widgets.conditioning_widget import draw_conditioning
from eg3d_viewer.widgets.directions_widget import draw_directions
from eg3d_viewer.widgets.export_widget import draw_export
from eg3d_viewer.widgets.latent_widget import draw_latent
from eg3d_viewer.widgets.model_widget import draw_model
from eg3d_viewer.widgets.performance_widget import draw_performance
from eg3d_viewer.widgets.pose_widget import draw_pose
from eg3d_viewer.widgets.render_widget import draw_render
from eg3d_viewer.widgets.stylemix_widget import draw_stylemix
from eg3d_viewer.widgets.truncation_widget import draw_truncation
from imgui_bundle import imgui
from PIL import Image

import eg3d_core

from . import actions
from . import camera_controller as cc
from .directions import Directions
from .gl_texture import Texture
from .model_info import ModelInfo
from .renderer import RenderResult
from .requests import Scene, adapt_resolution, full_quality, preview_quality, scene_of
from .scheduler import RenderScheduler
from .script import ScriptError, Step, set_field
from .state import VIEW_LABELS, AppState
from .timing import RateCounter, RollingTimes, frame_stats
from .window import Window
from .worker import (
    DirectionsReady,
    Event,
    ExportDone,
    ExportFailed,
    ExportProgress,
    ExportWorker,
    FrameCancelled,
    FrameReady,
    MeshJob,
    ModelFailed,
    ModelLoaded,
    RenderFailed,
    RenderWorker,
    SaveFrameJob,
)

PANEL_WIDTH = 400  # control panel width at UI scale 1
IDLE_WAIT = 0.5  # longest sleep between frames when idle (s)
ACTIVE_FRAMES = 6  # frames drawn after the last input before idling
EXPORT_NOTE_SECONDS = 10.0  # how long an export result stays on the view (it is also in the Export panel)
SHORTCUTS: tuple[tuple[imgui.Key, str, str], ...] = (
    (imgui.Key.r, "reset_view", "R"), (imgui.Key.left_arrow, "yaw_left", "Left"),
    (imgui.Key.right_arrow, "yaw_right", "Right"), (imgui.Key.up_arrow, "pitch_up", "Up"),
    (imgui.Key.down_arrow, "pitch_down", "Down"), (imgui.Key.equal, "zoom_in", "+"),
    (imgui.Key.keypad_add, "zoom_in", "+"), (imgui.Key.minus, "zoom_out", "-"),
    (imgui.Key.keypad_subtract, "zoom_out", "-"), (imgui.Key.right_bracket, "next_seed", "]"),
    (imgui.Key.left_bracket, "prev_seed", "["), (imgui.Key.v, "cycle_view", "V"),
    (imgui.Key.space, "toggle_animation", "Space"), (imgui.Key.o, "toggle_orbit", "O"),
    (imgui.Key.p, "toggle_precision", "P"), (imgui.Key.s, "save", "S"), (imgui.Key.m, "export_mesh", "M"),
)


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
        self.panel_width = PANEL_WIDTH * self.window.ui_scale
        self.events: queue.Queue[Event] = WakingQueue(self.window.wake)
        self.worker = RenderWorker(self.events, options.device, options.cache_dir)
        self.exporter = ExportWorker(self.events)
        self.scheduler = RenderScheduler()
        self._view_released = False  # the mouse let go of the view this frame (see _view_input)
        self.textures = {"image": Texture(), "raw": Texture(), "depth": Texture()}
        self.info: ModelInfo | None = None
        self.generator: eg3d_core.Generator | None = None  # only handed to export jobs; the UI thread never runs it
        self.directions: Directions | None = None
        self.limits: cc.CameraLimits | None = None
        self.shown: RenderResult | None = None
        self.render_error = ""
        self.preview_resolution = 64
        self.ui_times = RollingTimes()
        self.render_rate = RateCounter()
        self.frame_log: list[tuple[float, bool]] = []  # (frame interval ms, worker busy) for the report
        self.cpu_log: list[float] = []  # UI thread CPU time per frame (ms): the UI's own cost, whatever the load
        self.result_log: list[tuple[str, float]] = []  # (quality label, worker ms) per final frame shown
        self.frame = 0
        self._script_index = 0
        self._wait_started: float | None = None
        self._screenshot_path: str | None = None
        self._exit_code: int | None = None
        self._active_frames = 0
        self._export_note_until = 0.0

    # ------------------------------------------------------------------------------------------------------------
    # main loop

    def run(self) -> int:
        self.worker.start()
        self.exporter.start()
        self.state.model.loading = True
        self.worker.load(self.options.model or "")
        started = last = time.perf_counter()
        waited = False
        try:
            while self._exit_code is None and not self.window.should_close:
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
                    self.frame_log.append((dt * 1e3, busy))
                    self.ui_times.add(dt * 1e3)
                if self.frame > 1 and wait == 0.0:
                    self.cpu_log.append((time.thread_time() - cpu0) * 1e3)
                last, waited = now, wait > 0
                if now - started > self.options.timeout and self.options.snapshot is not None:
                    print(f"eg3d viewer: timed out after {self.options.timeout:.0f} s waiting for the frame", file=sys.stderr)
                    self._exit_code = 1
                # FPS limit: without vsync (e.g. Xvfb) the loop would otherwise spin and steal the worker's CPU.
                spare = 1.0 / max(self.state.perf.fps_limit, 1) - (time.perf_counter() - now)
                if spare > 0:
                    time.sleep(spare)
        finally:
            self.worker.close()
            self.exporter.close()
            for t in self.textures.values():
                t.delete()
            self.window.close()
        if (self.options.snapshot is not None or self.options.script) and self.result_log:
            self.print_report()
        return self._exit_code or 0

    def _idle(self) -> bool:
        s = self.state
        return (self._active_frames <= 0 and not s.model.loading and (self.scheduler.at_rest or self.info is None)
                and not self.worker.slot.busy and not s.latent.animate and not s.camera.orbit_animation
                and not s.export.busy and self.options.snapshot is None
                and self._script_index >= len(self.options.script))

    def _frame(self, now: float, dt: float, wait: float) -> None:
        woke = self.window.begin_frame(wait)
        had_events = self._poll_events(now)
        io = imgui.get_io()
        if woke or had_events or io.want_text_input or imgui.is_any_item_active() or io.mouse_wheel or any(
                imgui.is_mouse_down(b) for b in range(3)) or io.mouse_delta.x or io.mouse_delta.y:
            # Keep drawing a few frames after any activity so hover and release states settle on screen.
            self._active_frames = ACTIVE_FRAMES
        self._active_frames -= 1
        if self.limits is not None:
            actions.animate(self.state, min(dt, 0.1))
        self._draw_panel()
        self._draw_view()
        self._shortcuts()
        self._run_script(now)
        self._handle_requests()
        self._schedule(now)
        self.window.end_frame()
        if self._screenshot_path is not None:
            self._save_screenshot(self._screenshot_path)
            self._screenshot_path = None
        self.window.present()
        self.frame += 1
        p = self.state.perf
        p.ui_ms, p.ui_fps = self.ui_times.mean(), 1e3 / max(self.ui_times.mean(), 1e-3)
        p.render_fps = self.render_rate.rate(now)
        p.dropped = self.worker.slot.dropped

    # ------------------------------------------------------------------------------------------------------------
    # worker events

    def _poll_events(self, now: float) -> bool:
        """Handle all pending worker events; True if there were any."""
        any_event = False
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return any_event
            any_event = True
            if isinstance(ev, FrameReady):
                self._show(ev.result, now)
            elif isinstance(ev, FrameCancelled):
                self.scheduler.full_cancelled(ev.request)
                self.state.perf.cancelled += 1
            elif isinstance(ev, RenderFailed):
                self.render_error = ev.message
            elif isinstance(ev, ModelLoaded):
                self.generator, self.info, self.directions = ev.generator, ev.info, None
                self.limits = actions.apply_model(self.state, ev.info)
                self.preview_resolution = self.state.render.preview_resolution
                self.render_error = ""
            elif isinstance(ev, ModelFailed):
                m = self.state.model
                m.loading, m.error, m.message = False, True, ev.message
                if self.info is None and self.options.snapshot is not None:
                    print(f"eg3d viewer: {ev.message}", file=sys.stderr)
                    self._exit_code = 1
            elif isinstance(ev, DirectionsReady):
                self.directions = ev.directions
                d = self.state.directions
                d.amounts = [0.0] * len(ev.directions)
                d.status = (f"{len(ev.directions)} principal directions of W, PCA of {ev.samples} samples "
                            f"({'from the cache' if ev.from_cache else 'computed and cached'})")
            elif isinstance(ev, ExportProgress):
                self.state.export.progress = ev.fraction
            elif isinstance(ev, (ExportDone, ExportFailed)):
                e = self.state.export
                e.busy, e.message, e.error = False, ev.message, isinstance(ev, ExportFailed)
                self._export_note_until = now + EXPORT_NOTE_SECONDS

    def _show(self, result: RenderResult, now: float) -> None:
        # Results come back in request order from one worker, but never let an older one replace a newer frame.
        if self.shown is not None and result.request.serial < self.shown.request.serial:
            return
        self.shown = result
        self.render_error = ""
        if result.image is not None:
            self.textures["image"].upload(result.image)
        self.textures["raw"].upload(result.raw)
        self.textures["depth"].upload(result.depth)
        if result.final:
            self.render_rate.tick(now)
            self.result_log.append((result.request.quality.label, result.timings["total"]))
        q, p = result.request.quality, self.state.perf
        p.quality, p.stage_ms, p.planes_cached = q.label, dict(result.timings), result.planes_cached
        if q.preview and self.state.render.preview_auto:
            cost = result.timings["total"] - result.timings["mapping"] - result.timings["backbone"]
            top = self.state.render.full_resolution
            self.preview_resolution = adapt_resolution(self.preview_resolution, cost,
                                                       1e3 / self.state.render.preview_target_fps,
                                                       lo=min(32, top), hi=top)

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
    # UI

    def _draw_panel(self) -> None:
        vp = imgui.get_main_viewport()
        imgui.set_next_window_pos(vp.pos)
        imgui.set_next_window_size(imgui.ImVec2(self.panel_width, vp.size.y))
        flags = imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_resize | imgui.WindowFlags_.no_collapse
        imgui.begin("EG3D viewer", None, flags)
        imgui.push_item_width(-110)
        s, info = self.state, self.info
        if self._section("model", "Model"):
            draw_model(s.model)
        if info is not None and self.limits is not None:
            num_ws = info.num_ws
            if self._section("camera", "Camera"):
                draw_pose(s.camera, self.limits)
            if self._section("latent", "Latent"):
                draw_latent(s.latent)
                draw_truncation(s.truncation, num_ws)
            if self._section("stylemix", "Style mixing"):
                draw_stylemix(s.stylemix, num_ws)
            if self._section("conditioning", "Conditioning pose"):
                draw_conditioning(s.conditioning, info.pose_conditioned)
            if self._section("directions", "Latent directions"):
                draw_directions(s.directions, num_ws)
            if self._section("performance", "Performance"):
                draw_performance(s.perf)
            if self._section("render", "Render"):
                draw_render(s.render, 2 * info.neural_rendering_resolution)
            if self._section("export", "Export"):
                draw_export(s.export)
        if self._section("shortcuts", "Shortcuts"):
            imgui.text_wrapped("Drag: orbit | right/middle drag or Shift+drag: pan | wheel: zoom | double-click: reset")
            for key, name in dict.fromkeys((key, name) for _, name, key in SHORTCUTS):
                imgui.text(f"{key:>6}  {name.replace('_', ' ')}")
            imgui.text(f"{'Ctrl+Q':>6}  quit")
        imgui.pop_item_width()
        imgui.end()

    def _section(self, name: str, label: str) -> bool:
        """A collapsing header whose open state lives in ``state.panel`` (a click toggles it as usual)."""
        imgui.set_next_item_open(getattr(self.state.panel, name))
        opened = imgui.collapsing_header(label)
        setattr(self.state.panel, name, opened)
        return opened

    def _draw_view(self) -> None:
        vp = imgui.get_main_viewport()
        imgui.set_next_window_pos(imgui.ImVec2(vp.pos.x + self.panel_width, vp.pos.y))
        imgui.set_next_window_size(imgui.ImVec2(vp.size.x - self.panel_width, vp.size.y))
        # No background: the cleared framebuffer is the backdrop, which saves a full-view fill per frame (noticeable
        # with software OpenGL).
        flags = (imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_saved_settings
                 | imgui.WindowFlags_.no_bring_to_front_on_focus | imgui.WindowFlags_.no_scroll_with_mouse
                 | imgui.WindowFlags_.no_background)
        imgui.push_style_var(imgui.StyleVar_.window_padding, imgui.ImVec2(0, 0))
        imgui.begin("##view", None, flags)
        imgui.pop_style_var()
        origin = imgui.get_cursor_screen_pos()
        avail = imgui.get_content_region_avail()
        w, h = max(avail.x, 1.0), max(avail.y, 1.0)
        buttons = (imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right
                   | imgui.ButtonFlags_.mouse_button_middle)
        imgui.invisible_button("canvas", imgui.ImVec2(w, h), buttons)
        self._view_input(min(w, h))
        draw = imgui.get_window_draw_list()
        view = self.state.render.view
        panels = (["image", "raw", "depth"] if view == "side by side" else [view])
        size = min(w / len(panels), h)
        x0 = origin.x + (w - size * len(panels)) / 2
        y0 = origin.y + (h - size) / 2
        for i, name in enumerate(panels):
            tex = self._texture_for(name)
            if tex is not None and not tex.empty:
                p0 = imgui.ImVec2(x0 + i * size, y0)
                draw.add_image(tex.ref, p0, imgui.ImVec2(p0.x + size, p0.y + size))
                if len(panels) > 1:
                    label = VIEW_LABELS[name]
                    size_t = imgui.calc_text_size(label)
                    draw.add_rect_filled(imgui.ImVec2(p0.x + 2, p0.y + 2),
                                         imgui.ImVec2(p0.x + 10 + size_t.x, p0.y + 10 + size_t.y), 0xA0000000, 4.0)
                    draw.add_text(imgui.ImVec2(p0.x + 6, p0.y + 6), 0xFFFFFFFF, label)
        self._draw_overlay(draw, origin, w, h)
        imgui.end()

    def _texture_for(self, name: str) -> Texture | None:
        if self.shown is None:
            return None
        if name == "image" and self.shown.image is None:
            return self.textures["raw"]  # a preview without super-resolution: show its raw render, upscaled
        return self.textures[name]

    def _draw_overlay(self, draw: imgui.ImDrawList, origin: imgui.ImVec2, w: float, h: float) -> None:
        lines = []
        if self.info is None:
            lines.append(self.state.model.message if self.state.model.error else "loading model ...")
        elif self.shown is not None:
            q = self.shown.request.quality
            status = ("" if self.full_frame_shown() else "  (super-resolution running ...)" if not self.shown.final
                      else "  (refining ...)")
            lines.append(q.label + status)
            lines.append(f"UI {self.state.perf.ui_fps:.0f} FPS | render {self.state.perf.render_fps:.1f} frames/s")
        if self.render_error:
            lines.append(f"render error: {self.render_error}")
        e = self.state.export
        if e.busy:
            lines.append(f"exporting mesh ... {100 * e.progress:.0f}%")
        elif e.message and time.perf_counter() < self._export_note_until:
            lines.append(("export failed: " if e.error else "") + e.message)
        step = imgui.get_text_line_height_with_spacing()
        y = origin.y + h - 8 - step * len(lines)
        if lines:  # a translucent backing keeps the text readable on bright images
            width = max(imgui.calc_text_size(line).x for line in lines)
            draw.add_rect_filled(imgui.ImVec2(origin.x + 4, y - 4), imgui.ImVec2(origin.x + 16 + width, y + step * len(lines)),
                                 0xA0000000, 4.0)
        for line in lines:
            color = 0xFF6060FF if line.startswith(("render error", "export failed")) else 0xFFE0E0E0
            draw.add_text(imgui.ImVec2(origin.x + 10, y), color, line)
            y += step

    def _view_input(self, viewport_px: float) -> None:
        """Mouse on the view: left drag orbits, right/middle (or Shift + left) drag pans, wheel zooms."""
        if self.limits is None:
            return
        io = imgui.get_io()
        cam, lim = self.state.camera, self.limits
        # Letting go of the view ends a drag: the camera is at rest, so the full frame need not wait for rest_delay.
        self._view_released = self._view_released or imgui.is_item_deactivated()
        dx, dy = io.mouse_delta.x, io.mouse_delta.y
        if imgui.is_item_active() and (dx or dy):
            if imgui.is_mouse_dragging(imgui.MouseButton_.left) and not io.key_shift:
                cam = cc.orbit(cam, dx, dy, lim)
                cam.orbit_animation = False
            elif (imgui.is_mouse_dragging(imgui.MouseButton_.right) or imgui.is_mouse_dragging(imgui.MouseButton_.middle)
                  or imgui.is_mouse_dragging(imgui.MouseButton_.left)):
                cam = cc.pan(cam, dx, dy, viewport_px, lim)
        if imgui.is_item_hovered():
            if io.mouse_wheel:
                cam = cc.zoom(cam, io.mouse_wheel, lim)
            if imgui.is_mouse_double_clicked(imgui.MouseButton_.left):
                cam = cc.reset(cam, lim)
        self.state.camera = cam

    def _shortcuts(self) -> None:
        io = imgui.get_io()
        if self.limits is None or io.want_text_input:
            return
        if io.key_ctrl:
            if imgui.is_key_pressed(imgui.Key.q, False):
                self.window.request_close()
            return
        done = set()
        for key, name, _ in SHORTCUTS:
            if name not in done and imgui.is_key_pressed(key):
                actions.ACTIONS[name](self.state, self.limits)
                done.add(name)

    # ------------------------------------------------------------------------------------------------------------
    # requests from widgets (load, save, mesh)

    def _handle_requests(self) -> None:
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

    def _stem(self) -> str:
        lat = self.state.latent
        stem = f"seed{lat.seed:04d}"
        if lat.mix > 0:
            stem += f"-{lat.seed_b:04d}x{lat.mix:.2f}"
        c = self.state.camera
        return f"{stem}_yaw{math.degrees(c.yaw):+.0f}_pitch{math.degrees(c.pitch):+.0f}"

    # ------------------------------------------------------------------------------------------------------------
    # scripts, snapshots, report

    def _run_script(self, now: float) -> None:
        # At most one step per frame: a step's effects (requests handled later in the frame, the UI drawn in the
        # next one) must be visible before the next step is judged, e.g. {"wait": "export"} after an export.
        steps = self.options.script
        if self._script_index < len(steps):
            step = steps[self._script_index]
            if self.frame >= step.frame and self._step_ready(step, now):
                self._apply_step(step)
                self._script_index += 1
                self._wait_started = None
            return
        if (self.options.snapshot is not None and self.frame >= self.options.frames and self._exit_code is None
                and self._screenshot_path is None and self.full_frame_shown()):
            self._screenshot_path = self.options.snapshot
            self._exit_code = 0

    def _step_ready(self, step: Step, now: float) -> bool:
        if step.kind == "snapshot":
            return self.full_frame_shown()
        if step.kind != "wait":
            # Everything but a load waits for the first model: loading it resets the camera and render settings.
            return self.limits is not None or step.kind == "load"
        if isinstance(step.value, (int, float)):
            if self._wait_started is None:
                self._wait_started = now
            return now - self._wait_started >= step.value
        return {"full": self.full_frame_shown, "model": lambda: self.info is not None and not self.state.model.loading,
                "export": lambda: not self.state.export.busy,
                "directions": lambda: bool(self.state.directions.amounts)}[step.value]()

    def _apply_step(self, step: Step) -> None:
        assert self.limits is not None or step.kind in ("load", "wait")
        s = self.state
        if step.kind == "orbit":
            s.camera = cc.orbit(s.camera, *step.value, self.limits)
        elif step.kind == "pan":
            s.camera = cc.pan(s.camera, *step.value, 512.0, self.limits)
        elif step.kind == "zoom":
            s.camera = cc.zoom(s.camera, step.value, self.limits)
        elif step.kind == "set":
            for path, value in step.value.items():
                set_field(s, path, value)
        elif step.kind == "action":
            if step.value not in actions.ACTIONS:
                raise ScriptError(f"unknown action {step.value!r}; known: {', '.join(actions.ACTIONS)}")
            actions.ACTIONS[step.value](s, self.limits)
        elif step.kind == "load":
            # Marked loading now (not when the request is handled later this frame) so that a following
            # {"wait": "model"} step waits for this load.
            s.model.path, s.model.load_requested, s.model.loading = step.value, step.value, True
        elif step.kind in ("snapshot", "capture"):
            self._screenshot_path = step.value

    def _save_screenshot(self, path: str) -> None:
        pixels = self.window.screenshot()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        print(f"eg3d viewer: saved screenshot {path} ({pixels.shape[1]}x{pixels.shape[0]}, "
              f"{self.state.perf.quality})", flush=True)

    def print_report(self) -> None:
        log = np.array([t for t, _ in self.frame_log])
        busy = np.array([t for t, b in self.frame_log if b])
        print(f"eg3d viewer: OpenGL renderer: {self.window.renderer_name}")
        print(f"eg3d viewer: UI frame times, all: {frame_stats(log).describe()}")
        print(f"eg3d viewer: UI frame times while the worker rendered: {frame_stats(busy).describe()}")
        print(f"eg3d viewer: UI thread CPU time per frame: {frame_stats(self.cpu_log).describe()}")
        for label in dict.fromkeys(q for q, _ in self.result_log):
            ms = [t for q, t in self.result_log if q == label]
            print(f"eg3d viewer: rendered {label}: {frame_stats(ms).describe()}")
        p = self.state.perf
        print(f"eg3d viewer: last frame {p.quality}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in p.stage_ms.items())
              + f"; stale requests dropped {p.dropped}, full frames cancelled {p.cancelled}", flush=True)
