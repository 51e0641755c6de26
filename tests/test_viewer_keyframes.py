"""The viewer's camera paths without GL: keyframes from the current view, the path's views and latents applied to the
state, playback, scrubbing and going to a keyframe, the panel's requests (add, save, load: the JSON round trip) and
the MP4 rendered on the video thread (progress, done, cancelled without a file)."""
from __future__ import annotations

import math
import queue
import types

import pytest
import torch

from eg3d_core.camera_path import CameraPath, Keyframe, load_path
from eg3d_viewer import actions, events, keyframes
from eg3d_viewer import camera_controller as cc
from eg3d_viewer.model_info import ModelInfo
from eg3d_viewer.path_video import PathVideoWorker
from eg3d_viewer.renderer import ViewerRenderer, compose_ws
from eg3d_viewer.requests import full_quality, latent_spec, preview_quality, scene_of
from eg3d_viewer.scheduler import RenderScheduler
from eg3d_viewer.state import AppState
from eg3d_viewer.worker import VideoFinished, VideoProgress


def render_full(G, state: AppState, info: ModelInfo):
    R = ViewerRenderer(G)
    try:
        sch = RenderScheduler()
        q = (preview_quality(state.render, 32), full_quality(state.render))
        sch.update(scene_of(state, info), *q, 0.0, 0.1)
        return R.render(sch.update(scene_of(state, info), *q, 1.0, 0.1))
    finally:
        R.close()


def app_for(G, state: AppState, info: ModelInfo, video: PathVideoWorker | None = None) -> types.SimpleNamespace:
    """What ``keyframes.handle_requests`` and the event handlers read of the app."""
    return types.SimpleNamespace(state=state, info=info, generator=G, shown=None, video=video)


# ----------------------------------------------------------------------------------------------------------------------
# Keyframes from the view


def test_a_plain_seed_becomes_a_seed_keyframe_with_the_camera(state, info) -> None:
    state.camera.yaw, state.camera.pitch, state.camera.radius, state.camera.fov = 0.5, -0.2, 2.0, 30.0
    state.latent.seed, state.truncation.psi = 7, 0.6
    state.keyframes.duration = 1.5
    k = keyframes.keyframe_of(state, info, None)
    assert (k.yaw, k.pitch, k.radius, k.fov, k.duration) == (0.5, -0.2, 2.0, 30.0, 1.5)
    assert (k.seed, k.psi, k.cutoff, k.ws) == (7, pytest.approx(0.6), None, None)


def test_a_mixed_latent_becomes_the_ws_on_screen(cars_generator, state, info) -> None:
    state.latent.seed, state.latent.seed_b, state.latent.mix = 3, 4, 0.25
    with pytest.raises(keyframes.InputError, match="still rendering"):
        keyframes.keyframe_of(state, info, None)
    shown = render_full(cars_generator, state, info)
    k = keyframes.keyframe_of(state, info, shown)
    assert k.seed is None and torch.equal(k.ws, compose_ws(cars_generator, latent_spec(state, info)))
    state.latent.mix = 0.5  # the frame on screen is of another latent now
    with pytest.raises(keyframes.InputError):
        keyframes.keyframe_of(state, info, shown)


# ----------------------------------------------------------------------------------------------------------------------
# The path's views on the state


def two_seed_path(info: ModelInfo, **kwargs) -> CameraPath:
    return CameraPath((Keyframe(0.6, -0.2, radius=1.8, fov=40.0, seed=1, psi=0.5, duration=2.0),
                       Keyframe(-0.6, 0.1, radius=1.5, fov=30.0, seed=2, psi=0.9, duration=2.0)), **kwargs)


def test_the_state_follows_the_path_camera_and_blends_seeds(state, info, limits) -> None:
    path = two_seed_path(info)
    view = path.view_at(0.5, info.camera)
    keyframes.apply_view(state, info, limits, path, view)
    c = state.camera
    assert (c.yaw, c.pitch, c.radius, c.fov) == pytest.approx((view.yaw, view.pitch, view.radius, view.fov))
    assert c.pivot == tuple(info.camera.pivot)
    lat = state.latent
    assert (lat.custom, lat.seed, lat.seed_b, lat.mix) == (None, 1, 2, pytest.approx(view.weight))
    assert 0 < view.weight < 1 and state.truncation.psi == pytest.approx(0.5 + 0.4 * view.weight)
    assert state.truncation.cutoff == info.num_ws  # cutoff None: every w truncated


def test_ws_keyframes_blend_in_w_through_the_custom_latent(cars_generator, state, info, limits) -> None:
    ws0, ws1 = torch.randn(1, info.num_ws, info.w_dim), torch.randn(1, info.num_ws, info.w_dim)
    path = CameraPath((Keyframe(0.0, 0.0, ws=ws0), Keyframe(0.3, 0.0, ws=ws1), Keyframe(0.6, 0.0, seed=5)))
    view = path.view_at(0.7, info.camera)
    keyframes.apply_view(state, info, limits, path, view)
    assert torch.allclose(state.latent.custom.ws, torch.lerp(ws0, ws1, view.weight)) and state.latent.mix == 0
    # ws -> seed: the custom latent mixed towards seed B, i.e. the same blend in W as the library's path_latents.
    view = path.view_at(3.0, info.camera)
    keyframes.apply_view(state, info, limits, path, view)
    lat = state.latent
    assert torch.equal(lat.custom.ws, ws1) and lat.seed_b == 5 and lat.mix == pytest.approx(view.weight)
    shown = compose_ws(cars_generator, latent_spec(state, info))
    from eg3d_core.camera_path import keyframe_ws
    expected = torch.lerp(ws1, keyframe_ws(path.keyframes[2], cars_generator), view.weight)
    assert torch.allclose(shown, expected, atol=1e-5)


def test_playback_advances_stops_at_the_end_and_loops(state, info, limits) -> None:
    ks = state.keyframes
    ks.keyframes = two_seed_path(info).keyframes
    actions.ACTIONS["play_path"](state, limits)
    assert ks.playing and ks.time == 0
    keyframes.update(state, info, limits, 0.5)
    view = two_seed_path(info).view_at(0.5, info.camera)
    assert ks.time == pytest.approx(0.5) and state.camera.yaw == pytest.approx(view.yaw)
    for _ in range(10):
        keyframes.update(state, info, limits, 0.5)
    assert not ks.playing and ks.time == pytest.approx(2.0)  # an open path stops at its end, on the last keyframe
    assert ks.selected == 1  # the list marks the keyframe nearest the playhead
    assert (state.camera.yaw, state.latent.seed) == (pytest.approx(-0.6), 2)
    actions.ACTIONS["play_path"](state, limits)  # from the end: starts again
    assert ks.playing and ks.time == 0
    ks.loop = True  # a loop returns to the first keyframe over the last one's duration, and keeps playing
    for _ in range(9):
        keyframes.update(state, info, limits, 0.5)
    assert ks.playing and ks.time == pytest.approx(0.5)


def test_a_playing_path_is_rendered_as_previews_and_its_end_at_full_quality(state, info, limits) -> None:
    """Playback moves the camera every frame, so the scheduler sends previews (low resolution while moving, as for a
    drag) and the full-quality frame once the path has stopped and rested."""
    ks = state.keyframes
    ks.keyframes = two_seed_path(info).keyframes
    actions.ACTIONS["play_path"](state, limits)
    sch = RenderScheduler()
    prev, full = preview_quality(state.render, 32), full_quality(state.render)
    kinds, now = [], 0.0
    while now < 3.0:
        keyframes.update(state, info, limits, 1 / 30)
        r = sch.update(scene_of(state, info), prev, full, now, state.render.rest_delay)
        kinds.append(None if r is None else "preview" if r.quality.preview else "full")
        now += 1 / 30
    playing = round(2.0 * 30)
    assert set(kinds[:playing]) == {"preview"}  # one preview per frame while the path plays
    assert kinds[playing:].count("full") == 1 and kinds.index("full") > playing
    assert not ks.playing


def test_going_to_a_keyframe_and_scrubbing(state, info, limits) -> None:
    ks = state.keyframes
    ks.keyframes = two_seed_path(info).keyframes
    ks.goto_requested = 1
    keyframes.update(state, info, limits, 0.1)
    assert ks.selected == 1 and ks.goto_requested is None and ks.time == 2.0
    assert (state.camera.yaw, state.camera.radius, state.latent.seed, state.latent.mix) == (pytest.approx(-0.6), 1.5, 2, 0.0)
    ks.time, ks.scrubbed = 1.0, True
    keyframes.update(state, info, limits, 0.1)
    assert not ks.scrubbed and state.camera.yaw == pytest.approx(two_seed_path(info).view_at(1.0).yaw)
    ks.constant_speed = True  # the option changes the path: the same time is another place
    ks.time, ks.scrubbed = 0.5, True
    keyframes.update(state, info, limits, 0.1)
    assert state.camera.yaw == pytest.approx(two_seed_path(info, constant_speed=True).view_at(0.5, info.camera).yaw)
    assert state.camera.yaw != pytest.approx(two_seed_path(info).view_at(0.5, info.camera).yaw)


# ----------------------------------------------------------------------------------------------------------------------
# The panel's requests


def test_keyframes_saved_and_loaded_round_trip(cars_generator, state, info, limits, tmp_path) -> None:
    app = app_for(cars_generator, state, info)
    ks = state.keyframes
    for yaw_drag in (0, 150, 150):
        state.camera = cc.orbit(state.camera, yaw_drag, -20, limits)
        actions.ACTIONS["add_keyframe"](state, limits)
        keyframes.handle_requests(app)
        actions.ACTIONS["next_seed"](state, limits)
    assert len(ks.keyframes) == 3 and not ks.error, ks.message
    assert [k.seed for k in ks.keyframes] == [0, 1, 2] and ks.selected == 2
    ks.keyframes = (*ks.keyframes[:1], ks.keyframes[1].__class__(**{**vars(ks.keyframes[1]), "duration": 0.5}),
                    ks.keyframes[2])
    ks.constant_speed, ks.fps = True, 24
    saved = ks.keyframes
    ks.file = str(tmp_path / "paths" / "p.json")
    actions.ACTIONS["save_path"](state, limits)
    keyframes.handle_requests(app)
    assert not ks.error and "saved 3 keyframes" in ks.message
    assert load_path(ks.file) == keyframes.build_path(ks)
    ks.keyframes, ks.constant_speed, ks.fps = (), False, 30
    actions.ACTIONS["load_path"](state, limits)
    keyframes.handle_requests(app)
    assert not ks.error and ks.keyframes == saved and (ks.constant_speed, ks.fps) == (True, 24)
    keyframes.update(state, info, limits, 0.1)  # the loaded path's first keyframe is shown
    assert state.camera.yaw == pytest.approx(saved[0].yaw) and state.latent.seed == 0


def test_bad_requests_are_one_line_messages(cars_generator, state, info, limits, tmp_path) -> None:
    app = app_for(cars_generator, state, info)
    ks = state.keyframes
    ks.file = str(tmp_path / "missing.json")
    actions.ACTIONS["load_path"](state, limits)
    keyframes.handle_requests(app)
    assert ks.error and "no such camera path file" in ks.message and "\n" not in ks.message
    actions.ACTIONS["save_path"](state, limits)
    keyframes.handle_requests(app)
    assert ks.error and "no keyframes" in ks.message
    bad = tmp_path / "other_model.json"
    from eg3d_core.camera_path import save_path
    save_path(CameraPath((Keyframe(0.0, 0.0, ws=torch.zeros(1, 3, 8)),)), bad)
    ks.file = str(bad)
    actions.ACTIONS["load_path"](state, limits)
    keyframes.handle_requests(app)
    assert ks.error and "ws of shape [1, 3, 8]" in ks.message and ks.keyframes == ()


class CancelOnStart(queue.Queue):
    """Cancels the video as soon as it reports its start (on the worker's thread, before its first frame)."""

    worker: PathVideoWorker

    def put(self, item, block=True, timeout=None):
        super().put(item, block, timeout)
        if isinstance(item, VideoProgress) and item.done == 0:
            self.worker.cancel()


def drain(q: queue.Queue, app) -> list:
    out = []
    while True:
        ev = q.get(timeout=300)
        events.HANDLERS[type(ev)](app, ev, 0.0)
        out.append(ev)
        if isinstance(ev, VideoFinished):
            return out


def test_the_path_renders_to_an_mp4_on_the_video_thread_and_cancels_without_a_file(cars_generator, state, info,
                                                                                    limits, tmp_path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    ks = state.keyframes
    ks.keyframes = (Keyframe(0.5, -0.2, seed=1, duration=0.2), Keyframe(-0.5, -0.2, seed=2))
    ks.fps, ks.video_file = 10, str(tmp_path / "video" / "path.mp4")
    state.render.full_resolution, state.render.full_samples, state.render.full_importance = 16, 4, 0
    q: queue.Queue = queue.Queue()
    worker = PathVideoWorker(q)
    worker.start()
    try:
        app = app_for(cars_generator, state, info, worker)
        actions.ACTIONS["render_path_video"](state, limits)
        keyframes.handle_requests(app)
        assert ks.busy and "rendering 3 frames" in ks.message
        got = drain(q, app)
        progress = [(e.done, e.total) for e in got if isinstance(e, VideoProgress)]
        assert progress[0] == (0, 3) and progress[-1] == (3, 3)
        assert not ks.busy and not ks.error and "3 frames at 10 fps" in ks.message, ks.message
        assert (tmp_path / "video" / "path.mp4").stat().st_size > 0
    finally:
        worker.close()
    q2 = CancelOnStart()
    worker = PathVideoWorker(q2)
    q2.worker = worker
    worker.start()
    try:
        app = app_for(cars_generator, state, info, worker)
        ks.video_file = str(tmp_path / "video" / "cancelled.mp4")
        actions.ACTIONS["render_path_video"](state, limits)
        keyframes.handle_requests(app)
        drain(q2, app)
        assert not ks.busy and not ks.error and "cancelled" in ks.message
        assert sorted(p.name for p in (tmp_path / "video").iterdir()) == ["path.mp4"]  # nothing left behind
    finally:
        worker.close()
    assert math.isfinite(ks.progress)
