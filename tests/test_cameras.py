"""Camera conventions against values computed with the original code (spec appendix A) and the fixtures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import CONFIGS, fixture_config, reference

from eg3d_core import PRESETS, cameras
from eg3d_core.errors import CheckpointError, InputError


def test_frontal_pose():
    pose = cameras.lookat_pose(math.pi / 2, math.pi / 2, radius=2.7, lookat=(0, 0, 0.2))[0]
    expected = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]], dtype=torch.float32)
    assert torch.allclose(pose, expected, atol=1e-6)


def test_offset_pose_origin():
    pose = cameras.lookat_pose(math.pi / 2 + 0.4, math.pi / 2 - 0.2, radius=2.7)[0]
    assert np.allclose(pose[:3, 3].numpy(), [1.04287, 0.34377, 2.46662], atol=1e-5)


def test_focal_from_fov():
    assert abs(cameras.focal_from_fov(18.837) - 4.263391) < 1e-6
    assert abs(cameras.fov_from_focal(cameras.focal_from_fov(30.0)) - 30.0) < 1e-9


def test_fixture_cameras():
    for name in CONFIGS:
        ref = reference(name)
        cam = fixture_config(name)["camera"]
        defaults = cameras.CameraDefaults(radius=cam["radius"], pivot=tuple(cam["pivot"]),
                                          focal=cam["focal"] or cameras.focal_from_fov(cam["fov_deg"]))
        yaw, pitch = zip(*cam["poses"], strict=True)
        assert np.abs(cameras.camera(defaults, yaw, pitch).numpy() - ref["c_render"]).max() < 1e-6
        assert np.abs(cameras.conditioning(defaults, 2).numpy() - ref["c_cond"]).max() < 1e-6


def test_camera_vector_round_trip():
    c = cameras.camera(cameras.camera_defaults(PRESETS["ffhq512-128"]), [0.1, -0.2], [0.0, 0.3])
    pose, k = cameras.split_camera_vector(c)
    assert torch.equal(cameras.camera_vector(pose, k), c)
    assert c.shape == (2, 25)


def test_preset_defaults():
    cars = cameras.camera_defaults(PRESETS["shapenetcars128-64"])
    ffhq = cameras.camera_defaults(PRESETS["ffhq512-128"])
    assert (cars.radius, cars.focal) == (1.7, cameras.SHAPENET_FOCAL)
    assert (ffhq.radius, ffhq.pivot, ffhq.focal) == (2.7, (0.0, 0.0, 0.2), cameras.FFHQ_FOCAL)


def test_orbit_and_turntable():
    orbit = cameras.orbit(120)
    assert orbit.shape == (120, 2) and abs(orbit[:, 0].max() - 0.35) < 1e-3
    turn = cameras.turntable(8)
    assert np.allclose(np.diff(turn[:, 0]), 2 * math.pi / 8) and np.all(turn[:, 1] == -0.2)


def test_bad_camera_vectors_are_an_input_error():
    with pytest.raises(InputError, match=r"camera vectors must have shape \[N, 25\], got \[2, 16\]"):
        cameras.split_camera_vector(torch.zeros(2, 16))


def test_camera_distribution_from_an_mmagic_camera_section():
    section = {"type": "UniformCamera", "horizontal_mean": 1.2, "horizontal_std": 0.3, "vertical_mean": 1.4,
               "vertical_std": 0.1, "radius": 2.0, "look_at": (0.0, 0.0, 0.2), "up": (0.0, 1.0, 0.0),
               "normalized_focal": 3.0}
    dist = cameras.camera_distribution(PRESETS["ffhq512-128"], section)
    assert dist.kind == "uniform" and (dist.horizontal_std, dist.vertical_std, dist.focal) == (0.3, 0.1, 3.0)
    # The mean camera is the look-at pose at the means (exact: the same float32 computation).
    want = cameras.camera_vector(cameras.lookat_pose(1.2, 1.4, 2.0, (0.0, 0.0, 0.2)), cameras.intrinsics_from_focal(3.0))
    assert torch.equal(dist.mean(), want)
    # Uniform draws stay within mean +- std.
    rs = np.random.RandomState(0)
    draws = np.array([dist.draw(rs) for _ in range(200)])
    assert np.all(np.abs(draws[:, 0] - 1.2) <= 0.3) and np.all(np.abs(draws[:, 1] - 1.4) <= 0.1)
    with pytest.raises(CheckpointError, match="the config's camera has no horizontal_mean"):
        cameras.camera_distribution(PRESETS["ffhq512-128"], {**section, "horizontal_mean": None})
    # Without a section: MMagic's face camera (Gaussian, fov 18.837) around the model's own radius and pivot.
    face = cameras.camera_distribution(PRESETS["ffhq512-128"])
    assert face.kind == "gaussian" and face.focal == pytest.approx(4.26339, abs=1e-5) and face.radius == 2.7
