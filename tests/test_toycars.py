"""Tests of the procedural toy-car family and its sphere-tracing renderer (eg3d_core.training.toycars).

Small resolutions and batches throughout: the suite must stay fast on a 2-core CPU. No timing asserts.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eg3d_core.cameras import SHAPENET_FOCAL, camera_vector, intrinsics_from_focal, lookat_pose, split_camera_vector
from eg3d_core.training import toycars as tc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """The renderer runs many small ops; on a shared CPU, OpenMP threads spin-waiting on each other make them
    up to 20x slower (unless OMP_WAIT_POLICY=PASSIVE), so these tests use one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cams(yaw: list[float], pitch: list[float] | None = None, radius: float = 1.7) -> torch.Tensor:
    """Camera vectors [N, 25] at sampler angles (yaw, pitch), looking at the origin."""
    pitch = [math.pi / 2 - 0.3] * len(yaw) if pitch is None else pitch
    pose = lookat_pose(torch.tensor(yaw, dtype=torch.float64), torch.tensor(pitch, dtype=torch.float64), radius=radius)
    return camera_vector(pose, intrinsics_from_focal(SHAPENET_FOCAL))


def some_params(n: int, seed: int = 0) -> torch.Tensor:
    return tc.params_from_latent(torch.randn(n, tc.PARAM_DIM, generator=torch.Generator().manual_seed(seed)))


def hit_points(params: torch.Tensor, c: torch.Tensor, res: int) -> tuple[dict, torch.Tensor]:
    """Render and return (output, world points origin + depth * dir [N, R*R, 3])."""
    out = tc.render(params, c, res)
    origin, dirs = tc.camera_rays(c, res)  # [N, 3], [3, N, RR]
    pts = origin[:, None, :] + out["depth"].reshape(len(c), -1, 1) * dirs.permute(1, 2, 0)
    return out, pts


def test_params_from_latent_deterministic_and_uniform():
    z = torch.randn(4096, tc.PARAM_DIM + 7, generator=torch.Generator().manual_seed(1))
    p = tc.params_from_latent(z)
    assert p.shape == (4096, tc.PARAM_DIM)
    assert torch.equal(p, tc.params_from_latent(z.clone()))
    assert p.min() >= 0 and p.max() <= 1
    # Phi(N(0, 1)) is uniform: mean 1/2, variance 1/12; only the first PARAM_DIM latents are used.
    assert abs(float(p.mean()) - 0.5) < 0.02
    assert abs(float(p.var()) - 1 / 12) < 0.01
    z2 = z.clone()
    z2[:, tc.PARAM_DIM:] = 0
    assert torch.equal(p, tc.params_from_latent(z2))
    assert torch.allclose(tc.params_from_latent(torch.zeros(1, tc.PARAM_DIM)), torch.full((1, tc.PARAM_DIM), 0.5))
    with pytest.raises(ValueError):
        tc.params_from_latent(torch.zeros(2, tc.PARAM_DIM - 1))


def test_describe():
    d = tc.describe(some_params(3))
    assert len(d) == 3
    for car in d:
        assert 0.6 < car["body_length"] < 0.9 and 0.2 < car["body_width"] < 0.4
        assert car["wheel_radius"] > 0 and car["total_height"] < 0.5
        assert car["body_colour"].startswith("#") and len(car["body_colour"]) == 7
    assert tc.describe(some_params(1)[0].tolist())[0] == tc.describe(some_params(1))[0]


def test_render_shapes_ranges_and_background():
    params = some_params(3)
    c = cams([0.3, 1.9, 4.0])
    out = tc.render(params, c, 32)
    img, depth, mask = out["image"], out["depth"], out["mask"]
    assert img.shape == (3, 3, 32, 32) and depth.shape == (3, 1, 32, 32) and mask.shape == (3, 1, 32, 32)
    assert img.min() >= -1 and img.max() <= 1
    assert mask.min() >= 0 and mask.max() <= 1
    assert depth.min() >= tc.RAY_START and depth.max() <= tc.RAY_END
    bg = mask[:, 0] == 0
    assert bg.any() and (mask[:, 0] == 1).any()
    assert torch.all(img.permute(1, 0, 2, 3)[:, bg] == 1.0)  # exactly white
    assert torch.all(depth[:, 0][bg] == tc.RAY_END)
    # Car pixels are not white, and their depth lies well inside the ray range.
    car = mask[:, 0] == 1
    assert float(img.permute(1, 0, 2, 3)[:, car].mean()) < 0.8
    assert depth[:, 0][car].min() > 1.0 and depth[:, 0][car].max() < 2.3
    # Another background value.
    out2 = tc.render(params, c, 32, background=-1.0)
    assert torch.all(out2["image"].permute(1, 0, 2, 3)[:, bg] == -1.0)
    assert torch.equal(out2["mask"], mask) and torch.equal(out2["depth"], depth)


def test_depth_lies_on_the_surface():
    params = some_params(4, seed=2)
    c = tc.random_cameras(4, torch.Generator().manual_seed(3))
    out, pts = hit_points(params, c, 48)
    hit = out["depth"].reshape(4, -1) < tc.RAY_END
    d = tc.sdf(params, pts)
    assert hit.sum() > 200
    assert d[hit].abs().max() < 1e-2
    # Hits are what the mask calls the car.
    assert torch.all(out["mask"].reshape(4, -1)[hit] == 1)


def test_depth_is_the_first_intersection():
    """Along the central ray of a frontal camera, no point before the reported depth is inside the car, and the
    depth agrees with a dense scan of the SDF (the first sign change)."""
    params = some_params(3, seed=4)
    c = cams([math.pi / 2] * 3, [math.pi / 2] * 3)
    res = 32
    out = tc.render(params, c, res)
    origin, dirs = tc.camera_rays(c, res)
    centre = (res // 2) * res + res // 2
    ts = torch.linspace(tc.RAY_START, tc.RAY_END, 5001)
    for i in range(3):
        d = dirs[:, i, centre]
        line = origin[i][None] + ts[:, None] * d[None]
        s = tc.sdf(params[i:i + 1], line[None])[0]
        first = int(torch.nonzero(s < 0)[0])
        depth = float(out["depth"][i, 0].reshape(-1)[centre])
        # The tracer stops within eps = 5e-4 of the surface (a bit more along an oblique ray).
        assert abs(depth - float(ts[first])) < 3e-3
        # Frontal camera on +z looking at the origin: the centre ray is the -z axis, so depth = 1.7 - z_front.
        assert torch.allclose(d, torch.tensor([0.0, 0.0, -1.0]), atol=0.02)  # half a pixel off the axis
        half_len = tc.describe(params[i:i + 1])[0]["body_length"] / 2
        assert 1.7 - half_len - 0.01 < depth < 1.7 - 0.5 * half_len


def test_fits_in_the_box_and_the_frame():
    # Extreme size parameters (all combinations of 0/1), random others.
    gen = torch.Generator().manual_seed(5)
    p = torch.rand(48, tc.PARAM_DIM, generator=gen)
    p[:, :14] = torch.randint(0, 2, (48, 14), generator=gen).float()
    p[:16, [0, 1, 2, 3, 7, 11, 12, 13, 14]] = 1.0
    # The SDF is positive on the surface of the cube [-0.5, 0.5]^3 (so the car is inside [-0.8, 0.8]^3 with margin).
    u = torch.rand(48, 2000, 3, generator=gen) - 0.5
    face = torch.randint(0, 3, (48, 2000), generator=gen)
    u.scatter_(2, face[..., None], torch.sign(torch.randn(48, 2000, 1, generator=gen)) * 0.5)
    assert tc.sdf(p, u).min() > 0.02
    # Never cut by the image border under the training camera distribution (and a bit beyond in pitch).
    c = tc.random_cameras(48, gen)
    out = tc.render(p, c, 64)
    m = out["mask"][:, 0]
    border = torch.cat([m[:, 0], m[:, -1], m[:, :, 0], m[:, :, -1]], 1)
    assert border.max() == 0


def test_different_params_and_cameras_give_different_images():
    p = some_params(2, seed=6)
    c = cams([1.0, 1.0])
    img = tc.render(p, c, 32)["image"]
    assert (img[0] - img[1]).abs().mean() > 0.05
    img2 = tc.render(p[:1].expand(2, -1), cams([1.0, 2.5]), 32)["image"]
    assert (img2[0] - img2[1]).abs().mean() > 0.05
    # Same inputs, same output.
    assert torch.equal(tc.render(p, c, 32)["image"], img)


def test_small_param_change_gives_small_image_change():
    p = some_params(4, seed=7)
    c = tc.random_cameras(4, torch.Generator().manual_seed(8))
    base = tc.render(p, c, 32)["image"]
    small = tc.render((p + 2e-3).clamp(0, 1), c, 32)["image"]
    large = tc.render((p + 0.2).remainder(1.0), c, 32)["image"]
    d_small = float((small - base).abs().mean())
    d_large = float((large - base).abs().mean())
    assert d_small < 0.01 and d_large > 10 * d_small


def test_multiview_consistency():
    """A surface point seen in view A, projected into view B, has B's depth there when it is visible in B."""
    res = 64
    p = some_params(1, seed=9).expand(2, -1)
    c = cams([1.1, 1.6], [math.pi / 2 - 0.3, math.pi / 2 - 0.15])
    out, pts = hit_points(p, c, res)

    def smooth(depth: torch.Tensor) -> torch.Tensor:
        """Interior pixels: hit, and all 4-neighbours hit with similar depth (no silhouette or occlusion edges)."""
        ok = depth < tc.RAY_END
        for sh in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            nb = torch.roll(depth, sh, dims=(0, 1))
            ok &= (nb < tc.RAY_END) & ((nb - depth).abs() < 0.03)
        return ok

    x = pts[0][smooth(out["depth"][0, 0]).reshape(-1)]  # [K, 3] world points seen in A
    assert x.shape[0] > 200
    pose_b, k_b = split_camera_vector(c[1:])
    rot, o_b = pose_b[0, :3, :3], pose_b[0, :3, 3]
    xc = (x - o_b) @ rot  # world -> OpenCV camera coordinates of B
    u = k_b[0, 0, 0] * xc[:, 0] / xc[:, 2] + k_b[0, 0, 2]
    v = k_b[0, 1, 1] * xc[:, 1] / xc[:, 2] + k_b[0, 1, 2]
    j = (u * res).floor().long().clamp(0, res - 1)
    i = (v * res).floor().long().clamp(0, res - 1)
    dist = (x - o_b).norm(dim=1)
    inside = smooth(out["depth"][1, 0])[i, j]  # lands on B's car away from its edges
    x, i, j, dist = x[inside], i[inside], j[inside], dist[inside]
    depth_b = out["depth"][1, 0][i, j]
    # Nothing in B is seen behind a surface point of A (up to the pixel footprint's depth variation) ...
    assert float((depth_b - dist).max()) < 0.05
    # ... and points visible in B (not occluded) have matching depth.
    visible = depth_b > dist - 0.03
    assert visible.float().mean() > 0.4
    err = (depth_b - dist)[visible].abs()
    assert float(err.median()) < 5e-3


def test_random_cameras():
    gen = torch.Generator().manual_seed(10)
    c = tc.random_cameras(256, gen)
    assert c.shape == (256, 25) and torch.isfinite(c).all()
    assert torch.equal(c, tc.random_cameras(256, torch.Generator().manual_seed(10)))
    pose, k = split_camera_vector(c)
    pos = pose[:, :3, 3]
    assert torch.allclose(pos.norm(dim=1), torch.full((256,), 1.7), atol=1e-4)
    # Looking at the origin: the camera z axis points from the camera to the origin.
    assert torch.allclose(pose[:, :3, 2], -pos / pos.norm(dim=1, keepdim=True), atol=1e-4)
    assert torch.allclose(k[:, 0, 0], torch.full((256,), SHAPENET_FOCAL))
    # Pitch: mostly above the horizon, within the documented sampler-angle range; yaw covers the circle.
    v = math.pi / 2 * (1 - pos[:, 1] / 1.7)  # invert phi = arccos(1 - 2 v / pi)
    assert v.min() >= tc.PITCH_RANGE[0] - 1e-3 and v.max() <= tc.PITCH_RANGE[1] + 1e-3
    assert (pos[:, 1] > 0).float().mean() > 0.7
    yaw = torch.atan2(pos[:, 2], -pos[:, 0])
    assert torch.histc(yaw, bins=4, min=-math.pi, max=math.pi).min() > 30


def test_write_dataset(tmp_path: Path):
    out = tc.write_dataset(tmp_path / "ds", num_images=8, resolution=32, seed=3, progress=False, batch_size=5)
    assert out == tmp_path / "ds"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left behind
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 8
    labels = json.loads((out / "dataset.json").read_text())["labels"]
    assert len(labels) == 8
    names = [name for name, _ in labels]
    assert len(set(names)) == 8 and sorted(names) == [p.name for p in pngs]
    for _, cam in labels:
        assert len(cam) == 25 and all(math.isfinite(x) for x in cam)
    with Image.open(pngs[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    params = np.load(out / "params.npy")
    assert params.shape == (8, tc.PARAM_DIM) and params.dtype == np.float32
    # The files reproduce: image 5 is the render of params[5] from camera labels[5].
    lab = dict(labels)
    img = tc.render(torch.from_numpy(params[5:6]), torch.tensor([lab["img00000005.png"]]), 32)["image"]
    assert np.array_equal(tc.to_uint8(img)[0], np.asarray(Image.open(out / "img00000005.png")))
    # Same seed, same dataset; an existing non-empty folder is refused.
    again = tc.write_dataset(tmp_path / "ds2", num_images=8, resolution=32, seed=3, progress=False)
    assert json.loads((again / "dataset.json").read_text())["labels"] == labels
    assert np.array_equal(np.load(again / "params.npy"), params)
    with pytest.raises(FileExistsError):
        tc.write_dataset(out, num_images=2, resolution=16, seed=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds2"]


def test_make_demo_dataset_script(tmp_path: Path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_dataset.py"), "--out", str(tmp_path / "d"),
                        "--num-images", "3", "--resolution", "16", "--no-progress"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "d").glob("*.png"))) == 3
