"""The viewer's picture -> 3D, without a window: the inversion job and its events, custom latents in render requests,
latent files, and what a dropped file does. The windowed round trip is in ``test_viewer_app.py``."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from eg3d_core import cameras
from eg3d_core.inversion import InversionSettings
from eg3d_core.latents import LatentSource, save_ws
from eg3d_viewer import actions
from eg3d_viewer.invert_worker import (
    InvertDone,
    InvertFailed,
    InvertJob,
    InvertProgress,
    InvertTarget,
    StageProgress,
    load_latent,
    run_job,
    save_latent,
)
from eg3d_viewer.model_info import ModelInfo
from eg3d_viewer.renderer import compose_ws
from eg3d_viewer.requests import scene_of
from eg3d_viewer.script import parse_script
from eg3d_viewer.state import AppState, CustomLatent


@pytest.fixture(scope="module")
def picture(tmp_path_factory, cars_generator):
    """A picture the fixture generator itself rendered (seed 3, yaw 30 deg), saved as a PNG."""
    G = cars_generator
    d = cameras.camera_defaults(G.config)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, cameras.camera(d, math.radians(30), 0.0))["image"]
    path = tmp_path_factory.mktemp("picture") / "car.png"
    Image.fromarray(((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(path)
    return path


def test_a_fit_reports_the_picture_then_progress_then_the_latent_and_its_camera(cars_generator, picture) -> None:
    events: list = []
    run_job(InvertJob(cars_generator, str(picture), steps=10), events.append, lambda: False)
    assert isinstance(events[0], InvertTarget) and events[0].image.shape == (128, 128, 3)
    progress = [e for e in events if isinstance(e, InvertProgress)]
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert [p.stage for p in progress][0] == "camera" and progress[-1].stage == "fine"
    assert any(p.preview is not None and p.preview.shape == (128, 128, 3) for p in progress)
    done = events[-1]
    assert isinstance(done, InvertDone)
    G = cars_generator
    assert done.latent.name == "car" and tuple(done.latent.ws.shape) == (1, G.num_ws, G.w_dim)
    assert -180 <= done.yaw <= 180 and abs(done.pitch) <= 80 and math.isfinite(done.psnr)
    assert done.fit.shape == (128, 128, 3) and done.fit.dtype == np.uint8


def test_a_given_camera_is_kept_and_its_stages_skip_the_search(cars_generator, picture) -> None:
    events: list = []
    run_job(InvertJob(cars_generator, str(picture), steps=10, yaw=25.0, pitch=-5.0), events.append, lambda: False)
    done = events[-1]
    assert isinstance(done, InvertDone) and (done.yaw, done.pitch) == pytest.approx((25.0, -5.0), abs=1e-4)
    assert "camera" not in {e.stage for e in events if isinstance(e, InvertProgress)}


def test_cancel_stops_the_job_with_a_cancelled_event(cars_generator, picture) -> None:
    events: list = []
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    run_job(InvertJob(cars_generator, str(picture), steps=50), events.append, should_stop)
    assert isinstance(events[-1], InvertFailed) and events[-1].cancelled and events[-1].message == "cancelled"
    assert not any(isinstance(e, InvertDone) for e in events)


@pytest.mark.parametrize("content, expected", [(b"not a picture at all", "car.png"), (None, "no such")])
def test_bad_pictures_fail_in_one_line(cars_generator, tmp_path, content, expected) -> None:
    path = tmp_path / "car.png"
    if content is not None:
        path.write_bytes(content)
    events: list = []
    run_job(InvertJob(cars_generator, str(path), steps=10), events.append, lambda: False)
    assert len(events) == 1 and isinstance(events[0], InvertFailed) and not events[0].cancelled
    assert expected in events[0].message and "\n" not in events[0].message and "Traceback" not in events[0].message


@pytest.mark.parametrize("full_circle", [True, False])
def test_stage_progress_counts_the_camera_passes_in_order(full_circle: bool) -> None:
    s = InversionSettings(coarse_steps=4, fine_steps=2, search_candidates=2, finalists=2)
    f = StageProgress(s, estimate_camera=True, full_circle=full_circle)
    candidates = 3 if full_circle else 2  # the twin of the best camera joins where the cameras go all the way round
    passes = 1 + candidates + 2
    seen = [f("camera", i, 10) for i in range(1, 11)]  # the grid search
    for _ in range(candidates):
        seen += [f("camera", i, 5) for i in range(1, 6)]
    for _ in range(2):  # the finalists
        seen += [f("camera", i, 7) for i in range(1, 8)]
    assert seen[-1] == pytest.approx(1 / 3)  # the camera stage is one of three
    seen += [f("coarse", i, 4) for i in range(1, 5)] + [f("fine", i, 2) for i in range(1, 3)]
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert seen[14] == pytest.approx(2 / passes / 3)  # two camera passes done


def test_a_custom_latent_replaces_seed_a_and_compares_by_digest(cars_generator) -> None:
    G = cars_generator
    info = ModelInfo.of(G, "fixture")
    ws = torch.randn(1, G.num_ws, G.w_dim)
    state = AppState()
    seed_scene = scene_of(state, info)
    state.latent.custom = CustomLatent("mine", LatentSource.from_ws(ws).digest, ws)
    scene = scene_of(state, info)
    assert scene != seed_scene
    assert scene == scene_of(state, info)  # same digest: the renderer's plane cache sees the same latent
    assert torch.equal(compose_ws(G, scene.latent), ws)
    state.latent.seed_b, state.latent.mix = 5, 0.25  # interpolation towards seed B works from a custom latent too
    mixed = compose_ws(G, scene_of(state, info).latent)
    other = AppState()
    other.latent.seed = 5
    seed5 = compose_ws(G, scene_of(other, info).latent)
    torch.testing.assert_close(mixed, torch.lerp(ws, seed5, 0.25))
    state.latent.custom = CustomLatent("mine", "x", ws)
    actions.step_seed(state, 1)
    assert state.latent.custom is None  # stepping the seed goes back to seeds


def test_latent_files_round_trip_and_another_models_file_is_refused(cars_generator, demo_generator, tmp_path) -> None:
    G = cars_generator
    ws = torch.randn(1, G.num_ws, G.w_dim)
    path = save_latent(CustomLatent("mine", "d", ws), str(tmp_path / "mine.npz"))
    loaded = load_latent(G, str(path))
    assert torch.equal(loaded.ws, ws) and loaded.name == "mine"
    assert loaded.digest == LatentSource.from_ws(ws).digest
    other = save_ws(torch.randn(1, demo_generator.num_ws, demo_generator.w_dim), tmp_path / "demo.npz")
    with pytest.raises(ValueError, match=f"the model takes {G.num_ws} ws of {G.w_dim}"):
        load_latent(G, str(other))
    (tmp_path / "bad.npz").write_bytes(b"PK junk")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_latent(G, str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("name, kind", [("car.PNG", "picture"), ("x.jpg", "picture"), ("fit.npz", "latent"),
                                        ("network.pkl", "model"), ("tuned", "model")])
def test_a_dropped_file_is_fitted_loaded_as_latent_or_as_model(name, kind) -> None:
    state = AppState()
    actions.open_path(state, f"/data/{name}")
    inv, m = state.invert, state.model
    assert inv.fit_requested == (kind == "picture") and inv.load_requested == (kind == "latent")
    assert (m.load_requested == f"/data/{name}") == (kind == "model")
    if kind != "model":
        assert state.panel.invert  # the section that shows the progress or the result opens


def test_scripts_can_drop_files_and_wait_for_the_fit() -> None:
    steps = parse_script('[{"drop": "car.png"}, {"wait": "invert"}]')
    assert [s.kind for s in steps] == ["drop", "wait"]
