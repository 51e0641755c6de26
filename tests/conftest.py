"""Shared test setup: fixture locations and the reference outputs of the original code."""
from __future__ import annotations

import os

# torch busy-waits its worker threads by default, which is several times slower on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
CONFIGS = ("tiny_cars128", "tiny_ffhq512", "tiny_afhq512")


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def fixture_config(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


@pytest.fixture(scope="session")
def cars_generator():
    """The tiny cars fixture generator, loaded from its official pickle (shared, read-only)."""
    import eg3d_core

    return eg3d_core.load_generator(FIXTURES / "tiny_cars128" / "network-snapshot.pkl")


@pytest.fixture(scope="session")
def demo_generator():
    """The bundled demo model (shared, read-only)."""
    import eg3d_core

    return eg3d_core.load_generator("demo")


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Each device present: the CPU, and CUDA where torch sees one (where the reference path runs)."""
    import torch

    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    return torch.device(request.param)


# The viewer's model facts, state and camera limits for the tiny cars fixture (viewer logic tests, no window).


@pytest.fixture(scope="module")
def info(cars_generator):
    from eg3d_viewer.model_info import ModelInfo

    return ModelInfo.of(cars_generator, "fixture")


@pytest.fixture()
def state(info):
    from eg3d_viewer import actions
    from eg3d_viewer.state import AppState

    s = AppState()
    actions.apply_model(s, info)
    return s


@pytest.fixture()
def limits(info):
    from eg3d_viewer import camera_controller as cc

    return cc.CameraLimits.for_model(info)


def held_out_car_picture(path: Path, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The procedural ground truth of a car the demo model never saw, at a three-quarter view: uint8 [256, 256, 3]."""
    import math

    import torch

    from eg3d_core import cameras, load_generator
    from eg3d_core.training import toycars as tc

    G = load_generator("demo")
    z = torch.from_numpy(np.random.RandomState(987654).randn(1, G.z_dim)).float()
    c = cameras.camera(cameras.camera_defaults(G.config), math.radians(yaw_deg), math.radians(pitch_deg))
    image = tc.to_uint8(tc.render(tc.params_from_latent(z), c, 256)["image"])[0]
    Image.fromarray(image).save(path)
    return image
