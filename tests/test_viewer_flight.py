"""Keyboard flight and the viewer's first impression, without GL: WASD / QE flight, arrow-key orbit and turning, the
orbit <-> fly mode, scripted key holds, the opening view, the side-by-side tiling and the status line at rest."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from eg3d_core.cameras import camera, camera_defaults
from eg3d_viewer import actions, report
from eg3d_viewer import camera_controller as cc
from eg3d_viewer.layout import tile_views
from eg3d_viewer.model_info import ModelInfo
from eg3d_viewer.renderer import ViewerRenderer
from eg3d_viewer.requests import full_quality, preview_quality, scene_of
from eg3d_viewer.scheduler import RenderScheduler
from eg3d_viewer.script import ScriptError, ScriptRunner, parse_script
from eg3d_viewer.state import AppState, CameraState


def pose(cam: CameraState, info: ModelInfo) -> np.ndarray:
    """The library's cam2world for a viewer camera."""
    c = camera(info.camera, yaw=cam.yaw, pitch=cam.pitch, radius=cam.radius, pivot=cam.pivot)
    return c[0, :16].reshape(4, 4).double().numpy()


# ----------------------------------------------------------------------------------------------------------------------
# Opening view


def test_the_viewer_opens_on_the_models_opening_view_and_reset_returns_there(state, info, limits) -> None:
    yaw, pitch = info.camera.view
    assert (yaw, pitch) != (0.0, 0.0)  # the cars fixture opens three-quarter from above, not head-on
    assert (state.camera.yaw, state.camera.pitch) == (yaw, pitch)
    actions.ACTIONS["yaw_right"](state, limits)
    assert state.camera.yaw != yaw
    actions.ACTIONS["reset_view"](state, limits)
    assert (state.camera.yaw, state.camera.pitch) == (yaw, pitch)


def test_camera_position_matches_the_library_pose(info) -> None:
    for cam in (CameraState(yaw=0.7, pitch=-0.3, radius=1.5), CameraState(yaw=-2.0, pitch=0.5, radius=2.2)):
        np.testing.assert_allclose(cc.camera_position(cam), pose(cam, info)[:3, 3], atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Flight


def test_w_flies_towards_the_model_keeping_the_view_and_stops_at_the_nearest_renderable_distance(state, info,
                                                                                                    limits) -> None:
    cam = state.camera
    forward = pose(cam, info)[:3, 2]
    moved = cc.key_motion(cam, {"w"}, 0.2, limits)
    step = cc.KeySpeeds().fly_radii_per_s * limits.default_radius * 0.2
    p0, p1 = np.array(cc.camera_position(cam)), np.array(cc.camera_position(moved))
    np.testing.assert_allclose(p1 - p0, step * forward, atol=1e-4)
    np.testing.assert_allclose(pose(moved, info)[:3, 2], forward, atol=1e-4)  # same direction of view
    back = cc.key_motion(moved, {"s"}, 0.2, limits)
    np.testing.assert_allclose(cc.camera_position(back), p0, atol=1e-4)
    for _ in range(100):
        moved = cc.key_motion(moved, {"w"}, 0.1, limits)
    assert moved.radius == pytest.approx(limits.radius_min)


def test_strafe_and_rise_keep_the_view_direction_and_the_model_in_the_box(state, info, limits) -> None:
    cam = state.camera
    f0 = pose(cam, info)[:3, 2]
    right = cc.key_motion(cam, {"d"}, 0.1, limits)
    p0, p1 = np.array(cc.camera_position(cam)), np.array(cc.camera_position(right))
    assert np.dot(p1 - p0, pose(cam, info)[:3, 0]) > 0  # moved along the image's right
    np.testing.assert_allclose(pose(right, info)[:3, 2], f0, atol=1e-4)
    up = cc.key_motion(cam, {"e"}, 0.1, limits)
    assert cc.camera_position(up)[1] > cc.camera_position(cam)[1]
    down = cc.key_motion(cam, {"q"}, 0.1, limits)
    assert cc.camera_position(down)[1] < cc.camera_position(cam)[1]
    far = cam
    for _ in range(200):  # far past the model: the pivot stays in the box, the radius in range
        far = cc.key_motion(far, {"a", "e"}, 0.1, limits)
        assert all(abs(p) <= limits.pivot_max + 1e-9 for p in far.pivot)
        assert limits.radius_min - 1e-9 <= far.radius <= limits.radius_max + 1e-9


def test_flight_speed_is_scaled_to_the_models_radius(state, limits) -> None:
    big = replace(limits, default_radius=2 * limits.default_radius, radius_max=10.0)
    cam = state.camera
    d1 = cam.radius - cc.key_motion(cam, {"w"}, 0.1, limits).radius
    d2 = cam.radius - cc.key_motion(cam, {"w"}, 0.1, big).radius
    assert d1 > 0 and d2 == pytest.approx(2 * d1, rel=1e-3)


def test_arrows_orbit_in_orbit_mode_and_turn_in_place_in_fly_mode(state, info, limits) -> None:
    cam = state.camera
    assert cam.mode == "orbit"
    left = cc.key_motion(cam, {"left"}, 0.1, limits)
    assert left.yaw > cam.yaw and left.radius == cam.radius and left.pivot == cam.pivot  # as a drag to the left
    up = cc.key_motion(cam, {"up"}, 0.1, limits)
    assert up.pitch > cam.pitch  # shows the model more from below, as a drag up
    actions.ACTIONS["toggle_camera_mode"](state, limits)
    assert state.camera.mode == "fly"
    cam = state.camera
    turned = cc.key_motion(cam, {"right"}, 0.1, limits)
    np.testing.assert_allclose(cc.camera_position(turned), cc.camera_position(cam), atol=1e-4)  # did not move
    f0, f1 = pose(cam, info)[:3, 2], pose(turned, info)[:3, 2]
    assert np.dot(f1 - f0, pose(cam, info)[:3, 0]) > 0  # looks further right
    assert math.acos(np.clip(np.dot(f0, f1), -1, 1)) == pytest.approx(cc.KeySpeeds().turn_rad_per_s * 0.1, rel=0.05)
    looked_up = cc.key_motion(cam, {"up"}, 0.1, limits)
    assert pose(looked_up, info)[1, 2] > pose(cam, info)[1, 2]
    actions.ACTIONS["toggle_camera_mode"](state, limits)
    assert state.camera.mode == "orbit"


def test_camera_mode_survives_loading_a_model(state, info) -> None:
    state.camera.mode = "fly"
    actions.apply_model(state, info)
    assert state.camera.mode == "fly"


def test_script_hold_presses_keys_for_its_frames(state, limits) -> None:
    runner = ScriptRunner(parse_script('[{"hold": {"keys": ["w", "left"], "frames": 3}}, {"action": "next_seed"}]'))
    seed = state.latent.seed
    held = []
    for frame in range(6):
        runner.advance(state, limits, frame, 0.0, {})
        held.append(runner.held_keys)
    assert held[:4] == [("w", "left")] * 3 + [()]
    assert state.latent.seed == seed + 1 and runner.finished


@pytest.mark.parametrize("bad", ['[{"hold": {"keys": ["x"], "frames": 3}}]', '[{"hold": {"keys": ["w"]}}]',
                                 '[{"hold": {"keys": [], "frames": 3}}]', '[{"hold": {"keys": ["w"], "frames": 0}}]'])
def test_bad_hold_steps_are_rejected(bad) -> None:
    with pytest.raises(ScriptError, match="bad value for 'hold'"):
        parse_script(bad)


# ----------------------------------------------------------------------------------------------------------------------
# Side by side, status line, depth


def test_side_by_side_puts_the_image_large_and_uses_more_of_the_view() -> None:
    w, h = 880.0, 800.0
    tiles = tile_views(w, h, 3)
    big, *small = tiles
    assert big[2] > 2 * small[0][2] - 1e-6 and big[2] > w / 3
    covered = sum(s * s for _, _, s in tiles)
    assert covered > 3 * (w / 3) ** 2 * 1.4  # a row of three would cover (w / 3)^2 each
    for x, y, s in tiles:  # inside the view, no overlaps
        assert 0 <= x and x + s <= w + 1e-6 and 0 <= y and y + s <= h + 1e-6
    assert len({(x, y) for x, y, _ in tiles}) == 3
    wide = tile_views(3000.0, 500.0, 3)  # a very wide view: a row of equal tiles fits best
    assert len({s for _, _, s in wide}) == 1 and wide[0][2] == 500.0
    assert tile_views(800.0, 600.0, 1) == [(100.0, 0.0, 600.0)]


def test_status_line_at_rest_shows_the_frame_time_not_a_zero_rate(cars_generator, state, info) -> None:
    R = ViewerRenderer(cars_generator)
    try:
        result = R.render(RenderScheduler().update(scene_of(state, info), preview_quality(state.render, 32),
                                                   full_quality(state.render), 0.0, 0.1))
    finally:
        R.close()
    state.perf.render_fps = 0.0  # at rest: no frames over the last seconds
    line = report.status_lines(state, True, result, False, "", False)[1]
    assert "0.0 frames/s" not in line and f"frame {result.timings['total']:.0f} ms" in line
    state.perf.render_fps = 12.5
    assert "12.5 frames/s" in report.status_lines(state, True, result, False, "", False)[1]


def test_depth_view_shows_depth_only_where_there_is_something(demo_generator) -> None:
    G = demo_generator
    info = ModelInfo.of(G, "demo")
    state = AppState()
    actions.apply_model(state, info)
    R = ViewerRenderer(G)
    try:
        result = R.render(RenderScheduler().update(scene_of(state, info), preview_quality(state.render, 32),
                                                   full_quality(state.render), 0.0, 0.1))
        with torch.no_grad():
            _, _, opacity = G.render(
                R.latent(result.request.scene.latent)[1],
                camera(camera_defaults(G.config), yaw=state.camera.yaw, pitch=state.camera.pitch),
                **result.request.quality.settings.render_kwargs(G.config), return_opacity=True)
    finally:
        R.close()
    o = opacity[0, 0].numpy()
    empty, solid = o < 0.01, o > 0.9
    assert empty.mean() > 0.2 and solid.mean() > 0.1
    assert (result.depth[empty] >= 245).all()  # empty space: the white background, not the far colour
    assert (result.depth[solid] < 240).any(axis=-1).all()  # the car: colour-mapped depth


def test_a_face_model_opens_frontal() -> None:
    from conftest import FIXTURES

    import eg3d_core

    G = eg3d_core.load_generator(FIXTURES / "tiny_ffhq512" / "network-snapshot.pkl")
    s = AppState()
    limits = actions.apply_model(s, ModelInfo.of(G, "ffhq fixture"))
    assert (s.camera.yaw, s.camera.pitch) == (0.0, 0.0) == (limits.default_yaw, limits.default_pitch)


def test_the_status_line_says_the_path_is_playing(state, limits) -> None:
    from eg3d_core.camera_path import Keyframe

    state.keyframes.keyframes = (Keyframe(0.0, 0.0, seed=1), Keyframe(0.5, 0.0, seed=1))
    actions.ACTIONS["play_path"](state, limits)
    state.keyframes.time = 1.25
    assert "camera path 1.2 s" in "\n".join(report.status_lines(state, True, None, False, "", False))
    actions.ACTIONS["play_path"](state, limits)
    assert "camera path" not in "\n".join(report.status_lines(state, True, None, False, "", False))
