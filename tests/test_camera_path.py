"""Camera paths: the spline's promises (through every keyframe, C1, constant speed, closed loops), editing, our JSON
(round trip and refusals naming the field), latents along a path, and nerfstudio's camera_path.json in and out."""
from __future__ import annotations

import json
import math
from dataclasses import astuple

import numpy as np
import pytest
import torch

from eg3d_core import cameras
from eg3d_core.camera_path import (
    FOV,
    MAX_FILE_BYTES,
    CameraPath,
    Keyframe,
    fov_from_true_vertical,
    from_nerfstudio,
    keyframe_ws,
    load_path,
    path_cameras,
    path_latents,
    path_to_dict,
    save_path,
    to_nerfstudio,
    true_vertical_fov,
    view_camera,
)
from eg3d_core.errors import InputError

DEFAULTS = cameras.CameraDefaults(radius=2.7, pivot=(0.0, 0.0, 0.2), focal=4.2647)


def _path(**kwargs) -> CameraPath:
    return CameraPath((
        Keyframe(0.0, 0.0, duration=1.0),
        Keyframe(0.8, -0.3, radius=2.4, fov=14.0, duration=2.5),
        Keyframe(2.0, 0.2, radius=3.0, duration=0.7),
        Keyframe(-2.6, -0.1, fov=25.0, duration=1.5),
    ), **kwargs)


def _values(path: CameraPath, times) -> np.ndarray:
    """[K, 4] (unwrapped yaw, pitch, radius, fov) of the views at ``times``."""
    views = path.views(times, DEFAULTS)
    out = np.array([[v.yaw, v.pitch, v.radius, v.fov] for v in views])
    out[:, 0] = np.unwrap(out[:, 0])
    return out


def _positions(path: CameraPath, times) -> np.ndarray:
    """Camera positions [K, 3] in float64 (the camera vectors are float32, too coarse for finite differences)."""
    out = []
    for v in path.views(times, DEFAULTS):
        h, p = math.pi / 2 + v.yaw, math.pi / 2 + v.pitch
        phi = math.acos(1 - 2 * p / math.pi)
        out.append([v.radius * math.sin(phi) * math.cos(math.pi - h), v.radius * math.cos(phi),
                    v.radius * math.sin(phi) * math.sin(math.pi - h)])
    return np.array(out)


def test_positions_helper_matches_the_camera_vectors():
    path = _path()
    times = np.linspace(0, path.total_seconds, 7)
    c = torch.cat([view_camera(v, DEFAULTS) for v in path.views(times, DEFAULTS)])
    np.testing.assert_allclose(_positions(path, times), c[:, [3, 7, 11]].double().numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# The spline


@pytest.mark.parametrize("loop", [False, True])
def test_passes_through_every_keyframe_at_its_time(loop):
    path = _path(loop=loop)
    for k, t in zip(path.keyframes, path.keyframe_times, strict=True):
        v = path.view_at(t, DEFAULTS)
        assert v.yaw == pytest.approx(k.yaw, abs=1e-12)
        assert v.pitch == pytest.approx(k.pitch, abs=1e-12)
        assert v.radius == pytest.approx(DEFAULTS.radius if k.radius is None else k.radius, rel=1e-12)
        assert v.fov == pytest.approx(DEFAULTS.fov if k.fov is None else k.fov, rel=1e-12)


def test_c1_at_the_keyframes_and_not_linear():
    path = _path()
    eps = 1e-6
    for t in path.keyframe_times[1:-1]:
        left = (_values(path, [t])[0] - _values(path, [t - eps])[0]) / eps
        right = (_values(path, [t + eps])[0] - _values(path, [t])[0]) / eps
        np.testing.assert_allclose(left, right, atol=1e-4, rtol=1e-4)
        assert np.abs(left).max() > 0.01  # the camera is moving there (a stop would make C1 trivial)
    # A spline, not straight lines: halfway between two keyframes is not their mean.
    t0, t1 = path.keyframe_times[1:3]
    mid = _values(path, [(t0 + t1) / 2])[0]
    assert abs(mid[0] - (0.8 + 2.0) / 2) > 1e-3


def test_open_path_starts_and_ends_at_rest():
    path = _path()
    eps = 1e-5
    for t, step in ((0.0, eps), (path.total_seconds, -eps)):
        d = np.abs(_positions(path, [t + step]) - _positions(path, [t])).max() / eps
        assert d < 1e-3


def test_loop_closes_smoothly():
    path = _path(loop=True)
    total = path.total_seconds
    assert total == pytest.approx(1.0 + 2.5 + 0.7 + 1.5)
    np.testing.assert_allclose(_positions(path, [total]), _positions(path, [0.0]), atol=1e-9)
    eps = 1e-6
    before = (_positions(path, [total - eps]) - _positions(path, [total - 2 * eps])) / eps
    after = (_positions(path, [eps]) - _positions(path, [0.0])) / eps
    np.testing.assert_allclose(before, after, rtol=1e-3, atol=1e-4)
    assert np.abs(after).max() > 0.01
    # The last frame is one step short of the start, so the video loops without a repeated frame.
    times = path.frame_times()
    assert len(times) == round(total * path.fps) and times[-1] < total


def test_yaw_goes_the_short_way_round():
    path = CameraPath((Keyframe(3.0, 0.0), Keyframe(-3.0, 0.0)))
    mid = path.view_at(path.total_seconds / 2, DEFAULTS)
    assert abs(abs(mid.yaw) - math.pi) < 0.05  # through the back (pi), not through the front (0)
    # A full turn in a loop: four quarter turns, the closing one included.
    turn = CameraPath(tuple(Keyframe(y, -0.2, duration=1.0) for y in (0.0, math.pi / 2, -math.pi, -math.pi / 2)),
                      fps=20, loop=True)
    yaw = np.unwrap([v.yaw for v in turn.views(turn.frame_times(), DEFAULTS)])
    assert np.all(np.diff(yaw) > 0)
    assert yaw[-1] - yaw[0] == pytest.approx(2 * math.pi * (1 - 1 / turn.num_frames), rel=0.02)


def test_constant_speed_moves_the_same_distance_every_frame():
    path = _path(fps=30)
    steps = lambda p: np.linalg.norm(np.diff(_positions(p, p.frame_times()), axis=0), axis=1)  # noqa: E731
    uneven = steps(path)
    even = steps(_path(fps=30, constant_speed=True))
    assert uneven.std() / uneven.mean() > 0.3  # keyframe timing: the speed varies a lot
    assert even.std() / even.mean() < 0.01  # arc length: within 1 % (ARC_SAMPLES linear pieces per segment)
    assert len(even) == len(uneven)
    # Same start, same end, same duration.
    cs = _path(constant_speed=True)
    np.testing.assert_allclose(_positions(cs, [0.0, cs.total_seconds]), _positions(path, [0.0, path.total_seconds]),
                               atol=1e-9)


def test_constant_speed_of_a_camera_that_does_not_move_keeps_the_keyframe_times():
    path = CameraPath((Keyframe(0.2, 0.1, fov=10.0), Keyframe(0.2, 0.1, fov=30.0)), constant_speed=True)
    assert path.view_at(1.0, DEFAULTS).fov == pytest.approx(20.0)


def test_no_coordinate_overshoots_its_keyframes():
    """Uneven steps and durations that make plain Catmull-Rom overshoot: every coordinate stays within the range of
    the two keyframes around it, a reversal stops at its keyframe, and two equal keyframes hold the camera still."""
    path = CameraPath((Keyframe(0.0, -1.0, radius=2.0, fov=10.0, duration=0.2),
                       Keyframe(1.2, -1.4, radius=1.0, fov=FOV[1] - 1, duration=3.0),
                       Keyframe(1.3, -1.48, radius=1.05, fov=FOV[1], duration=1.0),
                       Keyframe(1.3, -1.48, radius=1.05, fov=FOV[1], duration=1.0),
                       Keyframe(0.2, 0.5, radius=3.0, fov=20.0)))
    times = np.linspace(0, path.total_seconds, 2001)
    vals = _values(path, times)
    keys = _values(path, path.keyframe_times)
    segment = np.clip(np.searchsorted(path.keyframe_times, times, side="right") - 1, 0, len(keys) - 2)
    lo = np.minimum(keys[segment], keys[segment + 1]) - 1e-12
    hi = np.maximum(keys[segment], keys[segment + 1]) + 1e-12
    assert np.all((vals >= lo) & (vals <= hi))
    hold = (times >= path.keyframe_times[2]) & (times <= path.keyframe_times[3])
    np.testing.assert_allclose(vals[hold], np.broadcast_to(keys[2], vals[hold].shape), atol=1e-12)
    # Unlimited Catmull-Rom tangents overshoot on these keyframes (the FOV past its maximum): the case is a real one.
    t, fov = np.array(path.keyframe_times), keys[:, 3]
    dt, slope = np.diff(t), np.diff(fov) / np.diff(t)
    tangent = np.zeros_like(fov)
    tangent[1:-1] = (dt[1:] * slope[:-1] + dt[:-1] * slope[1:]) / (dt[:-1] + dt[1:])
    u = np.linspace(0, 1, 201)
    h = dt[1]
    raw = ((2 * u**3 - 3 * u**2 + 1) * fov[1] + (u**3 - 2 * u**2 + u) * h * tangent[1]
           + (-2 * u**3 + 3 * u**2) * fov[2] + (u**3 - u**2) * h * tangent[2])
    assert raw.max() > FOV[1] + 1


def test_loop_time_wraps_and_open_time_clamps():
    loop = _path(loop=True)
    total = loop.total_seconds
    wrapped, first = loop.view_at(total + 0.6, DEFAULTS), loop.view_at(0.6, DEFAULTS)
    assert (wrapped.index0, wrapped.index1) == (first.index0, first.index1)
    np.testing.assert_allclose(astuple(wrapped)[1:], astuple(first)[1:], rtol=1e-12, atol=1e-12)
    path = _path()
    end = path.view_at(path.total_seconds, DEFAULTS)
    assert path.view_at(path.total_seconds + 5, DEFAULTS).yaw == end.yaw
    assert path.view_at(-1, DEFAULTS).yaw == path.view_at(0, DEFAULTS).yaw


def test_latent_blend_indices_and_weights():
    path = _path()
    v = path.view_at(1.0 + 2.5 / 2, DEFAULTS)
    assert (v.index0, v.index1) == (1, 2) and v.weight == pytest.approx(0.5)
    loop = _path(loop=True)
    v = loop.view_at(loop.total_seconds - 0.75, DEFAULTS)
    assert (v.index0, v.index1) == (3, 0) and v.weight == pytest.approx(0.5)


def test_unset_radius_and_fov():
    path = CameraPath((Keyframe(0.0, 0.0), Keyframe(0.5, 0.0)))
    v = path.view_at(1.0)
    assert v.radius is None and v.fov is None
    with pytest.raises(InputError, match="radius"):
        _path().view_at(0.5)  # mixes set and unset radii: needs the model's defaults


def test_frames_and_timing():
    path = _path(fps=10)
    assert path.total_seconds == pytest.approx(4.2)
    assert path.num_frames == 43
    np.testing.assert_allclose(path.frame_times()[[0, -1]], [0.0, 4.2])
    assert CameraPath((Keyframe(0.0, 0.0),)).num_frames == 1
    assert CameraPath().num_frames == 0
    with pytest.raises(InputError, match="no keyframes"):
        CameraPath().view_at(0.0)
    with pytest.raises(InputError, match="frames long"):
        CameraPath((Keyframe(0, 0, duration=3600.0),) * 3, fps=240)


def test_editing_returns_new_paths():
    path = _path()
    a, b, c, d = path.keyframes
    new = Keyframe(0.1, 0.1)
    assert path.insert(1, new).keyframes == (a, new, b, c, d)
    assert path.insert(4, new).keyframes == (a, b, c, d, new)
    assert path.append(new).keyframes == (a, b, c, d, new)
    assert path.delete(0).keyframes == (b, c, d)
    assert path.delete(-1).keyframes == (a, b, c)
    assert path.move(0, 2).keyframes == (b, c, a, d)
    assert path.move(3, 0).keyframes == (d, a, b, c)
    assert path.replace(2, new).keyframes == (a, b, new, d)
    assert path.keyframes == (a, b, c, d)  # untouched
    with pytest.raises(InputError, match="out of range"):
        path.delete(4)


@pytest.mark.parametrize("kwargs, field", [
    ({"yaw": float("nan")}, "yaw"), ({"pitch": 1.6}, "pitch"), ({"radius": -1.0}, "radius"),
    ({"fov": 170.0}, "fov"), ({"seed": -1}, "seed"), ({"psi": 3.0}, "psi"), ({"cutoff": 1.5}, "cutoff"),
    ({"duration": 0.0}, "duration"), ({"seed": 1, "ws": torch.zeros(1, 2, 3)}, "seed or ws"),
    ({"ws": torch.zeros(2, 3)}, "ws"), ({"ws": torch.full((1, 2, 3), float("inf"))}, "ws"),
])
def test_keyframe_refuses_bad_values(kwargs, field):
    base = {"yaw": 0.0, "pitch": 0.0}
    with pytest.raises(InputError, match=field):
        Keyframe(**{**base, **kwargs})


# ----------------------------------------------------------------------------------------------------------------
# Our JSON


def _with_latents() -> CameraPath:
    ws = torch.randn(1, 3, 5, generator=torch.Generator().manual_seed(0))
    return CameraPath((Keyframe(0.1, -0.2, seed=7, psi=0.5, cutoff=4, duration=1.5),
                       Keyframe(-0.4, 0.3, radius=2.2, fov=30.0, ws=ws),
                       Keyframe(1.0, 0.0)), fps=24, constant_speed=True, loop=True)


def test_json_round_trip(tmp_path):
    path = _with_latents()
    file = save_path(path, tmp_path / "path.json")
    data = json.loads(file.read_text())
    assert data["format"] == "eg3d-camera-path" and data["version"] == 1
    loaded = load_path(file)
    assert loaded == path
    assert torch.equal(loaded.keyframes[1].ws, path.keyframes[1].ws)
    assert loaded != path.replace(1, Keyframe(-0.4, 0.3, radius=2.2, fov=30.0, ws=path.keyframes[1].ws + 1e-6))
    assert [p.name for p in tmp_path.iterdir()] == ["path.json"]  # no temporaries left


def _broken(mutate) -> dict:
    data = path_to_dict(_with_latents())
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d.update(fps=0), "fps"),
    (lambda d: d.update(loop="yes"), "loop"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d.update(keyframes={}), "keyframes must be a list"),
    (lambda d: d["keyframes"][1].update(pitch=2.0), r"keyframes\[1\]\.pitch"),
    (lambda d: d["keyframes"][2].pop("yaw"), r"keyframes\[2\]\.yaw is missing"),
    (lambda d: d["keyframes"][0].update(duration="1"), r"keyframes\[0\]\.duration"),
    (lambda d: d["keyframes"][0].update(seed=True), r"keyframes\[0\]\.seed"),
    (lambda d: d["keyframes"][0].update(colour=1), r"keyframes\[0\]: unknown field 'colour'"),
    (lambda d: d["keyframes"][1]["ws"].update(shape=[1, 3, 6]), r"keyframes\[1\]\.ws\.data holds 15 values"),
    (lambda d: d["keyframes"][1]["ws"].update(data="!!"), r"keyframes\[1\]\.ws\.data is not valid base64"),
    (lambda d: d["keyframes"][1]["ws"].update(dtype="float16"), r"keyframes\[1\]\.ws\.dtype"),
])
def test_load_refuses_bad_files_naming_the_field(tmp_path, mutate, message):
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(_broken(mutate)))
    with pytest.raises(InputError, match=message) as e:
        load_path(file)
    assert "\n" not in str(e.value) and str(file) in str(e.value)


def test_save_refuses_a_path_too_large_to_load_back(tmp_path):
    ws = torch.zeros(1, 1024, 1024)  # the most one keyframe's ws may hold: 5.6 MB as base64
    path = CameraPath(tuple(Keyframe(0.0, 0.0, ws=ws) for _ in range(MAX_FILE_BYTES // (4 * ws.numel()) + 1)))
    with pytest.raises(InputError, match="more than a path file may hold"):
        save_path(path, tmp_path / "big.json")
    assert list(tmp_path.iterdir()) == []
    small = path.with_keyframes(path.keyframes[:2])
    assert load_path(save_path(small, tmp_path / "ok.json")) == small


def test_load_refuses_non_json_nan_and_oversized_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "eg3d-camera-path", "version": 1, "keyframes": [{"yaw": NaN, "pitch": 0}]}')
    with pytest.raises(InputError, match="NaN"):
        load_path(bad)
    bad.write_text(json.dumps(path_to_dict(_with_latents()))[:-20])
    with pytest.raises(InputError, match="not a JSON camera path"):
        load_path(bad)
    with open(bad, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InputError, match="more than"):
        load_path(bad)
    with pytest.raises(InputError, match="no such"):
        load_path(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------------------------------
# Cameras and latents with a model


def test_path_cameras_are_the_keyframe_cameras_at_keyframes(cars_generator):
    G = cars_generator
    defaults = cameras.camera_defaults(G.config)
    path = CameraPath((Keyframe(0.3, -0.2, duration=1.0), Keyframe(-0.5, 0.1, radius=2.0, fov=30.0)), fps=5)
    c = path_cameras(path, G.config)
    assert c.shape == (path.num_frames, 25) == (6, 25)
    torch.testing.assert_close(c[0], cameras.camera(defaults, 0.3, -0.2)[0])
    torch.testing.assert_close(c[-1], cameras.camera(defaults, -0.5, 0.1, radius=2.0,
                                                     focal=cameras.focal_from_fov(30.0))[0])


def test_path_latents_blend_in_w(cars_generator):
    G = cars_generator
    own = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1))
    current = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(2))
    path = CameraPath((Keyframe(0.0, 0.0, seed=3, psi=0.6, duration=1.0), Keyframe(0.2, 0.0, ws=own, duration=1.0),
                       Keyframe(0.4, 0.0, duration=1.0), Keyframe(0.6, 0.0)), fps=4)
    frames = list(path_latents(path, G, current))
    assert len(frames) == path.num_frames == 13
    seed_ws = keyframe_ws(path.keyframes[0], G)
    torch.testing.assert_close(frames[0], seed_ws)
    torch.testing.assert_close(frames[2], torch.lerp(seed_ws, own, 0.5))
    torch.testing.assert_close(frames[4], own)
    torch.testing.assert_close(frames[8], current)
    assert frames[9] is frames[10] is frames[12]  # two keyframes on the current latent: the same ws, unblended
    with pytest.raises(InputError, match="keyframe 2 has no latent"):
        next(path_latents(path, G))
    bad = path.replace(1, Keyframe(0.2, 0.0, ws=torch.zeros(1, G.num_ws + 1, G.w_dim)))
    with pytest.raises(InputError, match=r"keyframe 1: ws of shape"):
        next(path_latents(bad, G, current))


# ----------------------------------------------------------------------------------------------------------------
# nerfstudio


def test_true_vertical_fov():
    fov = 30.0
    angle = true_vertical_fov(fov)
    assert math.tan(math.radians(angle) / 2) == pytest.approx(0.5 / cameras.focal_from_fov(fov))
    assert fov_from_true_vertical(angle) == pytest.approx(fov)


def test_to_nerfstudio_writes_opengl_cameras_looking_at_the_pivot(cars_generator):
    config = cars_generator.config
    defaults = cameras.camera_defaults(config)
    path = _path(fps=10)
    data = to_nerfstudio(path, config, resolution=256)
    assert data["render_width"] == data["render_height"] == 256 and data["camera_type"] == "perspective"
    assert data["fps"] == 10 and data["is_cycle"] is False
    assert len(data["camera_path"]) / data["seconds"] == pytest.approx(10)  # ns-render's frame rate: ours
    assert len(data["camera_path"]) == path.num_frames and len(data["keyframes"]) == 4
    json.dumps(data, allow_nan=False)  # plain JSON
    ours = path_cameras(path, config).double().numpy()
    for frame, c in zip(data["camera_path"], ours, strict=True):
        m = np.array(frame["camera_to_world"]).reshape(4, 4)  # row-major
        pose = c[:16].reshape(4, 4)
        np.testing.assert_allclose(m[:3, 3], pose[:3, 3], atol=1e-6)  # same position
        np.testing.assert_allclose(m[:3, 0], pose[:3, 0], atol=1e-6)  # x right in both
        np.testing.assert_allclose(m[:3, 1], -pose[:3, 1], atol=1e-6)  # OpenGL y up = -OpenCV y (down)
        to_pivot = np.asarray(defaults.pivot) - m[:3, 3]
        np.testing.assert_allclose(-m[:3, 2], to_pivot / np.linalg.norm(to_pivot), atol=1e-6)  # looks down -z
        # nerfstudio's focal: height / 2 / tan(fov / 2) pixels; ours: focal * height.
        assert 0.5 / math.tan(math.radians(frame["fov"]) / 2) == pytest.approx(c[16 + 4], rel=1e-6)
        assert frame["aspect"] == 1.0


def test_nerfstudio_round_trip(cars_generator):
    config = cars_generator.config
    path = _path(loop=True)
    back = from_nerfstudio(to_nerfstudio(path, config, 128), config)
    assert back.loop and back.fps == path.fps and len(back.keyframes) == len(path.keyframes)
    defaults = cameras.camera_defaults(config)
    for a, b in zip(path.keyframes, back.keyframes, strict=True):
        assert b.yaw == pytest.approx(a.yaw, abs=1e-5) and b.pitch == pytest.approx(a.pitch, abs=1e-5)
        assert b.radius == pytest.approx(a.radius or defaults.radius, rel=1e-5)
        assert b.fov == pytest.approx(a.fov or defaults.fov, rel=1e-5)
        assert b.duration == pytest.approx(a.duration)
    torch.testing.assert_close(path_cameras(back, config), path_cameras(path, config), atol=1e-5, rtol=1e-5)


def test_from_nerfstudio_dense_path_and_refusals(cars_generator):
    config = cars_generator.config
    data = to_nerfstudio(_path(fps=5), config, 64)
    dense = {k: v for k, v in data.items() if k != "keyframes"}
    path = from_nerfstudio(dense, config)
    assert len(path.keyframes) == len(data["camera_path"])
    assert all(k.duration == pytest.approx(0.2) for k in path.keyframes)
    torch.testing.assert_close(path_cameras(path, config)[::path.fps], path_cameras(_path(fps=5), config)[::5],
                               atol=1e-5, rtol=1e-5)
    # A camera turned away from the model's pivot cannot be an EG3D camera.
    turned = json.loads(json.dumps(dense))
    m = np.array(turned["camera_path"][3]["camera_to_world"]).reshape(4, 4)
    c, s = math.cos(0.5), math.sin(0.5)
    m[:3, :3] = m[:3, :3] @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    turned["camera_path"][3]["camera_to_world"] = m.reshape(-1).tolist()
    with pytest.raises(InputError, match=r"camera_path\[3\]: the camera looks 28\.6 degrees away"):
        from_nerfstudio(turned, config)
    assert len(from_nerfstudio(turned, config, max_deviation_deg=None).keyframes) == len(path.keyframes)
    # frames=True takes the frames even when the file has keyframes.
    assert len(from_nerfstudio(data, config, frames=True).keyframes) == len(data["camera_path"])
    assert len(from_nerfstudio(data, config).keyframes) == len(data["keyframes"]) == 4
    broken = json.loads(json.dumps(dense))
    broken["camera_path"][1]["camera_to_world"] = broken["camera_path"][1]["camera_to_world"][:12]
    with pytest.raises(InputError, match=r"camera_path\[1\]\.camera_to_world must be a list of 16"):
        from_nerfstudio(broken, config)
    with pytest.raises(InputError, match="camera_type 'fisheye'"):
        from_nerfstudio({**dense, "camera_type": "fisheye"}, config)
    with pytest.raises(InputError, match="neither keyframes nor camera_path"):
        from_nerfstudio({"fps": 30}, config)
