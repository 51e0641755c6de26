"""Video writing, grids, the gen_videos builders and the MMagic demo's pieces (library level)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import eg3d_core
from eg3d_core import cameras
from eg3d_core.apps import video
from eg3d_core.apps.mmagic_demo import DemoSettings, demo_camera, depth_images, draw_latents, render_demo
from eg3d_core.apps.samples import parse_seeds
from eg3d_core.apps.video import (
    calculate_grid_size,
    frame_image,
    keyframe_latents,
    latent_interpolation_frames,
    layout_grid,
    make_grid,
    orbit_frames,
    video_cameras,
    write_video,
)
from eg3d_core.checkpoints.mmagic import parse_mmagic_camera
from eg3d_core.errors import OutputError
from eg3d_core.generator import Generator
from eg3d_core.latents import map_seeds
from eg3d_core.presets import PRESETS
from eg3d_core.settings import RenderSettings

FIXTURES = Path(__file__).parent / "fixtures"
CARS_PKL = FIXTURES / "tiny_cars128" / "network-snapshot.pkl"
FFHQ_CFG = FIXTURES / "mmagic_configs" / "eg3d" / "eg3d_cvt-official-rgb_ffhq-512x512.py"
SHAPENET_CFG = FIXTURES / "mmagic_configs" / "eg3d" / "eg3d_cvt-official-rgb_shapenet-128x128.py"
FAST = RenderSettings(neural_rendering_resolution=16)


@pytest.fixture(scope="module")
def G() -> Generator:
    return eg3d_core.load_generator(CARS_PKL)


def frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------------
# write_video


def test_write_video_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    assert write_video(iter(frames(5)), path, fps=30) == 5
    video = iio.imread(path)
    assert video.shape == (5, 32, 48, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_write_video_sizes_not_multiple_of_16_are_resized_like_imageio(tmp_path: Path) -> None:
    write_video(frames(2, 20, 30), tmp_path / "v.mp4")
    assert iio.imread(tmp_path / "v.mp4").shape == (2, 32, 32, 3)
    write_video(frames(2, 20, 30), tmp_path / "exact.mp4", macro_block_size=1)
    assert iio.imread(tmp_path / "exact.mp4").shape == (2, 20, 30, 3)


def test_write_video_is_atomic_on_error(tmp_path: Path) -> None:
    def broken():
        yield from frames(3)
        raise ValueError("renderer failed")

    with pytest.raises(ValueError, match="renderer failed"):
        write_video(broken(), tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="differs from the first"):
        write_video([np.zeros((16, 16, 3), np.uint8), np.zeros((32, 16, 3), np.uint8)], tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "v.mp4")
    with pytest.raises(OutputError, match="does not exist"):
        write_video(frames(1), tmp_path / "missing" / "v.mp4")
    assert list(tmp_path.iterdir()) == []


def test_write_video_full_disk_is_one_output_error_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    # /dev/full fails every write with ENOSPC: ffmpeg meets a real full disk and exits non-zero.
    command = video._encoder_command
    monkeypatch.setattr(video, "_encoder_command", lambda tmp, *a: [*command(tmp, *a)[:-1], "-f", "mp4", "/dev/full"])
    with pytest.raises(OutputError) as err:
        write_video(iter(frames(5)), tmp_path / "v.mp4")
    assert str(err.value) == (f"cannot write {tmp_path / 'v.mp4'}: ffmpeg failed "
                              "(Could not write header (incorrect codec parameters ?): No space left on device)")
    assert list(tmp_path.iterdir()) == []


def test_write_video_killed_encoder_is_an_error(tmp_path: Path, monkeypatch) -> None:
    script = "import os, signal, sys; sys.stdin.buffer.read(100); os.kill(os.getpid(), signal.SIGKILL)"
    monkeypatch.setattr(video, "_encoder_command", lambda *a: [sys.executable, "-c", script])
    with pytest.raises(OutputError, match=r"v\.mp4: ffmpeg was stopped \(Killed\)$"):
        write_video(iter(frames(30)), tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "reason"), [(b"\0" * 8192, r"does not read back \(.*\)"),
                                                 (None, "holds 2 of 3 frames")])
def test_write_video_checks_the_file_even_when_ffmpeg_exits_0(tmp_path: Path, monkeypatch, content: bytes | None,
                                                               reason: str) -> None:
    command = video._encoder_command

    def lying_encoder(tmp: Path, *args) -> list[str]:
        if content is not None:  # the 8 KB an encoder leaves on a full disk, reported as success
            return [sys.executable, "-c", f"import sys; sys.stdin.buffer.read(); open({str(tmp)!r}, 'wb').write({content!r})"]
        return [*command(tmp, *args)[:-1], "-frames:v", "2", str(tmp)]  # drops the last frame

    monkeypatch.setattr(video, "_encoder_command", lying_encoder)
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path / 'v.mp4'}: the encoded video {reason}$"):
        write_video(iter(frames(3)), tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


def test_write_video_interrupted_stops_ffmpeg(tmp_path: Path, monkeypatch) -> None:
    started = []
    popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(popen(*a, **k)) or started[-1])

    def interrupted():
        yield from frames(3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(interrupted(), tmp_path / "v.mp4")
    assert len(started) == 1 and started[0].returncode is not None
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------------
# Grids


@pytest.mark.parametrize(("n", "square", "wide"), [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (6, 3, 2), (8, 3, 2),
                                                    (9, 3, 3), (16, 4, 3)])
def test_calculate_grid_size_matches_mmagic(n: int, square: int, wide: int) -> None:
    assert calculate_grid_size(n) == square
    assert calculate_grid_size(n, aspect_ratio=2) == wide


def test_make_grid_like_torchvision() -> None:
    imgs = np.stack([np.full((4, 5, 3), k + 1, np.uint8) for k in range(3)])
    grid = make_grid(imgs, nrow=2)
    assert grid.shape == (2 * (4 + 2) + 2, 2 * (5 + 2) + 2, 3)
    assert (grid[2:6, 2:7] == 1).all() and (grid[2:6, 9:14] == 2).all() and (grid[8:12, 2:7] == 3).all()
    assert (grid[8:12, 9:14] == 0).all() and (grid[:2] == 0).all()  # the missing 4th cell and the padding stay black
    assert make_grid(imgs[:1], nrow=2) is imgs[0] or np.array_equal(make_grid(imgs[:1], nrow=2), imgs[0])


def test_layout_grid_is_row_major() -> None:
    imgs = np.stack([np.full((2, 3, 3), k, np.uint8) for k in range(6)])
    grid = layout_grid(imgs, grid_w=3, grid_h=2)
    assert grid.shape == (4, 9, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 1 and grid[0, 6, 0] == 2 and grid[2, 0, 0] == 3 and grid[3, 8, 0] == 5
    with pytest.raises(ValueError, match="grid"):
        layout_grid(imgs, 4, 2)


def test_frame_image_depth_is_per_image_with_near_bright() -> None:
    depth = torch.stack([torch.linspace(1, 2, 16).reshape(1, 4, 4), torch.linspace(5, 9, 16).reshape(1, 4, 4)])
    img = frame_image({"image_depth": depth}, "image_depth")
    assert img.shape == (2, 4, 4, 3)
    assert (img[:, 0, 0] == 255).all() and (img[:, -1, -1] == 0).all()
    assert (img[..., 0] == img[..., 2]).all()
    with pytest.raises(ValueError, match="image_mode"):
        frame_image({"image": depth}, "rgb")


# ----------------------------------------------------------------------------------------------------------------
# gen_videos builders


def test_parse_seeds() -> None:
    assert parse_seeds("0,1,4-6") == [0, 1, 4, 5, 6]
    assert parse_seeds(" 3 ") == [3]
    for bad in ("", "a", "3-1", "1,,2", "-1", "1-2-3", str(2**32)):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_keyframe_layout_and_shuffle(G: Generator) -> None:
    lat = keyframe_latents(G, [0, 1, 2, 3, 4, 5], grid=(3, 1))
    assert lat.ws.shape == (1, 3, 2, G.num_ws, G.w_dim) and lat.grid == (3, 1) and lat.num_keyframes == 2
    assert lat.seeds.tolist() == [[[0, 1], [2, 3], [4, 5]]]
    cond = video_cameras(G, 1)[0]
    torch.testing.assert_close(lat.ws[0, 1, 1], map_seeds(G, [3], cond)[0], rtol=0, atol=1e-5)  # batch size: BLAS order
    tiled = keyframe_latents(G, [7, 8], grid=(1, 1), num_keyframes=5)
    assert tiled.seeds.ravel().tolist() == [7, 8, 7, 8, 7]
    shuffled = keyframe_latents(G, [0, 1, 2, 3], shuffle_seed=1)
    assert sorted(shuffled.seeds.ravel().tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="divisible"):
        keyframe_latents(G, [0, 1, 2], grid=(2, 1))


def test_interpolation_passes_through_keyframes(G: Generator) -> None:
    lat = keyframe_latents(G, [0, 1], grid=(1, 1))
    w_frames = 2
    video = list(latent_interpolation_frames(G, lat, w_frames=w_frames, settings=FAST))
    assert len(video) == 2 * w_frames and video[0].shape == (G.img_resolution, G.img_resolution, 3)
    cams = video_cameras(G, 2 * w_frames)[1]
    for k in range(2):
        t = k * w_frames
        with torch.no_grad():
            want = G.synthesis(lat.ws[0, 0, k : k + 1], cams[t : t + 1], **FAST.render_kwargs(G.config))
        np.testing.assert_allclose(video[t].astype(int), frame_image(want, "image")[0].astype(int), atol=1)
    assert not np.array_equal(video[1], video[0])


def test_single_keyframe_interpolation_equals_orbit(G: Generator) -> None:
    lat = keyframe_latents(G, [5], grid=(1, 1))
    a = list(latent_interpolation_frames(G, lat, w_frames=3, image_mode="image_raw", settings=FAST))
    b = list(orbit_frames(G, lat.ws[0, 0], 3, image_mode="image_raw", settings=FAST))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (16, 16, 3)


# ----------------------------------------------------------------------------------------------------------------
# MMagic demo pieces


def test_builtin_face_camera_equals_mmagic_ffhq_config() -> None:
    ours = demo_camera(PRESETS["ffhq512-128"])
    theirs = demo_camera(PRESETS["ffhq512-128"], parse_mmagic_camera(FFHQ_CFG))
    assert ours.kind == theirs.kind == "gaussian"
    for a, b in zip((ours.horizontal_mean, ours.horizontal_std, ours.vertical_mean, ours.vertical_std, ours.radius,
                     ours.focal, *ours.look_at, *ours.up),
                    (theirs.horizontal_mean, theirs.horizontal_std, theirs.vertical_mean, theirs.vertical_std,
                     theirs.radius, theirs.focal, *theirs.look_at, *theirs.up), strict=True):
        assert a == pytest.approx(b, abs=1e-12)
    assert ours.focal == pytest.approx(4.26339, abs=1e-5)


def test_demo_orbit_follows_mmagic_formula() -> None:
    cam = demo_camera(PRESETS["shapenetcars128-64"], parse_mmagic_camera(SHAPENET_CFG))
    assert cam.kind == "uniform" and cam.up == (0.0, 0.0, 1.0) and cam.focal == 1.025390625
    orbit = cam.orbit(8)
    # Frame 0: yaw at its mean, v = v_mean + v_std (clamped to pi - 1e-5): the camera sits at the lowest pole.
    want0 = cameras.lookat_pose(3.141, 3.141 / 2 + 3.141 / 2, 1.2, (0, 0, 0), (0, 0, 1)).reshape(16)
    torch.testing.assert_close(orbit[0, :16], want0)
    want2 = cameras.lookat_pose(3.141 + 3.141 * math.sin(math.pi / 2), 3.141 / 2, 1.2, (0, 0, 0), (0, 0, 1)).reshape(16)
    torch.testing.assert_close(orbit[2, :16], want2)


def test_draw_latents_replays_mmagic_order() -> None:
    s = DemoSettings(num_images=5, num_batches=3, seed=7)
    torch.manual_seed(7)
    for _ in range(2 * (1 + 5)):  # (theta, phi) for cond_forward, then for each of the 5 orbit frames
        torch.randn(3, 1)
    want = torch.randn(3, 16)
    torch.testing.assert_close(draw_latents(16, s, "gaussian"), want, rtol=0, atol=0)
    # 'conditioning' draws only the cond_forward camera; uniform cameras draw with rand.
    torch.manual_seed(7)
    torch.rand(3, 1), torch.rand(3, 1)
    want = torch.randn(3, 16)
    got = draw_latents(16, DemoSettings(num_images=5, num_batches=3, seed=7, interpolation="conditioning"), "uniform")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.manual_seed(7)
    want = torch.randn(3, 16)
    got = draw_latents(16, DemoSettings(seed=7, num_batches=3, latents="seed"), "gaussian")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(draw_latents(16, DemoSettings(num_images=6, num_batches=3, seed=7), "gaussian"),
                           draw_latents(16, s, "gaussian"))


def test_depth_images_use_global_min_max() -> None:
    depth = torch.stack([torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), 3.0)])  # [T=2, B=2, 1, 4, 4]
    depth[0, 1, 0, 0, 0] = 1.0  # the nearest point of the whole sequence
    out = depth_images(depth, 8)
    assert out.shape == (2, 2, 8, 8, 3) and out.dtype == np.uint8
    assert (out[1] == 0).all()  # the farthest frame is black everywhere: normalised by the sequence, not per frame
    assert out[0, 0, 4, 4, 0] == 127  # (3 - 2) / (3 - 1) * 255 = 127.5, truncated
    assert out[0, 1].max() == 255


@pytest.mark.parametrize("mode", ["both", "camera", "conditioning"])
def test_demo_interpolation_modes_move_the_right_camera(G: Generator, mode: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy that uses its conditioning (the fixture zeroes it, like ShapeNet), so the modes differ.
    Gc = Generator(G.config.replace(rendering={"c_gen_conditioning_zero": False}))
    Gc.load_state_dict(G.state_dict())
    seen: dict[str, list[torch.Tensor]] = {"cond": [], "render": []}
    mapping, render = Gc.mapping, Gc.render_planes
    monkeypatch.setattr(Gc, "mapping", lambda z, c, *a, **k: seen["cond"].append(c) or mapping(z, c, *a, **k))
    monkeypatch.setattr(Gc, "render_planes", lambda p, ws, c, **k: seen["render"].append(c) or render(p, ws, c, **k))
    s = DemoSettings(interpolation=mode, num_images=3, num_batches=2, render=FAST)
    frames = render_demo(Gc, demo_camera(Gc.config), s)
    assert frames.images.shape == (3, 2, 128, 128, 3) and frames.depth.shape == (3, 2, 1, 16, 16)
    moves = {k: not torch.equal(v[0], v[1]) for k, v in seen.items()}
    assert moves == {"both": {"cond": True, "render": True}, "camera": {"cond": False, "render": True},
                     "conditioning": {"cond": True, "render": False}}[mode]
    if mode == "both":
        assert all(torch.equal(a, b) for a, b in zip(seen["cond"], seen["render"], strict=True))
    assert not np.array_equal(frames.images[0], frames.images[1])  # never MMagic's static 'conditioning' video
