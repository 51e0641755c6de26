"""The web demo's logic (eg3d_core.apps.webapp) in-process, on the tiny random fixture: validation, cache, files."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are slow on a shared CPU

import math  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402

import eg3d_core  # noqa: E402
from eg3d_core.apps import webapp  # noqa: E402
from eg3d_core.apps.webapp import DemoModel, InputError, Limits, OutputDir, parse_render  # noqa: E402

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


def test_model_threads_pin_work_and_carry_context() -> None:
    import contextvars
    import threading

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    threads = webapp.ModelThreads(("render", "heavy"))
    try:
        var.set("request-1")
        seen = {threads.run("render", lambda: (threading.current_thread().name, var.get())) for _ in range(5)}
        assert len(seen) == 1 and next(iter(seen))[1] == "request-1"  # always the same thread, caller's context
        assert threads.run("heavy", threading.current_thread).name != next(iter(seen))[0]
        with pytest.raises(InputError):
            threads.run("render", parse_render, Limits(), "abc")  # errors reach the caller
        # Quick renders (one at a time) may use helper threads on all cores; heavy jobs keep to their thread.
        from eg3d_core.runtime import may_spread_work

        assert threads.run("render", may_spread_work) and not threads.run("heavy", may_spread_work)
    finally:
        threads.shutdown()
