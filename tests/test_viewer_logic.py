"""The viewer's logic without GL: camera controller math, the render scheduler and mailbox, state -> request,
scripts, the render path (latent composition, plane cache, cancellation), latent directions and the workers."""
from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import types
import typing
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import FIXTURES

import eg3d_core
from eg3d_core import save_generator
from eg3d_core.cameras import camera, camera_defaults, focal_from_fov
from eg3d_viewer import actions, events, report
from eg3d_viewer import camera_controller as cc
from eg3d_viewer.directions import compute_directions, load_or_compute
from eg3d_viewer.renderer import Cancelled, ViewerRenderer, compose_ws
from eg3d_viewer.requests import adapt_resolution, full_quality, preview_quality, scene_of
from eg3d_viewer.scheduler import RenderScheduler, RequestSlot
from eg3d_viewer.script import ScriptError, ScriptRunner, Step, apply_step, parse_script, set_field
from eg3d_viewer.state import AppState, CameraState
from eg3d_viewer.worker import (
    DirectionsReady,
    Event,
    ExportDone,
    ExportFailed,
    ExportWorker,
    FrameCancelled,
    FrameReady,
    MeshJob,
    ModelFailed,
    ModelLoaded,
    RenderWorker,
    SaveFrameJob,
)

FIXTURE_PKL = FIXTURES / "tiny_cars128" / "network-snapshot.pkl"


# ----------------------------------------------------------------------------------------------------------------------
# Camera controller


def test_drag_right_turns_model_right_and_drag_down_looks_from_above(limits) -> None:
    cam = CameraState()
    moved = cc.orbit(cam, 100, 0, limits)
    assert moved.yaw == pytest.approx(-100 * cc.ControllerConfig().orbit_rad_per_px) and moved.pitch == 0
    # Decreasing yaw moves the camera towards -x (see eg3d_core.cameras): the camera goes to the model's left.
    x_cam = camera(camera_defaults_for(limits), yaw=moved.yaw)[0, 3].item()
    assert x_cam < 0
    down = cc.orbit(cam, 0, 50, limits)
    y_cam = camera(camera_defaults_for(limits), pitch=down.pitch)[0, 7].item()
    assert down.pitch < 0 and y_cam > 0  # camera above the equator


def camera_defaults_for(limits: cc.CameraLimits):
    from eg3d_core.cameras import CameraDefaults
    return CameraDefaults(limits.default_radius, limits.default_pivot, limits.focal)


def test_pitch_is_clamped_and_yaw_wraps(limits) -> None:
    cam = cc.orbit(CameraState(), 0, -1e5, limits)
    assert cam.pitch == pytest.approx(cc.PITCH_LIMIT)
    cam = cc.orbit(CameraState(), 0, 1e5, limits)
    assert cam.pitch == pytest.approx(-cc.PITCH_LIMIT)
    cam = cc.orbit(CameraState(yaw=3.0), -100, 0, limits)  # 3.0 + 0.5 rad wraps past pi
    assert -math.pi <= cam.yaw < math.pi and cam.yaw == pytest.approx(3.5 - 2 * math.pi)


def test_zoom_changes_fov_or_radius_within_limits(limits) -> None:
    cam = CameraState.from_defaults(camera_defaults_for(limits))
    zin = cc.zoom(cam, 1, limits)
    assert zin.fov == pytest.approx(cam.fov / 1.1) and zin.radius == cam.radius
    assert cc.zoom(cam, -1, limits).fov > cam.fov
    assert cc.zoom(cam, 100, limits).fov == limits.fov_min
    dolly = cc.zoom(replace(cam, zoom_mode="radius"), 1, limits)
    assert dolly.radius < cam.radius and dolly.fov == cam.fov
    assert cc.zoom(replace(cam, zoom_mode="radius"), 100, limits).radius == limits.radius_min
    assert cc.zoom(replace(cam, zoom_mode="radius"), -100, limits).radius == limits.radius_max


def test_radius_limits_stay_inside_the_rendered_depth_range(info, limits) -> None:
    assert info.ray_start <= limits.radius_min < info.camera.radius < limits.radius_max <= info.ray_end


def test_reset_restores_the_default_view_and_keeps_zoom_mode(limits) -> None:
    cam = CameraState(yaw=1.0, pitch=0.3, radius=1.0, fov=30.0, pivot=(0.1, 0.1, 0.1), zoom_mode="radius")
    r = cc.reset(cam, limits)
    assert (r.yaw, r.pitch, r.radius, r.fov, r.pivot) == (limits.default_yaw, limits.default_pitch, limits.default_radius,
                                                          limits.default_fov, limits.default_pivot)
    assert r.zoom_mode == "radius"


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.7, -0.3), (-2.0, 0.5)])
def test_camera_axes_match_the_library_pose(yaw, pitch) -> None:
    right, down = cc.camera_axes(yaw, pitch)
    c = camera(camera_defaults_for(cc.CameraLimits(1, 3, 2.7, 18.8, (0.0, 0.0, 0.0))), yaw=yaw, pitch=pitch)
    pose = c[0, :16].reshape(4, 4).double().numpy()
    np.testing.assert_allclose(right, pose[:3, 0], atol=1e-6)
    np.testing.assert_allclose(down, pose[:3, 1], atol=1e-6)


def test_pan_moves_the_look_at_point_against_the_drag(limits) -> None:
    cam = CameraState.from_defaults(camera_defaults_for(limits))
    moved = cc.pan(cam, 10, 0, 500, limits)
    # Frontal camera: image right = world +x. Content follows the mouse, so the look-at point moves to -x.
    assert moved.pivot[0] < cam.pivot[0] and moved.pivot[1] == pytest.approx(cam.pivot[1])
    expected = 10 * cam.radius / (focal_from_fov(cam.fov) * 500)
    assert cam.pivot[0] - moved.pivot[0] == pytest.approx(expected, rel=1e-4)
    far = cc.pan(cam, 1e6, 1e6, 500, limits)
    assert all(abs(p) <= limits.pivot_max for p in far.pivot)


def test_keyboard_actions(state, limits) -> None:
    actions.ACTIONS["yaw_right"](state, limits)
    assert state.camera.yaw == pytest.approx(limits.default_yaw - 0.1)
    actions.ACTIONS["reset_view"](state, limits)
    assert state.camera.yaw == limits.default_yaw
    state.latent.seed, state.latent.seed_b = 5, 6
    actions.ACTIONS["next_seed"](state, limits)
    assert (state.latent.seed, state.latent.seed_b) == (6, 7)
    actions.ACTIONS["prev_seed"](state, limits)
    actions.ACTIONS["prev_seed"](state, limits)
    assert state.latent.seed == 4
    state.latent.seed = 0
    actions.ACTIONS["prev_seed"](state, limits)
    assert state.latent.seed == 2**32 - 1
    views = [state.render.view]
    for _ in range(4):
        actions.ACTIONS["cycle_view"](state, limits)
        views.append(state.render.view)
    assert views == ["image", "raw", "depth", "side by side", "image"]


def test_latent_animation_walks_seeds() -> None:
    s = AppState()
    s.latent.seed, s.latent.seed_b, s.latent.animate, s.latent.speed = 3, 4, True, 0.5
    actions.animate(s, 1.0)
    assert (s.latent.seed, s.latent.seed_b, s.latent.mix) == (3, 4, pytest.approx(0.5))
    actions.animate(s, 1.5)
    assert (s.latent.seed, s.latent.seed_b, s.latent.mix) == (4, 5, pytest.approx(0.25))


# ----------------------------------------------------------------------------------------------------------------------
# State -> requests, scheduler, mailbox


def test_scene_ignores_display_only_settings_and_normalises_directions(state, info) -> None:
    a = scene_of(state, info)
    state.render.view = "depth"
    state.perf.fps_limit = 30
    state.directions.amounts = [0.0, 0.0]
    assert scene_of(state, info) == a
    state.directions.amounts = [0.0, 1.0]
    assert scene_of(state, info).latent != a.latent
    state.directions.amounts = [0.0, 0.0]
    state.camera.yaw = 0.1
    b = scene_of(state, info)
    assert b.latent == a.latent and b.camera != a.camera


def test_preview_never_costs_more_than_full(state) -> None:
    r = state.render
    p = preview_quality(r, 4096)
    assert p.settings.neural_rendering_resolution == r.full_resolution and p.preview
    assert p.settings.depth_resolution <= r.full_samples
    assert full_quality(r).settings.superres and not full_quality(r).preview


def quality_pair(state):
    return preview_quality(state.render, 32), full_quality(state.render)


def test_scheduler_previews_while_moving_and_renders_full_once_after_rest(state, info) -> None:
    sch = RenderScheduler()
    prev, full = quality_pair(state)
    delay = 0.25
    r = sch.update(scene_of(state, info), prev, full, 0.0, delay)
    assert r is not None and r.quality.preview and not r.cancellable
    assert sch.update(scene_of(state, info), prev, full, 0.1, delay) is None  # unchanged, not yet at rest
    for i in range(1, 5):  # moving: one preview per changed frame, never a full one
        state.camera.yaw = 0.05 * i
        r = sch.update(scene_of(state, info), prev, full, 0.1 + 0.1 * i, delay)
        assert r is not None and r.quality.preview
    assert sch.update(scene_of(state, info), prev, full, 0.6, delay) is None  # 0.1 s after the last change
    r = sch.update(scene_of(state, info), prev, full, 0.5 + delay + 0.01, delay)
    assert r is not None and not r.quality.preview and r.cancellable and r.quality == full
    assert sch.at_rest
    assert sch.update(scene_of(state, info), prev, full, 5.0, delay) is None  # full frame only once
    state.latent.seed += 1
    r = sch.update(scene_of(state, info), prev, full, 5.1, delay)
    assert r is not None and r.quality.preview and not sch.at_rest
    serials = [r.serial]
    state.latent.seed += 1
    serials.append(sch.update(scene_of(state, info), prev, full, 5.2, delay).serial)
    assert serials[1] > serials[0]


def test_scheduler_renders_full_as_soon_as_a_drag_ends(state, info) -> None:
    sch = RenderScheduler()
    prev, full = quality_pair(state)
    delay = 0.25
    assert sch.update(scene_of(state, info), prev, full, 0.0, delay).quality.preview
    state.camera.yaw = 0.1
    assert sch.update(scene_of(state, info), prev, full, 0.05, delay).quality.preview  # dragging
    r = sch.update(scene_of(state, info), prev, full, 0.06, delay, released=True)  # let go: at rest now
    assert r is not None and not r.quality.preview and r.cancellable and r.quality == full
    assert sch.update(scene_of(state, info), prev, full, 0.07, delay, released=True) is None  # once
    state.camera.yaw = 0.2
    r = sch.update(scene_of(state, info), prev, full, 0.1, delay, released=True)  # moved in the releasing frame
    assert r is not None and r.quality.preview  # the change wins; the full frame then waits for the rest delay
    assert sch.update(scene_of(state, info), prev, full, 0.11, delay) is None
    assert sch.update(scene_of(state, info), prev, full, 0.1 + delay + 0.01, delay).quality == full


def test_scheduler_rerequests_a_cancelled_full_frame(state, info) -> None:
    sch = RenderScheduler()
    prev, full = quality_pair(state)
    sch.update(scene_of(state, info), prev, full, 0.0, 0.1)
    r = sch.update(scene_of(state, info), prev, full, 1.0, 0.1)
    assert not r.quality.preview
    sch.full_cancelled(r)
    r2 = sch.update(scene_of(state, info), prev, full, 1.1, 0.1)
    assert r2 is not None and not r2.quality.preview


def test_scheduler_changing_full_settings_counts_as_a_change_and_non_progressive_goes_straight_to_full(state, info) -> None:
    sch = RenderScheduler()
    prev, full = quality_pair(state)
    sch.update(scene_of(state, info), prev, full, 0.0, 0.1)
    sch.update(scene_of(state, info), prev, full, 1.0, 0.1)
    state.render.full_samples += 4
    r = sch.update(scene_of(state, info), prev, full_quality(state.render), 1.1, 0.1)
    assert r is not None and r.quality.preview
    state.camera.yaw = 0.3
    r = sch.update(scene_of(state, info), prev, full_quality(state.render), 1.2, 0.1, progressive=False)
    assert r is not None and not r.quality.preview and not r.cancellable


def test_slot_newest_wins_and_drops_stale(state, info) -> None:
    sch, slot = RenderScheduler(), RequestSlot()
    prev, full = quality_pair(state)
    reqs = []
    for i in range(5):
        state.camera.yaw = 0.01 * i
        reqs.append(sch.update(scene_of(state, info), prev, full, float(i), 10.0))
        slot.put(reqs[-1])
    assert slot.dropped == 4
    assert slot.take(timeout=0) is reqs[-1]
    assert slot.take(timeout=0.01) is None
    slot.done()
    assert not slot.busy


def test_slot_cancels_only_cancellable_active_requests(state, info) -> None:
    sch, slot = RenderScheduler(), RequestSlot()
    prev, full = quality_pair(state)
    preview = sch.update(scene_of(state, info), prev, full, 0.0, 0.1)
    slot.put(preview)
    slot.take()
    slot.put(preview)
    assert not slot.cancelled()  # a preview in flight always finishes
    slot.take()
    slot.done()
    full_req = sch.update(scene_of(state, info), prev, full, 1.0, 0.1)
    slot.put(full_req)
    slot.take()
    assert not slot.cancelled()
    slot.put(preview)
    assert slot.cancelled()
    slot.done()
    slot.close()
    assert slot.take() is None


@pytest.mark.parametrize("current,ms,target,expected", [
    (64, 100.0, 100.0, 64),   # on target: stay
    (64, 110.0, 100.0, 64),   # up to 10% over target: stay (hysteresis)
    (64, 130.0, 100.0, 48),   # too slow: the largest step that fits
    (64, 400.0, 100.0, 32),   # 4x too slow: halve
    (32, 27.0, 67.0, 48),     # room for one more step (48 px is predicted at 61 ms)
    (48, 61.0, 67.0, 48),     # ... and then it stays
    (64, 25.0, 100.0, 96),    # much too fast: grow by at most 50%
    (32, 1000.0, 50.0, 32),   # never below the floor
    (128, 1.0, 50.0, 128),    # never above the ceiling
])
def test_adapt_resolution(current, ms, target, expected) -> None:
    assert adapt_resolution(current, ms, target, lo=32, hi=128) == expected


# ----------------------------------------------------------------------------------------------------------------------
# Scripts


def test_parse_script_and_set_field(tmp_path) -> None:
    steps = parse_script('[{"orbit": [10, -5]}, {"zoom": 1, "frame": 3}, {"set": {"latent.seed": 7}}, '
                         '{"wait": "full"}, {"wait": 0.5}, {"action": "next_seed"}, {"snapshot": "a.png"}]')
    assert [s.kind for s in steps] == ["orbit", "zoom", "set", "wait", "wait", "action", "snapshot"]
    assert steps[0].value == (10, -5) and steps[1].frame == 3
    f = tmp_path / "s.json"
    f.write_text('[{"pan": [1, 2]}]')
    assert parse_script(str(f))[0].kind == "pan"
    s = AppState()
    set_field(s, "camera.pivot", [0, 0, 0.1])
    set_field(s, "render.view", "depth")
    set_field(s, "latent.animate", True)
    assert s.camera.pivot == (0.0, 0.0, 0.1) and s.render.view == "depth" and s.latent.animate is True


@pytest.mark.parametrize("bad", ['{"orbit": 1}', '[{"orbit": 1}]', '[{"fly": 1}]', '[{"orbit": [1, 2], "zoom": 1}]',
                                 '[{"set": {"camera.nope": 1}}]', '[{"set": {"latent.seed": "x"}}]',
                                 '[{"wait": "forever"}]', '[{"zoom": 1, "frame": -1}]', "[not json", "/nonexistent/script.json"])
def test_bad_scripts_are_rejected_with_one_line(bad) -> None:
    with pytest.raises(ScriptError) as e:
        parse_script(bad)
    assert "\n" not in str(e.value)


def test_script_runner_applies_one_ready_step_per_frame(state, limits) -> None:
    steps = parse_script('[{"load": "m.pkl"}, {"wait": "model"}, {"orbit": [10, 0], "frame": 5}, {"wait": 0.5}, '
                         '{"snapshot": "a.png"}, {"capture": "b.png"}]')
    runner = ScriptRunner(steps)
    model_ready = full_shown = False
    conditions = {"full": lambda: full_shown, "model": lambda: model_ready, "export": lambda: True,
                  "directions": lambda: True}

    def advance(frame: int, now: float, lim: cc.CameraLimits | None = limits) -> str | None:
        return runner.advance(state, lim, frame, now, conditions)

    assert advance(0, 0.0, None) is None and runner.index == 1  # a load needs no model
    assert state.model.load_requested == "m.pkl" and state.model.loading
    assert advance(1, 0.0) is None and runner.index == 1  # waits for the model
    model_ready = True
    advance(2, 0.0)
    yaw = state.camera.yaw
    assert advance(4, 0.0) is None and runner.index == 2  # not before frame 5
    advance(5, 0.0)
    assert runner.index == 3 and state.camera.yaw != yaw
    advance(6, 1.0)
    advance(7, 1.4)
    assert runner.index == 3  # the wait started at the first frame that judged it
    advance(8, 1.5)
    assert runner.index == 4
    assert advance(9, 2.0) is None and runner.index == 4  # a snapshot waits for the full-quality frame
    full_shown = True
    assert advance(10, 2.0) == "a.png" and advance(11, 2.0) == "b.png"
    assert runner.finished and advance(12, 2.0) is None


def test_script_steps_other_than_load_and_wait_need_a_model(state) -> None:
    runner = ScriptRunner(parse_script('[{"zoom": 1}]'))
    assert runner.advance(state, None, 10, 0.0, {}) is None and not runner.finished


def test_script_unknown_action_is_a_script_error(state, limits) -> None:
    with pytest.raises(ScriptError, match="unknown action 'fly'"):
        apply_step(state, limits, Step("action", "fly"))


# ----------------------------------------------------------------------------------------------------------------------
# App: worker events and status lines


def test_every_worker_event_type_has_a_handler() -> None:
    assert set(events.HANDLERS) == set(typing.get_args(Event))


def test_export_events_update_the_export_state_and_status(state) -> None:
    app = types.SimpleNamespace(state=state, export_note_until=0.0)
    state.export.busy = True
    events.HANDLERS[ExportFailed](app, ExportFailed("disk full"), 5.0)
    assert (state.export.busy, state.export.error, app.export_note_until) == (False, True, 5.0 + events.EXPORT_NOTE_SECONDS)
    lines = report.status_lines(state, True, None, False, "", export_note=True)
    assert lines == ["export failed: disk full"] and lines[0].startswith(report.ERROR_PREFIXES)
    assert report.status_lines(state, True, None, False, "", export_note=False) == []
    events.HANDLERS[ExportDone](app, ExportDone("saved x.ply"), 6.0)
    assert not state.export.error and report.status_lines(state, True, None, False, "oops", True) == [
        "render error: oops", "saved x.ply"]


def test_model_failure_ends_a_snapshot_run_only_without_a_model(state) -> None:
    app = types.SimpleNamespace(state=state, info=None, options=types.SimpleNamespace(snapshot="x.png"), exit_code=None)
    events.HANDLERS[ModelFailed](app, ModelFailed("cannot read m.pkl"), 0.0)
    assert app.exit_code == 1 and state.model.error and not state.model.loading
    assert report.status_lines(state, False, None, False, "", False) == ["cannot read m.pkl"]
    app = types.SimpleNamespace(state=state, info=object(), options=app.options, exit_code=None)
    events.HANDLERS[ModelFailed](app, ModelFailed("cannot read n.pkl"), 0.0)
    assert app.exit_code is None


# ----------------------------------------------------------------------------------------------------------------------
# Render path


def test_compose_ws_conditions_every_seed_and_mixes(cars_generator, state, info) -> None:
    G = cars_generator
    spec = scene_of(state, info).latent
    w_a = compose_ws(G, spec)
    assert w_a.shape == (1, G.num_ws, G.w_dim)
    w_b = compose_ws(G, replace(spec, seed=spec.seed_b))
    half = compose_ws(G, replace(spec, mix=0.5))
    torch.testing.assert_close(half, (w_a + w_b) / 2, rtol=1e-5, atol=1e-5)  # float rounding only
    mixed = compose_ws(G, replace(spec, stylemix_seed=spec.seed_b, stylemix_layer=5))
    torch.testing.assert_close(mixed[:, :5], w_a[:, :5])
    torch.testing.assert_close(mixed[:, 5:], w_b[:, 5:])


def test_compose_ws_applies_directions_to_the_layer_range(cars_generator, state, info) -> None:
    G = cars_generator
    d = compute_directions(G, num_samples=300, num_components=3)
    spec = scene_of(state, info).latent
    base = compose_ws(G, spec, d)
    edited = compose_ws(G, replace(spec, directions=(0.0, 2.0), direction_layers=(2, 6)), d)
    delta = edited - base
    assert torch.all(delta[:, :2] == 0) and torch.all(delta[:, 6:] == 0)
    torch.testing.assert_close(delta[0, 3], 2.0 * d.stds[1] * d.components[1], rtol=1e-4, atol=1e-5)


def test_directions_are_orthonormal_and_cached(cars_generator, tmp_path) -> None:
    d, cached = load_or_compute(cars_generator, tmp_path, num_samples=300, num_components=4)
    assert not cached and len(d) == 4
    torch.testing.assert_close(d.components @ d.components.T, torch.eye(4), atol=1e-4, rtol=0)
    assert torch.all(d.stds[:-1] >= d.stds[1:])  # sorted by variance
    d2, cached = load_or_compute(cars_generator, tmp_path, num_samples=300, num_components=4)
    assert cached and torch.equal(d2.components, d.components)
    assert len(list(tmp_path.iterdir())) == 1


def test_renderer_caches_planes_and_previews_skip_superresolution(cars_generator, state, info) -> None:
    R = ViewerRenderer(cars_generator)
    try:
        sch = RenderScheduler()
        prev, full = preview_quality(state.render, 32), full_quality(state.render)
        r1 = R.render(sch.update(scene_of(state, info), prev, full, 0.0, 0.1))
        assert not r1.planes_cached and r1.image is None and r1.raw.shape == (32, 32, 3)
        assert r1.timings["backbone"] > 0 and r1.timings["superres"] == 0
        r2 = R.render(sch.update(scene_of(state, info), prev, full, 1.0, 0.1))
        assert r2.planes_cached and r2.timings["backbone"] == 0
        assert r2.image.shape == (info.img_resolution, info.img_resolution, 3)
        assert r2.raw.shape == (info.neural_rendering_resolution,) * 2 + (3,)
        assert r2.depth.dtype == np.uint8 and r2.depth_values.shape == r2.raw.shape[:2]
        # Same as calling the library directly (the viewer adds nothing to the image).
        with torch.no_grad():
            ws = compose_ws(cars_generator, r2.request.scene.latent)
            c = camera(camera_defaults(cars_generator.config), yaw=state.camera.yaw, pitch=state.camera.pitch)
            ref = cars_generator.render_planes(cars_generator.planes(ws), ws, c)["image"]
        from eg3d_core.visualize import to_uint8
        assert np.abs(to_uint8(ref[0]).astype(int) - r2.image.astype(int)).max() <= 1
    finally:
        R.close()


def test_preview_planes_are_pooled_and_full_frames_report_a_partial_first(cars_generator, state, info) -> None:
    R = ViewerRenderer(cars_generator)
    try:
        spec = scene_of(state, info).latent
        ws, planes, cached = R.latent(spec)
        _, half, cached_half = R.latent(spec, plane_scale=2)
        assert cached_half and half.shape[-2:] == (planes.shape[-2] // 2, planes.shape[-1] // 2)
        torch.testing.assert_close(half[..., 0, 0], planes[..., :2, :2].mean((-2, -1)))
        assert R.latent(spec, plane_scale=2)[1] is half  # pooled once per latent
        sch = RenderScheduler()
        prev, full = preview_quality(state.render, 32), full_quality(state.render)
        assert prev.plane_scale == info.triplane_resolution // 128 and full.plane_scale == 1
        sch.update(scene_of(state, info), prev, full, 0.0, 0.1)
        req = sch.update(scene_of(state, info), prev, full, 1.0, 0.1)
        partials = []
        final = R.render(req, on_partial=partials.append)
        assert len(partials) == 1 and not partials[0].final and partials[0].image is None
        assert final.final and final.image is not None
        np.testing.assert_array_equal(partials[0].raw, final.raw)
    finally:
        R.close()


def test_cancellable_render_stops_at_the_next_module(cars_generator, state, info) -> None:
    R = ViewerRenderer(cars_generator)
    try:
        sch = RenderScheduler()
        prev, full = preview_quality(state.render, 32), full_quality(state.render)
        preview = sch.update(scene_of(state, info), prev, full, 0.0, 0.1)
        full_req = sch.update(scene_of(state, info), prev, full, 1.0, 0.1)
        with pytest.raises(Cancelled):
            R.render(full_req, lambda: True)
        assert R.render(preview, lambda: True).raw is not None  # previews ignore the flag
        # The hooks are inert outside a cancellable render (e.g. the export thread using the same generator).
        with torch.no_grad():
            cars_generator.mapping(torch.zeros(1, cars_generator.z_dim), torch.zeros(1, 25))
    finally:
        R.close()


# ----------------------------------------------------------------------------------------------------------------------
# Workers


def wait_for(events: queue.Queue, kind: type, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            ev = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(ev, kind):
            return ev
        seen.append(type(ev).__name__)
    raise AssertionError(f"no {kind.__name__} within {timeout} s (saw {seen})")


def test_render_worker_loads_renders_and_keeps_the_model_on_a_failed_load(tmp_path, state) -> None:
    events: queue.Queue = queue.Queue()
    worker = RenderWorker(events, cache_dir=tmp_path, direction_samples=200, num_directions=3)
    worker.start()
    try:
        worker.load(str(FIXTURE_PKL))
        loaded = wait_for(events, ModelLoaded)
        info = loaded.info
        assert info.source.endswith("network-snapshot.pkl")
        assert len(wait_for(events, DirectionsReady).directions) == 3
        bad = tmp_path / "broken.pkl"
        bad.write_bytes(b"\x80\x04garbage")
        worker.load(str(bad))
        failed = wait_for(events, ModelFailed)
        assert "\n" not in failed.message and failed.message
        actions.apply_model(state, info)
        sch = RenderScheduler()
        req = sch.update(scene_of(state, info), preview_quality(state.render, 32), full_quality(state.render), 0, 1)
        worker.submit(req)
        frame = wait_for(events, FrameReady)  # the previous model still renders
        assert frame.result.request is req
        # The other two formats: an MMagic .pth and our own folder.
        worker.load(str(FIXTURES / "tiny_cars128" / "mmagic.pth"))
        assert wait_for(events, ModelLoaded).info.source.endswith("mmagic.pth")
        save_generator(eg3d_core.load_generator(FIXTURE_PKL), tmp_path / "ours")
        worker.load(str(tmp_path / "ours"))
        assert wait_for(events, ModelLoaded).info.num_ws == info.num_ws
    finally:
        worker.close()
    assert not worker.is_alive()


def test_export_worker_saves_frames_and_reports_mesh_failures(cars_generator, tmp_path, state, info) -> None:
    from eg3d_viewer.worker import ExportDone, ExportFailed

    events: queue.Queue = queue.Queue()
    ex = ExportWorker(events)
    ex.start()
    R = ViewerRenderer(cars_generator)
    try:
        sch = RenderScheduler()
        req = sch.update(scene_of(state, info), full_quality(state.render), full_quality(state.render), 0, 1)
        result = R.render(req)
        ex.submit(SaveFrameJob(result, str(tmp_path / "out"), "frame"))
        ex.submit(SaveFrameJob(result, str(tmp_path / "out"), "frame"))
        wait_for(events, ExportDone)
        wait_for(events, ExportDone)
        names = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert names == sorted(["frame_image.png", "frame_raw.png", "frame_depth.png", "frame_depth.npy",
                                "frame-2_image.png", "frame-2_raw.png", "frame-2_depth.png", "frame-2_depth.npy"])
        # A mesh job on a level the density never reaches: the UI gets generator_mesh's one-line ValueError.
        job = MeshJob(cars_generator, None, scene_of(state, info).latent, 32, str(tmp_path / "m.ply"), False)
        ex.submit(job)
        ev = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not isinstance(ev, (ExportDone, ExportFailed)):
            ev = events.get(timeout=120)
        assert isinstance(ev, (ExportDone, ExportFailed))
        if isinstance(ev, ExportFailed):
            assert "no surface" in ev.message
        else:
            assert (tmp_path / "m.ply").stat().st_size > 0
    finally:
        R.close()
        ex.close()


def test_worker_abandons_a_full_frame_when_the_camera_moves(tmp_path, state) -> None:
    events: queue.Queue = queue.Queue()
    worker = RenderWorker(events, cache_dir=tmp_path, direction_samples=200, num_directions=2)
    worker.start()
    try:
        worker.load(str(FIXTURE_PKL))
        info = wait_for(events, ModelLoaded).info
        wait_for(events, DirectionsReady)
        actions.apply_model(state, info)
        # A deliberately heavy full frame, so that it is still running when the camera moves.
        state.render.full_resolution, state.render.full_samples, state.render.full_importance = 128, 96, 96
        sch = RenderScheduler()
        prev = preview_quality(state.render, 32)
        sch.update(scene_of(state, info), prev, full_quality(state.render), 0.0, 0.1)
        full_req = sch.update(scene_of(state, info), prev, full_quality(state.render), 1.0, 0.1)
        worker.submit(full_req)
        deadline = time.monotonic() + 30
        while worker.slot.active is not full_req and time.monotonic() < deadline:
            time.sleep(0.005)
        state.camera.yaw = 0.2
        preview_req = sch.update(scene_of(state, info), prev, full_quality(state.render), 1.1, 0.1)
        worker.submit(preview_req)
        cancelled = wait_for(events, FrameCancelled)
        assert cancelled.request is full_req
        assert wait_for(events, FrameReady).result.request is preview_req
        sch.full_cancelled(full_req)  # the scene moved on: the cancelled frame is not asked for again ...
        assert sch.update(scene_of(state, info), prev, full_quality(state.render), 1.15, 0.1) is None
        again = sch.update(scene_of(state, info), prev, full_quality(state.render), 1.3, 0.1)
        assert again is not None and not again.quality.preview  # ... but the new view's full frame is
    finally:
        worker.close()


def test_ui_thread_is_not_blocked_while_the_worker_renders(tmp_path, state) -> None:
    """The UI-side calls (submit, polling events) return at once even while a slow render is in flight."""
    events: queue.Queue = queue.Queue()
    worker = RenderWorker(events, cache_dir=tmp_path, direction_samples=200, num_directions=2)
    worker.start()
    try:
        worker.load(str(FIXTURE_PKL))
        info = wait_for(events, ModelLoaded).info
        actions.apply_model(state, info)
        sch = RenderScheduler()
        worst = 0.0
        for i in range(20):
            state.camera.yaw = 0.02 * i
            req = sch.update(scene_of(state, info), preview_quality(state.render, 32), full_quality(state.render),
                             float(i), 1.0)
            t0 = time.perf_counter()
            worker.submit(req)
            try:
                events.get_nowait()
            except queue.Empty:
                pass
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        assert worst < 0.05, f"UI-side call took {worst * 1e3:.1f} ms"
        assert worker.slot.dropped > 0  # the worker could not keep up, so stale requests were dropped
    finally:
        worker.close()


def test_threads_do_not_leak_between_tests() -> None:
    names = [t.name for t in threading.enumerate()]
    assert "eg3d-render" not in names and "eg3d-export" not in names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux-only")
def test_worker_threads_yield_to_the_ui_thread():
    """The render/export workers raise their own nice value (so their OpenMP teams do too), not the UI thread's."""
    from eg3d_viewer.worker import lower_thread_priority

    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def body():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lower_thread_priority()
        seen["before"], seen["after"] = before, os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen["after"] == min(19, seen["before"] + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice
