"""Tests of the bundled demo generator (assets/demo) and of the scripts that make and evaluate it.

Everything stays small: batch <= 4 at the model's own 64px render, a few training steps with tiny settings.
The quality thresholds are loose (well below the figures in assets/README.md) but far above what an untrained
or broken model reaches.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file

from eg3d_core.cameras import SHAPENET_FOCAL, camera_vector, intrinsics_from_focal, lookat_pose
from eg3d_core.checkpoints import DEMO_MODEL, load_generator
from eg3d_core.generator import Generator
from eg3d_core.rendering.rays import sample_rays
from eg3d_core.rendering.renderer import render_rays
from eg3d_core.rendering.triplane import plane_table
from eg3d_core.training import toycars as tc

REPO = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cams(yaws: list[float], pitch: float = math.pi / 2 - 0.25) -> torch.Tensor:
    pose = lookat_pose(torch.tensor(yaws, dtype=torch.float64), torch.full((len(yaws),), pitch, dtype=torch.float64),
                       radius=tc.CAMERA_RADIUS)
    return camera_vector(pose, intrinsics_from_focal(SHAPENET_FOCAL)).float()


def latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


@pytest.fixture(scope="module")
def G() -> Generator:
    return load_generator("demo")


@pytest.fixture(scope="module")
def outputs(G: Generator) -> dict[str, torch.Tensor]:
    """Seeds 0, 0, 1, 1 from cameras A, B, A, B, with the opacity and the ground truth."""
    z = latents([0, 0, 1, 1], G.z_dim)
    c = cams([math.pi / 2 + 0.7, math.pi / 2 + 2.5] * 2)
    with torch.no_grad():
        out = G(z, c)
        r = G.config.rendering
        planes = G.planes(G.mapping(z, c))
        origins, dirs = sample_rays(c, r.neural_rendering_resolution)
        table = plane_table(planes)
        _, _, wsum = render_rays(lambda pts: G.sample_planes(pts, planes, table=table), origins, dirs, r.ray_start,
                                 r.ray_end, r.depth_resolution, r.depth_resolution_importance, r.white_back, True)
        gt = tc.render(tc.params_from_latent(z), c, r.neural_rendering_resolution)
    res = r.neural_rendering_resolution
    return {**out, "opacity": wsum.transpose(1, 2).reshape(4, 1, res, res), "gt_image": gt["image"],
            "gt_depth": gt["depth"], "gt_mask": gt["mask"]}


def test_demo_loads_and_is_small(G: Generator) -> None:
    cfg = G.config
    assert (cfg.img_resolution, cfg.rendering.neural_rendering_resolution, cfg.sr_module) == (128, 64, "2X")
    assert cfg.rendering.white_back and cfg.rendering.c_gen_conditioning_zero
    assert (DEMO_MODEL / "config.json").is_file()
    assert (DEMO_MODEL / "model.safetensors").stat().st_size < 20 * 2**20
    weights = load_file(str(DEMO_MODEL / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert weights["backbone.mapping.w_avg"].abs().sum() > 0  # set at export (truncation centre)


def test_output_shapes(outputs: dict[str, torch.Tensor]) -> None:
    assert outputs["image"].shape == (4, 3, 128, 128)
    assert outputs["image_raw"].shape == (4, 3, 64, 64)
    assert outputs["image_depth"].shape == (4, 1, 64, 64)
    assert all(torch.isfinite(outputs[k]).all() for k in ("image", "image_raw", "image_depth"))


def test_images_are_not_blank(outputs: dict[str, torch.Tensor]) -> None:
    image = outputs["image"]
    assert float(image.flatten(1).std(1).min()) > 0.15
    # white background, a car in the middle: some clearly non-white pixels in every image
    dark = (image.min(dim=1).values < 0.5).flatten(1).float().mean(1)
    assert float(dark.min()) > 0.05


def test_seeds_and_cameras_change_the_output(outputs: dict[str, torch.Tensor]) -> None:
    image = outputs["image"]
    assert float((image[0] - image[2]).abs().mean()) > 0.03  # seed 0 vs 1, camera A
    assert float((image[1] - image[3]).abs().mean()) > 0.03  # seed 0 vs 1, camera B
    assert float((image[0] - image[1]).abs().mean()) > 0.03  # camera A vs B, seed 0


def test_geometry_matches_the_ground_truth(outputs: dict[str, torch.Tensor]) -> None:
    car = outputs["gt_mask"] > 0.999
    background = outputs["gt_mask"] == 0
    pred = outputs["opacity"] > 0.5
    # the opacity separates the car from the background
    iou = (pred & car).sum((1, 2, 3)).float() / (pred | car).sum((1, 2, 3)).float()
    assert float(iou.min()) > 0.8
    assert float(outputs["opacity"][background].mean()) < 0.1
    # depth on the car is close to the true surface and nearer than the far end of the rays
    err = (outputs["image_depth"] - outputs["gt_depth"]).abs()[car]
    assert float(err.median()) < 0.05
    assert float(outputs["image_depth"][car].mean()) < tc.RAY_END - 0.5


def test_images_resemble_the_ground_truth(outputs: dict[str, torch.Tensor]) -> None:
    evaluate = _script("evaluate_demo_model")
    raw = evaluate.psnr(outputs["image_raw"], outputs["gt_image"])
    white = evaluate.psnr(torch.ones_like(outputs["gt_image"]), outputs["gt_image"])
    assert float((raw - white).min()) > 7.0
    assert float(evaluate.ssim(outputs["gt_image"], outputs["gt_image"]).min()) == pytest.approx(1.0)


def test_training_script_runs_resumes_and_is_reproducible(tmp_path: Path) -> None:
    train = _script("train_demo_model")
    tiny = ["--batch", "1", "--views", "2", "--rays", "32", "--samples", "8", "8", "--sr-every", "2", "--sr-batch", "1",
            "--no-progress"]

    def run(name: str, steps: int, *extra: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train.main(["--out", str(out), "--run-dir", str(tmp_path / f"run_{name}"), "--steps", str(steps), *tiny, *extra])
        return load_file(str(out / "model.safetensors"))

    a = run("a", 3)
    run("c", 2)
    c = run("c", 3, "--resume")  # a second run, interrupted and resumed, gives the same weights
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    G = load_generator(tmp_path / "a")
    assert G.config == train.demo_config()
    with torch.no_grad():
        out = G.synthesis(G.mapping(torch.randn(1, G.z_dim), cams([1.0])), cams([1.0]), neural_rendering_resolution=16,
                          depth_resolution=6, depth_resolution_importance=6)
    assert out["image"].shape == (1, 3, 128, 128) and torch.isfinite(out["image"]).all()


def test_training_recipe_flags_resume_bit_exact(tmp_path: Path) -> None:
    """The recipe flags (box, capacity, empty-space penalty, edge loss, patch discriminator with R1) train, change the
    architecture as asked, and an interrupted-and-resumed run (discriminator state included) matches a straight one."""
    train = _script("train_demo_model")
    tiny = ["--batch", "1", "--views", "1", "--rays", "16", "--samples", "4", "4", "--sr-every", "1", "--sr-batch", "1",
            "--probe-batch", "4", "--no-progress", "--box-warp", "1.6", "--triplane-res", "32", "--triplane-channels",
            "8", "--decoder-hidden", "32", "--sr-channels", "16", "8", "--w-empty", "1", "--empty-points", "64",
            "--w-edge", "1", "--w-adv", "0.1", "--adv-crop", "32"]

    def run(name: str, steps: int, *extra: str) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        train.main(["--out", str(out), "--run-dir", str(tmp_path / f"run_{name}"), "--steps", str(steps), *tiny, *extra])
        return load_file(str(out / "model.safetensors"))

    a = run("a", 2)
    run("c", 1)
    c = run("c", 2, "--resume")
    assert a.keys() == c.keys() and all(torch.equal(a[k], c[k]) for k in a)
    ck = torch.load(tmp_path / "run_a" / "checkpoint.pt", weights_only=True)
    assert "disc" in ck and "disc_optim" in ck
    G = load_generator(tmp_path / "a")
    assert G.config == train.demo_config(1.6, 32, 8, 32, (16, 8)) != train.demo_config()
    assert G.config.rendering.box_warp == 1.6 and G.config.triplane_resolution == 32


def test_empty_space_loss_sees_density_beyond_the_box() -> None:
    """The empty-space penalty is near 0 for an empty field and near 1 for one that is dense everywhere."""
    train = _script("train_demo_model")
    G = Generator(train.demo_config())
    planes = torch.zeros(1, 3, 16, 64, 64)
    z = latents([5], 64)
    with torch.no_grad():
        G.decoder.net[2].bias[0] = -10.0
        low = float(train.empty_space_loss(G, planes, z, torch.Generator().manual_seed(0), 256, 1.0, 0.03, 0.1))
        G.decoder.net[2].bias[0] = 60.0
        high = float(train.empty_space_loss(G, planes, z, torch.Generator().manual_seed(0), 256, 1.0, 0.03, 0.1))
    assert low < 1e-3 and high > 0.99


def test_training_script_bfloat16_autocast(tmp_path: Path) -> None:
    """--bf16 trains under bfloat16 autocast (slow on AVX2 CPUs, so one tiny step) and still exports a finite model
    that differs from the float32 one."""
    train = _script("train_demo_model")
    tiny = ["--batch", "1", "--views", "1", "--rays", "16", "--samples", "4", "4", "--sr-every", "1", "--sr-batch", "1",
            "--probe-batch", "4", "--no-progress", "--steps", "1"]
    for name, extra in (("fp32", []), ("bf16", ["--bf16"])):
        train.main(["--out", str(tmp_path / name), "--run-dir", str(tmp_path / f"run_{name}"), *tiny, *extra])
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("fp32", "bf16"))
    assert all(torch.isfinite(v).all() for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_evaluation_script_runs(tmp_path: Path) -> None:
    evaluate = _script("evaluate_demo_model")
    report = evaluate.main(["--num-cars", "1", "--views", "1", "--json", str(tmp_path / "e.json"), "--markdown",
                            str(tmp_path / "e.md"), "--grid", str(tmp_path / "g.png"), "--grid-seeds", "1",
                            "--no-progress", "--no-timing"])
    metrics = report["metrics"]
    assert isinstance(metrics, dict) and metrics["psnr"] > metrics["psnr_white"]
    assert 0.0 <= metrics["outside_opacity"] < 0.5 and 0.0 <= metrics["outside_opacity_edge_rows"] < 0.5
    assert 0.1 < metrics["sharpness"] < 2.0
    text = (tmp_path / "e.md").read_text()
    assert (tmp_path / "g.png").stat().st_size > 1000 and "| PSNR" in text and "Edge sharpness" in text


def test_sharpness_and_outside_opacity_metrics() -> None:
    """The edge-sharpness ratio is 1 for the truth itself, falls for a blurred copy and rises for added noise; the
    outside opacity counts the opacity on pixels the car does not touch, the top and bottom rows separately."""
    evaluate = _script("evaluate_demo_model")
    c = cams([0.3, 2.0])
    gt = tc.render(tc.params_from_latent(latents([3, 4], tc.PARAM_DIM)), c, 128)
    car = gt["mask"][:, :, :-1, :-1] > 0.5

    def ratio(image: torch.Tensor) -> float:
        return float(evaluate.gradient_magnitude(image)[car].sum() / evaluate.gradient_magnitude(gt["image"])[car].sum())

    blurred = torch.nn.functional.avg_pool2d(gt["image"], 5, 1, 2, count_include_pad=False)
    assert ratio(gt["image"]) == pytest.approx(1.0)
    assert ratio(blurred) < 0.8
    assert ratio(gt["image"] + 0.2 * torch.randn(gt["image"].shape, generator=torch.Generator().manual_seed(0))) > 1.2

    G = load_generator("demo")
    calls = {}

    def fake_render(G_: Generator, z: torch.Tensor, c_: torch.Tensor) -> dict[str, torch.Tensor]:
        t = tc.render(tc.params_from_latent(z), c_, 64)
        t128 = tc.render(tc.params_from_latent(z), c_, 128)
        opacity = t["mask"].clone()
        opacity[:, :, :2] = 0.5  # a perfect car and a streak along the top 2 rows (empty in the truth there)
        calls["n"] = calls.get("n", 0) + 1
        return {"image": t128["image"], "raw": t["image"], "depth": t["depth"], "opacity": opacity}

    real = evaluate.render_model
    evaluate.render_model = fake_render
    try:
        m = evaluate.evaluate(G, 2, 1, progress=False)
    finally:
        evaluate.render_model = real
    assert calls["n"] == 1 and m["sharpness"] == pytest.approx(1.0) and m["mask_iou"] > 0.95
    top_empty = 2 * 64  # the top 2 rows are empty in the truth for these cameras
    assert m["outside_opacity_edge_rows"] == pytest.approx(0.5 * top_empty / (8 * 64), rel=0.05)
    assert 0.0 < m["outside_opacity"] < m["outside_opacity_edge_rows"]


def test_latent_probe_error_measures_how_precisely_w_codes_the_car() -> None:
    """0 when w holds the car's parameters linearly, the parameters' own spread (1/sqrt(12)) when w knows nothing of
    them, and in between (a few percent of each range) for the bundled model."""
    evaluate = _script("evaluate_demo_model")

    class Stub:
        z_dim, c_dim = tc.PARAM_DIM + 4, 0

        def __init__(self, code) -> None:  # noqa: ANN001
            self.code = code

        def mapping(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.code(z)[:, None]

    exact = Stub(lambda z: torch.cat([3 * tc.params_from_latent(z) - 1, z[:, :2]], dim=1))
    blind = Stub(lambda z: torch.randn(len(z), 8, generator=torch.Generator().manual_seed(1)))
    assert evaluate.latent_probe_error(exact, n=2000) < 1e-6
    assert evaluate.latent_probe_error(blind, n=2000) == pytest.approx(12 ** -0.5, rel=0.05)
    assert 0.01 < evaluate.latent_probe_error(load_generator("demo"), n=4000) < 0.15


def test_patch_discriminator_learns_to_tell_the_truth_from_its_blur() -> None:
    """With the recipe's R1 weight the discriminator separates held-out pictures from their 5-px box-blurred copies
    within 300 updates (R1 gamma 1, the earlier default, keeps it at chance: margin ~0.003)."""
    train = _script("train_demo_model")
    torch.manual_seed(0)

    def pictures(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 64, generator=gen)
        image = tc.render(tc.params_from_latent(z), tc.random_cameras(n, gen).float(), 128)["image"]
        return image, torch.nn.functional.avg_pool2d(image, 5, 1, 2, count_include_pad=False)

    (real, fake), (held_real, held_fake) = pictures(16, 1), pictures(16, 2)
    args = train.parse_args([])
    D = train.PatchDiscriminator(3, args.d_width)
    opt = torch.optim.Adam(D.parameters(), lr=args.d_lr, betas=(0.0, 0.99), eps=1e-8)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        pick = torch.randint(0, 16, (2,), generator=gen)
        crops = train.random_crops([real[pick], fake[pick]], args.adv_crop, gen)
        train.discriminator_step(D, opt, crops[0], crops[1], args.r1_gamma)
    with torch.no_grad():
        margin = float(D(held_real).mean() - D(held_fake).mean())
    assert margin > 0.5, margin
