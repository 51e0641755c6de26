"""Tests of eg3d_core.inversion and ``eg3d invert`` on the bundled demo model (few steps: each inversion takes
seconds)."""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eg3d_core import cameras, kernels, load_generator
from eg3d_core.apps.cli import main as cli
from eg3d_core.inversion import (
    InversionCancelled,
    InversionSettings,
    camera_from_offsets,
    invert,
    load_picture,
    psnr,
)
from eg3d_core.latents import LatentSource

# Few steps everywhere: enough to find the camera and a close fit, fast enough for the test suite.
FAST = InversionSettings(coarse_steps=30, fine_steps=6, search_latents=3, candidate_steps=8, finalist_steps=8,
                         preview_every=0)
TRUE_YAW, TRUE_PITCH = 35.0, -15.0  # degrees, the viewer's offsets
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def G():
    torch.set_num_threads(1)
    return load_generator("demo")


@pytest.fixture(scope="module")
def target(G):
    """A picture the model renders itself: seed 7 (psi 0.7) from (TRUE_YAW, TRUE_PITCH), as uint8 [128, 128, 3]."""
    ws = LatentSource(seed=7, psi=0.7).ws(G)
    c = cameras.camera(cameras.camera_defaults(G.config), math.radians(TRUE_YAW), math.radians(TRUE_PITCH))
    with torch.no_grad():
        image = G.synthesis(ws, c)["image"]
    return ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _yaw_error(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_differentiable_camera_equals_cameras_module(G):
    d = cameras.camera_defaults(G.config)
    yaw = torch.tensor([0.0, 0.4, -1.7, 3.0], requires_grad=True)
    pitch = torch.tensor([0.0, -0.5, 0.2, 0.05], requires_grad=True)
    c = camera_from_offsets(d, yaw, pitch)
    # float32 trigonometry against cameras' float64 numpy: rounding only
    torch.testing.assert_close(c.detach(), cameras.camera(d, yaw.detach().numpy(), pitch.detach().numpy()),
                               atol=1e-6, rtol=0)
    c[:, 3].sum().backward()  # the camera x position moves with yaw
    assert yaw.grad is not None and bool((yaw.grad.abs() > 1e-3).any())


def test_inversion_finds_camera_and_fits(G, target):
    result = invert(G, target, FAST)
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and result.ws.dtype == torch.float32
    assert result.c.shape == (1, 25)
    # the camera search grid steps 15 deg in yaw and 10 in pitch; refinement must land well inside a grid cell
    assert _yaw_error(result.yaw, TRUE_YAW) < 5.0, (result.yaw, result.pitch)
    assert abs(result.pitch - TRUE_PITCH) < 5.0, (result.yaw, result.pitch)
    # the average w at the right camera scores about 14 dB on this picture; a real fit is far closer
    assert result.psnr > 22.0
    assert set(result.timings) == {"camera", "coarse", "fine"}
    torch.testing.assert_close(result.c, cameras.camera(cameras.camera_defaults(G.config),
                                                        math.radians(result.yaw), math.radians(result.pitch)))


def test_given_camera_is_kept(G, target):
    s = InversionSettings(coarse_steps=5, fine_steps=0, preview_every=0)
    result = invert(G, target, s, yaw=TRUE_YAW, pitch=TRUE_PITCH)
    assert result.yaw == pytest.approx(TRUE_YAW) and result.pitch == pytest.approx(TRUE_PITCH)
    assert "camera" not in result.timings
    with pytest.raises(ValueError, match="both yaw and pitch"):
        invert(G, target, s, yaw=10.0)


def test_global_random_state_untouched_and_reproducible(G, target):
    s = InversionSettings(coarse_steps=2, fine_steps=0, search_latents=2, search_candidates=1, candidate_steps=1,
                          pti_steps=1, preview_every=0)
    state = torch.get_rng_state()
    first = invert(G, target, s)
    assert torch.equal(torch.get_rng_state(), state)
    second = invert(G, target, s)
    assert torch.equal(first.ws, second.ws) and first.yaw == second.yaw


@pytest.mark.parametrize("up, demodulate, noise", [(False, True, True), (True, True, False), (False, False, False)])
def test_gradient_backend_modulated_conv_equals_reference(up, demodulate, noise):
    from eg3d_core.kernels import grad
    from eg3d_core.networks.layers import modulated_conv2d

    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 6, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(5, 6, 3, 3, generator=gen), torch.randn(5, generator=gen)
    s0 = torch.randn(1, 6, generator=gen) + 1
    n = torch.randn(1, 1, 16 if up else 8, 16 if up else 8, generator=gen) if noise else None
    out = {}
    for backend in ("ref", "grad"):
        x, styles = x0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
        with kernels.use(backend):
            y = modulated_conv2d(x, weight, styles, demodulate, up, n, bias, 0.7, True, 2.0)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        out[backend] = (y.detach(), x.grad, styles.grad)
    for a, b in zip(out["ref"], out["grad"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # it serves only gradient steps to the styles with a frozen weight: the reference runs the rest
    x, styles = x0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
    args = (demodulate, up, n, bias, 0.7, True, 2.0, None)
    assert grad.modulated_conv2d(x, weight, styles, *args) is not None
    assert grad.modulated_conv2d(x, weight.clone().requires_grad_(True), styles, *args) is None  # pivotal tuning
    assert grad.modulated_conv2d(x, weight, s0, *args) is None
    with torch.no_grad():
        assert grad.modulated_conv2d(x, weight, styles, *args) is None


def test_gradient_backend_step_equals_reference(G, target):
    """One coarse and one fine step of the inversion (loss, gradients to w and the camera) on the gradient backend
    equal the reference code's to float32 rounding."""
    from eg3d_core.inversion import _Inverter, model_background

    inv = _Inverter(G, load_picture(target, G.img_resolution, model_background(G)), InversionSettings(), None, None)
    u0 = 0.5 * torch.randn(1, G.w_dim, generator=torch.Generator().manual_seed(5))
    r = G.config.rendering
    for res, samples, sr in ((32, 12, False), (r.neural_rendering_resolution, 12, True)):
        out = {}
        for backend in ("ref", "grad"):
            u = u0.clone().requires_grad_(True)
            angles = torch.tensor([0.3, -0.2], requires_grad=True)
            with kernels.use(backend):
                ws = inv.ws_of(u)
                c = camera_from_offsets(inv.defaults, angles[:1], angles[1:])
                feats, _, opacity = inv.render_raw(G, ws, c, res, samples, samples)
                image = G.super_resolve(feats, ws) if sr else feats[:, :3]
                loss = inv.image_loss(image, feats[:, :3] if sr else None, opacity)
            loss.backward()
            out[backend] = (loss.detach(), u.grad, angles.grad)
        torch.testing.assert_close(out["grad"][0], out["ref"][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(out["ref"][1:], out["grad"][1:], strict=True):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


def test_camera_search_adds_the_front_back_twin_on_full_circle_models(G, target):
    """The cars' cameras go all the way round: the best grid camera's twin 180 deg of yaw away is a candidate too
    (on a blurry model a car's front and back look alike); the faces' cameras do not, and get no twin."""
    from eg3d_core.inversion import _Inverter, full_circle

    s = InversionSettings(search_latents=1, search_candidates=1, preview_every=0)
    picture = load_picture(target, G.img_resolution)
    with_twin = _Inverter(G, picture, s, None, None).camera_search()
    without = _Inverter(G, picture, replace(s, twin=False), None, None).camera_search()
    assert full_circle(G) and len(without) == 1 and len(with_twin) == 2
    (y0, p0, _), (y_twin, p_twin, _) = with_twin
    assert (y0, p0) == without[0][:2] and _yaw_error(math.degrees(y0), TRUE_YAW) < 15
    assert _yaw_error(math.degrees(y_twin), math.degrees(y0) + 180) < 1e-6 and p_twin == p0
    # the twin joins even where the grid picked a camera near it (this picture's second best, 15 deg away)
    two = _Inverter(G, picture, replace(s, search_candidates=2), None, None).camera_search()
    assert len(two) == 3 and _yaw_error(math.degrees(two[1][0]), math.degrees(y0) + 180) < 30
    assert two[2][:2] == (y_twin, p_twin)
    assert not full_circle(load_generator(FIXTURES / "tiny_ffhq512" / "network-snapshot.pkl"))
    assert InversionSettings().camera_steps(full_circle=True) == 3 * 10 + 2 * 30
    assert InversionSettings().camera_steps(full_circle=False) == 2 * 10 + 2 * 30
    assert InversionSettings(search_candidates=1, twin=False).camera_steps(True) == 10


def test_silhouette_steers_the_camera_stage_only_by_default(G, target):
    """The silhouette and opacity terms weigh in while camera candidates are refined; afterwards they are scaled by
    refine_shape_scale (0 by default: the later stages are the same whatever their weights)."""
    from eg3d_core.inversion import _Inverter

    picture = load_picture(target, G.img_resolution)
    u0 = torch.zeros(1, G.w_dim)

    def run(stage: str, **kw) -> torch.Tensor:  # noqa: ANN003
        inv = _Inverter(G, picture, InversionSettings(preview_every=0, **kw), None, None)
        return inv.refine(stage, u0, 0.5, -0.2, 2, False, True)[0]

    assert torch.equal(run("coarse"), run("coarse", silhouette_weight=2.0, opacity_weight=1.0))
    assert not torch.equal(run("camera"), run("camera", silhouette_weight=2.0, opacity_weight=1.0))
    assert not torch.equal(run("coarse", refine_shape_scale=1.0),
                           run("coarse", refine_shape_scale=1.0, silhouette_weight=2.0, opacity_weight=1.0))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="coarse_steps must be an integer"):
        InversionSettings(coarse_steps=2.5)
    with pytest.raises(ValueError, match="twin must be true or false"):
        InversionSettings(twin=1)
    with pytest.raises(ValueError, match="finalists must be an integer >= 1"):
        InversionSettings(finalists=0)
    with pytest.raises(ValueError, match="lr_w must be a number >= 0"):
        InversionSettings(lr_w=float("nan"))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        InversionSettings().with_steps(0)
    assert InversionSettings().with_steps(7).coarse_steps + InversionSettings().with_steps(7).fine_steps == 7


def test_picture_forms():
    # fully transparent black -> the background; the resize's weights sum to 1 up to float32 rounding
    white = load_picture(np.zeros((20, 20, 4), np.uint8), 16, background=1.0)
    torch.testing.assert_close(white, torch.ones(1, 3, 16, 16), atol=1e-6, rtol=0)
    opaque = np.zeros((20, 20, 4), np.uint8)
    opaque[..., 3] = 255
    torch.testing.assert_close(load_picture(opaque, 16), -torch.ones(1, 3, 16, 16), atol=1e-6, rtol=0)
    grey = load_picture(np.full((30, 30), 128, np.uint8), 30)
    assert grey.shape == (1, 3, 30, 30) and torch.equal(grey[:, 0], grey[:, 2])
    # not square: padded with the background, the picture kept whole in the middle
    wide = load_picture(Image.new("RGB", (60, 20), (0, 0, 0)), 60, background=1.0)
    assert wide.shape == (1, 3, 60, 60)
    assert float(wide[0, :, 30, 30].max()) == -1.0 and float(wide[0, :, 2, 30].min()) == 1.0
    floats = load_picture(np.full((9, 9, 3), 0.5, np.float32), 9)
    assert torch.allclose(floats, torch.zeros(1, 3, 9, 9))
    with pytest.raises(ValueError, match="too small"):
        load_picture(np.zeros((1, 1, 3), np.uint8), 16)
    with pytest.raises(ValueError, match="path, a PIL image or a numpy array"):
        load_picture([[0]], 16)


def test_any_size_rgba_picture_inverts(G, target):
    rgba = Image.fromarray(target).convert("RGBA").resize((77, 77))
    result = invert(G, rgba, InversionSettings(coarse_steps=3, fine_steps=0, preview_every=0),
                    yaw=TRUE_YAW, pitch=TRUE_PITCH)
    assert result.fit is not None and result.fit.shape == (1, 3, G.img_resolution, G.img_resolution)


def test_progress_previews_and_cancel(G, target):
    calls = []
    s = InversionSettings(coarse_steps=4, fine_steps=2, preview_every=2)
    invert(G, target, s, yaw=0.0, pitch=0.0, progress=lambda *a: calls.append(a))
    assert [(a[0], a[1], a[2]) for a in calls] == [("coarse", i, 4) for i in range(1, 5)] + [("fine", 1, 2),
                                                                                        ("fine", 2, 2)]
    previews = [a[3] for a in calls if a[3] is not None]
    assert len(previews) == 3  # coarse steps 2 and 4, fine step 2
    assert all(p.shape == (G.img_resolution, G.img_resolution, 3) and p.dtype == np.uint8 for p in previews)

    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    steps = []
    with pytest.raises(InversionCancelled):
        invert(G, target, s, progress=lambda *a: steps.append(a), should_stop=stop)
    assert len(steps) == 3  # stopped before the fourth step


def test_pti_tunes_a_copy(G, target):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    s = InversionSettings(coarse_steps=3, fine_steps=0, pti_steps=4, lr_pti=1e-3, preview_every=0)
    result = invert(G, target, s, yaw=TRUE_YAW, pitch=TRUE_PITCH)
    assert result.generator is not None and result.generator is not G
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    tuned = result.generator.state_dict()
    changed = [k for k in before if not torch.equal(before[k], tuned[k])]
    assert any(k.startswith("backbone.synthesis") for k in changed)
    assert not any(k.startswith("backbone.mapping") for k in changed)  # the pivot's mapping stays
    c = result.c
    with torch.no_grad():
        fit_tuned = result.generator.synthesis(result.ws, c)["image"]
        fit_orig = G.synthesis(result.ws, c)["image"]
    pic = load_picture(target, G.img_resolution)
    assert float(psnr(fit_tuned, pic)) > float(psnr(fit_orig, pic))  # tuning moved towards the picture


# ------------------------------------------------------------------------------------------------------------
# The command


def _png(path: Path, width: int, height: int, data: bytes = b"") -> Path:
    """A PNG with this header size and ``data`` as its (possibly bogus) compressed pixel stream."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_cli_end_to_end(tmp_path, target, capsys):
    Image.fromarray(target).save(tmp_path / "car.png")
    out = tmp_path / "out"
    args = ["invert", str(tmp_path / "car.png"), "--outdir", str(out), "--steps", "4", "--yaw", str(TRUE_YAW),
            "--pitch", str(TRUE_PITCH), "-q"]
    assert cli(args + ["--pti", "--pti-steps", "2"]) == 0
    with np.load(out / "car.npz", allow_pickle=False) as f:
        assert f["ws"].shape == (1, 10, 128) and f["ws"].dtype == np.float32
        assert f["c"].shape == (1, 25)
        assert float(f["yaw"]) == pytest.approx(TRUE_YAW) and float(f["pitch"]) == pytest.approx(TRUE_PITCH)
        assert {"loss_coarse", "time_coarse", "loss_pti", "time_pti", "psnr", "seconds"} <= set(f.files)
    tuned = load_generator(out / "car")  # the PTI generator, in our format
    assert tuned.num_ws == 10
    assert LatentSource.from_file(out / "car.npz").ws(tuned).shape == (1, 10, 128)

    # resumable: a rerun leaves the finished picture alone
    mtime = (out / "car.npz").stat().st_mtime_ns
    capsys.readouterr()
    assert cli(args[:-1]) == 0  # without -q: the note is shown
    assert (out / "car.npz").stat().st_mtime_ns == mtime
    assert "skipping 1 picture(s) already inverted" in capsys.readouterr().err

    # the latent feeds the other commands
    assert cli(["video", "--latent", str(out / "car.npz"), "--outdir", str(tmp_path / "v"), "--w-frames", "2",
                "--nrr", "32", "--sample-mult", "1", "-q"]) == 0
    assert (tmp_path / "v" / "car.mp4").stat().st_size > 0
    assert cli(["mesh", "--latent", str(out / "car.npz"), "--model", str(out / "car"), "--outdir",
                str(tmp_path / "m"), "--resolution", "32", "-q"]) == 0
    assert (tmp_path / "m" / "car.ply").stat().st_size > 0


@pytest.mark.parametrize("case", ["not_image", "tiny", "bomb", "corrupt", "outdir"])
def test_cli_bad_input_is_one_line(tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "not_image":
        picture = tmp_path / "x.png"
        picture.write_text("hello")
    elif case == "tiny":
        picture = tmp_path / "x.png"
        Image.new("RGB", (1, 1)).save(picture)
    elif case == "bomb":  # 50k x 50k in the header; decoding it would take 7.5 GB
        picture = _png(tmp_path / "x.png", 50_000, 50_000, zlib.compress(b"\0" * 100))
    elif case == "corrupt":  # a real header, then a broken pixel stream
        picture = _png(tmp_path / "x.png", 32, 32, b"garbage" * 10)
    else:
        picture = tmp_path / "x.png"
        Image.new("RGB", (32, 32)).save(picture)
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
    capsys.readouterr()
    assert cli(["invert", str(picture), "--outdir", str(out), "--steps", "2", "-q"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    expected = {"not_image": "not an image", "tiny": "too small", "bomb": "too large", "corrupt": "corrupt",
                "outdir": "cannot write"}[case]
    assert expected in lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


class _MeanBlurDistance(torch.nn.Module):
    """A stand-in perceptual distance: L1 between 4x average-pooled images, per image."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pa = torch.nn.functional.avg_pool2d(a, 4)
        pb = torch.nn.functional.avg_pool2d(b, 4)
        return (pa - pb).abs().flatten(1).mean(1)


def test_a_local_perceptual_module_enters_the_loss(G, target, tmp_path):
    """A TorchScript distance given as a file is used (the losses change with its weight); nothing is downloaded."""
    path = tmp_path / "distance.pt"
    torch.jit.script(_MeanBlurDistance()).save(str(path))
    fast = InversionSettings(coarse_steps=3, fine_steps=2, preview_every=0)
    base = invert(G, target, fast, yaw=TRUE_YAW, pitch=TRUE_PITCH)
    with_distance = invert(G, target, InversionSettings(**{**fast.__dict__, "perceptual": str(path),
                                                            "perceptual_weight": 5.0}),
                           yaw=TRUE_YAW, pitch=TRUE_PITCH)
    assert with_distance.losses["fine"] > base.losses["fine"]  # the extra term is part of the reported loss
    assert not torch.equal(with_distance.ws, base.ws)  # and of the gradient


@pytest.mark.parametrize("content, expected", [(None, "no such perceptual-loss weights file"),
                                               (b"not torchscript", "not a TorchScript perceptual-loss module")])
def test_a_bad_perceptual_file_is_one_line(G, target, tmp_path, content, expected):
    path = tmp_path / "distance.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as e:
        invert(G, target, InversionSettings(coarse_steps=1, fine_steps=0, perceptual=str(path)), yaw=0.0, pitch=0.0)
    assert "\n" not in str(e.value)
