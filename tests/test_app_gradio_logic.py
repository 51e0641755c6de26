"""The web demo's logic (eg3d_core.apps.webapp) in-process, on the tiny random fixture: validation, cache, files."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are slow on a shared CPU

import math  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

import eg3d_core  # noqa: E402
from eg3d_core.apps import webapp  # noqa: E402
from eg3d_core.apps.webapp import (  # noqa: E402
    BusyError,
    Caller,
    DemoModel,
    InputError,
    Lane,
    Limits,
    OutputDir,
    Quota,
    parse_render,
)
from eg3d_core.inversion import InversionSettings  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_cars128" / "network-snapshot.pkl"


@pytest.fixture(scope="module")
def model() -> DemoModel:
    G = eg3d_core.load_generator(FIXTURE)
    return DemoModel(G, cache_size=2, output_dir=OutputDir(keep=2, prefix="eg3d-test-webapp-"))


# ----------------------------------------------------------------------------------------------------------------------
# Parsing


def test_parse_accepts_numbers_and_numeric_strings() -> None:
    req = parse_render(Limits(), "42", "0.5", 10, -5.0, 30, "all", 7.0, "reduced", "64")
    assert req == webapp.RenderRequest(seed=42, psi=0.5, yaw=10.0, pitch=-5.0, fov=30.0, output="all", cutoff=7,
                                       precision="reduced", resolution=64)
    assert parse_render(Limits(), 0).fov is None  # optional values default to the model's own


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": "abc"}, "seed must be an integer in [0, 4294967295], got 'abc'"),
    ({"seed": -1}, "seed must be an integer"),
    ({"seed": 2**32}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"seed": None}, "seed must be an integer"),
    ({"seed": 0, "psi": math.nan}, "psi must be a number in [-1, 2]"),
    ({"seed": 0, "yaw": "left"}, "yaw must be a number in [-180, 180]"),
    ({"seed": 0, "pitch": 90}, "pitch must be a number in [-85, 85]"),
    ({"seed": 0, "fov": 0}, "fov must be a number in [5, 120]"),
    ({"seed": 0, "output": "png"}, "output must be one of image, raw, depth, all"),
    ({"seed": 0, "precision": "fp16"}, "precision must be one of fp32, reduced"),
    ({"seed": 0, "resolution": 100_000}, "resolution must be an integer in [16, 128], got 100000"),
    ({"seed": 0, "cutoff": 15}, "cutoff must be an integer in [0, 14]"),
])
def test_parse_rejects_bad_values_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_render(Limits(), **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InputError, match=r"\.\.\.$"):
        webapp.parse_int("seed", "x" * 10_000, (0, 1))


def test_limits_follow_the_model(model: DemoModel) -> None:
    assert model.limits.cutoff == (0, model.G.num_ws)
    assert model.limits.resolution == (16, 128)  # twice the fixture's 64
    assert model.info()["preset"] == "custom, shapenetcars128-64-like"


# ----------------------------------------------------------------------------------------------------------------------
# Rendering and the cache


def test_render_outputs_and_sizes(model: DemoModel) -> None:
    S = model.G.img_resolution
    sizes = {}
    for output in webapp.OUTPUTS:
        res = model.render(parse_render(model.limits, 3, output=output, resolution=32))
        assert res.picture.dtype == np.uint8 and res.depth.shape == (32, 32, 3)
        sizes[output] = res.picture.shape
    assert sizes == {"image": (S, S, 3), "raw": (32, 32, 3), "depth": (32, 32, 3), "all": (S, 3 * S, 3)}


def test_camera_changes_hit_the_cache_and_lru_is_bounded(model: DemoModel) -> None:
    first = model.render(parse_render(model.limits, 11, psi=0.6))
    moved = model.render(parse_render(model.limits, 11, psi=0.6, yaw=30, fov=30, output="raw"))
    assert not first.cached and moved.cached
    # cutoff None and cutoff num_ws are the same planes; with psi 1 the cutoff does not matter at all.
    assert model.render(parse_render(model.limits, 11, psi=0.6, cutoff=model.G.num_ws)).cached
    model.render(parse_render(model.limits, 12, psi=1.0, cutoff=3))
    assert model.render(parse_render(model.limits, 12, psi=1.0, cutoff=5)).cached
    model.render(parse_render(model.limits, 13))
    assert len(model.cache) == 2  # cache_size=2: seed 11 was evicted
    assert not model.render(parse_render(model.limits, 11, psi=0.6)).cached


def test_same_request_renders_the_same_picture(model: DemoModel) -> None:
    req = parse_render(model.limits, 5, yaw=20, pitch=-10)
    np.testing.assert_array_equal(model.render(req).picture, model.render(req).picture)


def test_depth_is_shown_only_where_there_is_something(demo_generator) -> None:
    """The depth picture is white where the rays meet nothing, coloured over the object, and its range (the legend's
    near/far) is the object's, not the empty space's. (On the bundled model: the random fixture is opaque everywhere.)"""
    import torch

    from eg3d_core import visualize

    model = DemoModel(demo_generator, cache_size=1, output_dir=OutputDir(keep=1, prefix="eg3d-test-webapp-"))
    req = parse_render(model.limits, 3, yaw=45, pitch=-15, output="depth")
    res = model.render(req)
    ws, planes, _ = model.latent(req.latent, req.settings)
    with torch.no_grad():
        out = model.G.render_planes(planes, ws, model._camera(req, math.radians(45), math.radians(-15)))
    opacity = out["image_mask"][0, 0].numpy()
    empty, solid = opacity < 0.02, opacity >= visualize.OPACITY_SHOWN
    assert empty.sum() > 50 and solid.sum() > 50, (empty.sum(), solid.sum())  # the view shows both
    assert (res.depth[empty] >= 244).all()  # white background (faded: opacity < 0.02 keeps < 4 % of the colour)
    assert (res.depth[solid].min(axis=-1) < 200).mean() > 0.9  # colours on the object
    near, far = res.depth_range
    seen = out["image_depth"][0, 0].numpy()[solid]
    assert near == pytest.approx(seen.min(), rel=1e-5) and far == pytest.approx(seen.max(), rel=1e-5) and near < far
    np.testing.assert_array_equal(res.picture, res.depth)


def test_all_tiles_are_labelled_for_the_page(model: DemoModel) -> None:
    res = model.render(parse_render(model.limits, 3, output="all"))
    labelled = webapp.label_tiles(res.picture)
    h, w = res.picture.shape[:2]
    band = labelled.shape[0] - h
    assert labelled.shape[1] == w and band >= 14
    np.testing.assert_array_equal(labelled[band:], res.picture)  # the tiles themselves untouched
    for i in range(3):  # dark text in the white band above every tile
        strip = labelled[:band, i * w // 3:(i + 1) * w // 3]
        assert (strip.min(axis=-1) < 100).sum() > 20 and (strip.min(axis=-1) > 250).mean() > 0.5


def test_default_view_and_preview_camera_follow_the_model(model: DemoModel) -> None:
    from eg3d_core import cameras

    yaw, pitch = cameras.camera_defaults(model.G.config).view
    assert model.default_view() == (round(math.degrees(yaw)), round(math.degrees(pitch)))
    assert model.default_view() != (0.0, 0.0)  # the fixture is an object model: not the frontal blob
    alpha, beta, radius = model.preview_camera()
    # The same camera position as the picture's, in the viewer's spherical coordinates (+y up).
    pose = cameras.camera(model.defaults, yaw, pitch)[0, :16].reshape(4, 4).double()
    x, y, z = pose[:3, 3].tolist()
    r = math.sqrt(x * x + y * y + z * z)
    assert (math.cos(math.radians(alpha)) * math.sin(math.radians(beta)) * r, math.cos(math.radians(beta)) * r) == (
        pytest.approx(x, abs=1e-6), pytest.approx(y, abs=1e-6))
    # The object fills the viewer's vertical field of view as it fills the picture.
    assert radius * math.tan(webapp.PREVIEW_FOV / 2) == pytest.approx(r * 0.5 / model.defaults.focal)
    # Another view (a fitted picture's camera): the same distance, the camera moved round by the yaw difference.
    a2, b2, r2 = model.preview_camera(view=(yaw + math.pi / 2, pitch))
    assert model.preview_camera(view=(yaw, pitch)) == pytest.approx((alpha, beta, radius))
    assert r2 == pytest.approx(radius) and b2 == pytest.approx(beta, abs=1e-6)
    assert abs((a2 - alpha + 180) % 360 - 180) == pytest.approx(90, abs=1e-4)


def test_preview_colours_show_as_the_vertex_colours_through_the_viewers_tone_mapping() -> None:
    # The tone mapping the viewer applies (measured in Chromium on unlit quads: sRGB 128 grey -> 116, 230 -> 224).
    assert webapp.neutral_tone_map(np.array([[128, 128, 128], [230, 230, 230]])).tolist() == [[116] * 3, [225] * 3]
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, (5000, 3)).astype(np.uint8)
    shown = webapp.neutral_tone_map(webapp.preview_colors(colors)).astype(int)
    err = np.abs(shown - colors).max(axis=-1)
    assert err[colors.max(axis=-1) <= 220].max() <= 2
    plain = np.abs(webapp.neutral_tone_map(colors).astype(int) - colors).max(axis=-1)
    assert (err <= plain).all() and err.mean() < plain.mean() / 4


def test_clamp_only_numbers() -> None:
    assert webapp.clamp(500, (-180, 180)) == 180 and webapp.clamp(-1e9, (-85.0, 85.0)) == -85.0
    assert webapp.clamp(12.5, (0, 20)) == 12.5
    assert webapp.clamp("abc", (0, 1)) == "abc" and webapp.clamp(None, (0, 1)) is None
    assert webapp.clamp(True, (0, 1)) is True and math.isnan(webapp.clamp(float("nan"), (0, 1)))


# ----------------------------------------------------------------------------------------------------------------------
# Video and mesh


def test_video_is_a_readable_mp4(model: DemoModel) -> None:
    import imageio.v2 as imageio

    calls: list[float] = []
    path = model.video(parse_render(model.limits, 2), num_frames=4, fps=4, path="turntable",
                       progress=lambda f, d: calls.append(f))
    reader = imageio.get_reader(path)
    frames = list(reader.iter_data())  # list(reader) asks len(), which is inf for ffmpeg streams
    reader.close()
    assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
    assert calls == [0.0, 0.25, 0.5, 0.75]


def test_mesh_no_surface_message_then_mesh_at_a_probed_level(model: DemoModel) -> None:
    with pytest.raises(InputError) as info:
        model.mesh(4, 0.7, None, resolution=48, level=1000.0)
    m = re.search(r"no surface at level 1000(\.0)?: density range seen \[(\S+), (\S+)\]; pick a level", str(info.value))
    assert m, str(info.value)
    lo, hi = float(m.group(2)), float(m.group(3))
    res = model.mesh(4, 0.7, None, resolution=48, level=lo + 0.6 * (hi - lo))
    assert res.vertices > 0 and res.faces > 0 and set(res.files) == {".glb", ".ply", ".obj"}
    loaded = trimesh.load(res.files[".ply"], process=False)
    assert len(loaded.vertices) == res.vertices and len(loaded.faces) == res.faces
    assert loaded.visual.kind == "vertex"
    # The page's preview: the same surface, its colours made to come out of the viewer's tone mapping as they are.
    import json
    import struct

    data = res.preview.read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    gltf, binary = json.loads(data[20:20 + n]), data[28 + n:]
    acc = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    linear = np.frombuffer(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.float32)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.clip(linear, 0, 1) ** (1 / 2.4) - 0.055)
    np.testing.assert_array_equal(np.rint(srgb * 255).reshape(-1, 3),
                                  webapp.preview_colors(np.asarray(loaded.visual.vertex_colors)[:, :3]))


def test_output_dir_keeps_only_the_newest_jobs(tmp_path: Path) -> None:
    out = OutputDir(keep=2, prefix="eg3d-test-outdir-")
    jobs = []
    for _ in range(4):
        job = out.new_job("video")
        (job / "f.mp4").write_bytes(b"x")
        jobs.append(job)
        os.utime(job, (len(jobs), len(jobs)))  # mtimes that order the jobs, whatever the clock resolution
    assert [j.exists() for j in jobs] == [False, False, True, True]
    out.cleanup()
    assert not out.root.exists()


# ----------------------------------------------------------------------------------------------------------------------
# Admission: lanes, per-client shares, the cost cap


class Gate:
    """A job that holds a lane's thread until opened, so that the jobs after it stay queued."""

    def __init__(self) -> None:
        self.started, self.opened = threading.Event(), threading.Event()

    def __call__(self) -> str:
        self.started.set()
        assert self.opened.wait(10), "gate never opened"
        return "gate"


@pytest.fixture
def lane_of() -> Iterator[Callable[..., Lane]]:
    lanes: list[Lane] = []

    def make(quota: Quota, spread: bool = False, name: str = "heavy") -> Lane:
        lanes.append(Lane(name, quota, spread))
        return lanes[-1]

    yield make
    for lane in lanes:
        lane.close()


def busy(lane: Lane, caller: Caller, cost: float = 1.0) -> str:
    with pytest.raises(BusyError) as info:
        lane.submit(caller, cost, lambda: None)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_lane_limits_per_session_per_address_and_in_total(lane_of) -> None:
    lane = lane_of(Quota(per_session=1, per_ip=2, total=3))
    gate = Gate()
    held = lane.submit(Caller("gate", "10.0.0.9"), 1.0, gate)
    assert gate.started.wait(10)
    a = lane.submit(Caller("s1", "10.0.0.1"), 1.0, lambda: "a")
    assert busy(lane, Caller("s1", "10.0.0.1")).startswith("busy: this session already has 1 heavy job(s)")
    b = lane.submit(Caller("s2", "10.0.0.1"), 1.0, lambda: "b")  # another session of the same address
    # A new session per request (what a raw API client gets) is still bounded by its address.
    assert busy(lane, Caller("s3", "10.0.0.1")).startswith("busy: your address already has its share")
    assert busy(lane, Caller("s4", "10.0.0.2")).startswith("busy: the server's heavy queue is full (3 job(s)")
    assert lane.load() == (3, 3.0) and lane.load(Caller("x", "10.0.0.1")) == (2, 2.0)
    gate.opened.set()
    assert (held.result(10), a.result(10), b.result(10)) == ("gate", "a", "b")
    assert lane.load() == (0, 0.0)  # every share was given back on completion
    assert lane.run(Caller("s1", "10.0.0.1"), 1.0, lambda: "again") == "again"


def test_lane_caps_the_queued_cost_per_address_and_in_total(lane_of) -> None:
    lane = lane_of(Quota(per_session=5, per_ip=5, total=5, cost_per_ip=10.0, cost_total=15.0))
    gate = Gate()
    lane.submit(Caller("g", "10.0.0.1"), 6.0, gate)
    assert gate.started.wait(10)
    assert busy(lane, Caller("s", "10.0.0.1"), 5.0).startswith("busy: your address already has its share")
    lane.submit(Caller("s", "10.0.0.1"), 4.0, lambda: None)  # 6 + 4 = 10: exactly the address's share
    lane.submit(Caller("t", "10.0.0.2"), 5.0, lambda: None)  # 15 in all: exactly the cap
    assert busy(lane, Caller("u", "10.0.0.3"), 0.5).startswith("busy: the server's heavy queue is full")
    with pytest.raises(InputError, match=r"^this heavy job is too large for this server \(11 units of work, at most "
                                         r"10\): ask for fewer frames or a lower resolution$"):
        lane.submit(Caller("v", "10.0.0.4"), 11.0, lambda: None)
    gate.opened.set()
    deadline = time.monotonic() + 10
    while lane.load() != (0, 0.0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lane.load() == (0, 0.0)
    lane.run(Caller("u", "10.0.0.3"), 10.0, lambda: None)


def test_lane_gives_the_share_back_on_error_and_on_cancel(lane_of) -> None:
    lane = lane_of(Quota(per_session=1, per_ip=1, total=2))
    me = Caller("s", "10.0.0.1")
    with pytest.raises(InputError, match="bad value"):
        lane.run(me, 1.0, webapp.parse_int, "bad value", "x", (0, 1))  # the job's error reaches the caller
    assert lane.load() == (0, 0.0)
    gate = Gate()
    lane.submit(Caller("g", "10.0.0.9"), 1.0, gate)
    assert gate.started.wait(10)
    ran: list[str] = []
    waiting = lane.submit(me, 1.0, ran.append, "cancelled job")
    busy(lane, me)
    assert waiting.cancel()
    assert lane.load(me) == (0, 0.0)  # given back at once, not when the lane reaches it
    again = lane.submit(me, 1.0, ran.append, "next job")
    gate.opened.set()
    again.result(10)
    assert ran == ["next job"]


def test_lane_cancelled_asyncio_waiter_gives_its_place_back(lane_of) -> None:
    """The web handlers await ``asyncio.wrap_future(lane.submit(...))``: a cancelled request cancels a waiting job."""
    import asyncio

    lane = lane_of(Quota(per_session=1, per_ip=1, total=2))
    gate = Gate()
    lane.submit(Caller("g", "10.0.0.9"), 1.0, gate)
    assert gate.started.wait(10)
    me = Caller("s", "10.0.0.1")

    async def request() -> None:
        task = asyncio.ensure_future(asyncio.wrap_future(lane.submit(me, 1.0, lambda: None)))
        await asyncio.sleep(0.01)
        assert lane.load(me) == (1, 1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(request())
    assert lane.load(me) == (0, 0.0)
    gate.opened.set()


def test_lane_serves_addresses_round_robin(lane_of) -> None:
    lane = lane_of(Quota(per_session=4, per_ip=4, total=8))
    gate = Gate()
    lane.submit(Caller("g", "10.0.0.9"), 1.0, gate)
    assert gate.started.wait(10)
    order: list[str] = []
    jobs = [lane.submit(Caller("flood", "10.0.0.1"), 1.0, order.append, f"flood {i}") for i in range(3)]
    jobs.append(lane.submit(Caller("other", "10.0.0.2"), 1.0, order.append, "other"))
    gate.opened.set()
    for job in jobs:
        job.result(10)
    assert order == ["flood 0", "other", "flood 1", "flood 2"]  # the other address waited one job, not three


def test_lane_runs_on_one_thread_and_carries_context(lane_of) -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    render, heavy = lane_of(Quota(1, 1, 1), spread=True, name="render"), lane_of(Quota(1, 1, 1))
    me = Caller("s", "10.0.0.1")
    var.set("request-1")
    seen = {render.run(me, 1.0, lambda: (threading.current_thread().name, var.get())) for _ in range(5)}
    assert len(seen) == 1 and next(iter(seen))[1] == "request-1"  # always the same thread, caller's context
    assert heavy.run(me, 1.0, threading.current_thread).name != next(iter(seen))[0]
    # Quick renders (one at a time) may use helper threads on all cores; heavy jobs keep to their thread.
    from eg3d_core.runtime import may_spread_work

    assert render.run(me, 1.0, may_spread_work) and not heavy.run(me, 1.0, may_spread_work)
    render.close()
    assert busy(render, me) == "the server is shutting down"


@pytest.mark.parametrize("bad", [dict(per_session=0, per_ip=1, total=1), dict(per_session=2, per_ip=1, total=2),
                                 dict(per_session=1, per_ip=2, total=1),
                                 dict(per_session=1, per_ip=1, total=1, cost_per_ip=5.0, cost_total=4.0)])
def test_quota_must_be_consistent(bad: dict) -> None:
    with pytest.raises(ValueError, match="quota needs"):
        Quota(**bad)


def test_job_costs_scale_with_frames_pixels_and_grid(model: DemoModel) -> None:
    G = model.G  # neural rendering resolution 64, 12 + 12 depth samples
    assert webapp.video_cost(G, parse_render(model.limits, 0), 10) == 10.0
    assert webapp.video_cost(G, parse_render(model.limits, 0, resolution=128), 10) == 40.0
    assert webapp.mesh_cost(G, 128) == pytest.approx(128**3 / (64**2 * 24))
    # The defaults admit the largest job the limits allow, from one address.
    lim = model.limits
    biggest = webapp.video_cost(G, parse_render(lim, 0, resolution=lim.resolution[1]), lim.frames[1])
    assert biggest <= webapp.HEAVY_QUOTA.cost_per_ip
    assert webapp.mesh_cost(G, lim.mesh_resolution[1]) <= webapp.HEAVY_QUOTA.cost_per_ip


# ----------------------------------------------------------------------------------------------------------------------
# Your picture -> 3D


# A camera search of a few cells and one short candidate: the whole inversion in seconds on the tiny fixture.
CHEAP_SEARCH = InversionSettings(search_yaw_step=120.0, search_pitch_step=60.0, search_latents=1,
                                 search_candidates=1, candidate_steps=1, finalist_steps=1)


def test_parse_invert_bounds_and_blank_camera(tmp_path: Path) -> None:
    good = tmp_path / "car.png"
    Image.new("RGB", (32, 24), (200, 10, 10)).save(good)
    req = webapp.parse_invert(Limits(), {"path": str(good), "meta": {"_type": "gradio.FileData"}}, "", None, "7")
    assert (req.picture, req.yaw, req.pitch, req.steps) == (good, None, None, 7)
    assert webapp.parse_invert(Limits(), str(good), 30, "-10").pitch == -10.0
    for kwargs, message in [({"yaw": 10}, "give both yaw and pitch"),
                            ({"steps": 10**6}, "steps must be an integer in [1, 200]"),
                            ({"steps": 0}, "steps must be an integer in [1, 200]"),
                            ({"yaw": 0, "pitch": 85}, "pitch must be a number in [-80, 80]")]:
        with pytest.raises(InputError) as info:
            webapp.parse_invert(Limits(), str(good), **kwargs)
        assert str(info.value).startswith(message), info.value


def test_parse_invert_refuses_bad_files_in_one_line(tmp_path: Path) -> None:
    text, tiny, corrupt, huge = (tmp_path / n for n in ("a.png", "b.png", "c.png", "d.png"))
    text.write_text("not a picture")
    Image.new("RGB", (1, 1)).save(tiny)
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("1", (5000, 4000)).save(huge)  # 20 MP, a few KiB
    for file, message in [(None, "upload a picture first"), (text, "the uploaded file is not a picture"),
                          (tiny, "the uploaded file: 1x1 px is too small"), (corrupt, "the uploaded file is not"),
                          (huge, "the uploaded file: 5000x4000 px is too large")]:
        with pytest.raises(InputError) as info:
            webapp.parse_invert(Limits(), None if file is None else str(file))
        assert str(info.value).startswith(message) and "\n" not in str(info.value), info.value


def test_invert_cost_grows_with_steps_and_search_and_fits_the_heavy_quota(model: DemoModel) -> None:
    G = model.G
    few, many = webapp.inversion_settings(4), webapp.inversion_settings(Limits().invert_steps[1])
    assert webapp.invert_cost(G, few, False, 4) < webapp.invert_cost(G, many, False, 4)
    assert webapp.invert_cost(G, many, False, 36) < webapp.invert_cost(G, many, True, 36)
    # The largest request is admitted (alone) by the demo's heavy lane; one address cannot queue three of them.
    largest = webapp.invert_cost(G, many, True, Limits().frames[1])
    assert largest <= webapp.HEAVY_QUOTA.cost_per_ip < 3 * largest
    assert few.pti_steps == 0 and few.coarse_steps + few.fine_steps == 4


def test_invert_writes_fit_video_and_npz_into_one_job(model: DemoModel, tmp_path: Path) -> None:
    picture = tmp_path / "my car!.png"
    Image.fromarray(model.render(parse_render(model.limits, 3, yaw=20)).picture).save(picture)
    seen: list[tuple[float, str]] = []
    req = webapp.InvertRequest(picture=picture, yaw=20.0, pitch=0.0, steps=2, frames=3, fps=6)
    res = model.invert(req, progress=lambda f, d: seen.append((f, d)), base=CHEAP_SEARCH)
    assert res.picture.shape == (128, 256, 3) and res.picture.dtype == np.uint8
    assert res.npz.parent == res.video.parent and res.npz.name == "my_car.npz"
    with np.load(res.npz) as data:
        assert data["ws"].shape == (1, model.G.num_ws, model.G.w_dim) and float(data["yaw"]) == pytest.approx(20)
        assert {"c", "pitch"} <= set(data.files)
    assert res.video.suffix == ".mp4" and res.video.stat().st_size > 0
    assert res.mesh is None or res.mesh[".glb"].parent == res.npz.parent
    # The page's preview of the mesh: its own .glb beside it (colours made to show as rendered), none without a mesh.
    assert (res.preview is None) == (res.mesh is None)
    assert res.preview is None or (res.preview.suffix == ".glb" and res.preview.parent == res.npz.parent)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    assert any("fitting: coarse" in d for _, d in seen) and any("frame" in d for _, d in seen)
    # Blank camera: estimated by the (cheap) search; the bar only moves forward through its candidate passes.
    seen.clear()
    res = model.invert(webapp.InvertRequest(picture=picture, steps=1, frames=2),
                       progress=lambda f, d: seen.append((f, d)), base=CHEAP_SEARCH)
    assert -180 <= res.yaw <= 180 and math.isfinite(res.psnr)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and sum("fitting: camera" in d for _, d in seen) > 2
