"""Train the bundled demo generator (``assets/demo``) on the procedural toy-car family, on CPU.

    python scripts/train_demo_model.py --out assets/demo --run-dir runs/demo --minutes 75

The generator is a narrow version of EG3D's ShapeNet-cars architecture (``demo_config``). It is not trained as
a GAN: the latent z is tied to the family (``toycars.params_from_latent(z)``), so every z has a ground-truth
car, and each step renders fresh (z, camera, image/depth/mask) triples with the analytic renderer of
``eg3d_core.training.toycars``. The losses:

* ray steps (every step): a random subset of the 64x64 rays of several views per car (multi-view supervision
  of one tri-plane set), volume-rendered with the model's two-pass sampler; photometric MSE of the raw RGB,
  opacity (weight sum vs the ground-truth coverage mask) and a depth term: the expected absolute distance of the
  ray's weights from the true surface depth on car pixels, which asks for a correct *and* sharp surface;
* super-resolution steps (every ``--sr-every`` steps): one full 64x64 render per car without gradients, then
  the 2X super-resolution (and the mapping, through its styles) against the 128px ground truth;
* a latent probe: a linear head (discarded at export) predicts the car's parameters and colours from w, on a
  large batch of extra latents each step (they cost one tiny MLP pass). Learning the hue -> RGB map through
  the renderer alone, a few cars per step, is very slow; this gives w an explicit, cleanly supervised code of
  the car that the backbone's and super-resolution's styles only have to read linearly.

Everything random is drawn from generators seeded with (``--seed``, step), so a run (and a resumed run) is
reproducible for a given thread count. Checkpoints go to ``--run-dir`` every few minutes (``--resume``
continues from there); at the end (``--steps`` done or the ``--minutes`` wall budget spent, or SIGINT/SIGTERM)
``w_avg`` is set to the mean w and the model is exported with ``save_generator`` to ``--out``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are 3-6x slower on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core.checkpoints import save_generator  # noqa: E402
from eg3d_core.config import GeneratorConfig  # noqa: E402
from eg3d_core.generator import Generator  # noqa: E402
from eg3d_core.networks.layers import FullyConnected  # noqa: E402
from eg3d_core.presets import PRESETS  # noqa: E402
from eg3d_core.rendering.marcher import march  # noqa: E402
from eg3d_core.rendering.rays import sample_rays  # noqa: E402
from eg3d_core.rendering.renderer import importance_depths, stratified_depths  # noqa: E402
from eg3d_core.training import toycars as tc  # noqa: E402


def demo_config(box_warp: float = 1.0, triplane_resolution: int = 64, triplane_channels: int = 16,
                decoder_hidden: int = 64, sr_channels: tuple[int, int] = (32, 16)) -> GeneratorConfig:
    """The demo architecture: EG3D's ShapeNet-cars generator (128px image, 2X super-resolution from a 64px
    render, white background, no camera conditioning), narrowed to train on a CPU and preview interactively.
    The defaults are the shipped model's; the arguments are the recipe's capacity and box flags."""
    return PRESETS["shapenetcars128-64"].replace(
        z_dim=64,
        w_dim=128,
        mapping_layers=2,
        channel_base=2048,  # backbone widths min(2048 / res, 64): 64 channels from 4x4 to 32x32, 32 at 64x64
        channel_max=64,
        triplane_resolution=triplane_resolution,
        triplane_channels=triplane_channels,
        decoder_hidden=decoder_hidden,
        decoder_output_dim=32,
        sr_channels=tuple(sr_channels),
        rendering={
            "depth_resolution": 24,
            "depth_resolution_importance": 24,
            "neural_rendering_resolution": 64,
            # the cars fit in [-0.45, 0.45]^3: a tight box gives the planes more resolution, but the camera then
            # frames the box exactly and the top/bottom rows look through density beyond it in y (see --box-warp)
            "box_warp": box_warp,
            "ray_start": tc.RAY_START,
            "ray_end": tc.RAY_END,
            "avg_camera_radius": tc.CAMERA_RADIUS,
        },
    )


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class CarBatch:
    """B cars seen from V cameras each. z [B, z_dim], cams [B, V, 25]; gt64: ground truth at the neural
    rendering resolution, each [B, V, C, 64, 64] (image in [-1, 1], depth, mask)."""

    z: torch.Tensor
    cams: torch.Tensor
    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


def sample_cars(gen: torch.Generator, n_cars: int, n_views: int, z_dim: int, resolution: int) -> CarBatch:
    z = torch.randn(n_cars, z_dim, generator=gen)
    cams = tc.random_cameras(n_cars * n_views, gen).float()
    params = tc.params_from_latent(z).repeat_interleave(n_views, dim=0)
    gt = tc.render(params, cams, resolution)

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(n_cars, n_views, *x.shape[1:])

    return CarBatch(z, split(cams), split(gt["image"]), split(gt["depth"]), split(gt["mask"]))


def pick_rays(batch: CarBatch, n_rays: int, resolution: int, gen: torch.Generator,
              fg_weight: float = 3.0) -> dict[str, torch.Tensor]:
    """n_rays random pixels per view, car pixels favoured (weight 1 + fg_weight); all views of one car are
    concatenated along the ray axis, so one car's planes serve all of them.

    Returns origins, dirs [B, V*n, 3], rgb [B, V*n, 3], depth, mask [B, V*n, 1].
    """
    b, v = batch.cams.shape[:2]
    pixels = resolution * resolution
    origins, dirs = sample_rays(batch.cams.reshape(b * v, 25), resolution)  # [BV, P, 3]
    mask = batch.mask.reshape(b * v, pixels)
    n = min(n_rays, pixels)
    idx = torch.multinomial(1.0 + fg_weight * (mask > 0).float(), n, replacement=False, generator=gen)  # [BV, n]

    def take(x: torch.Tensor) -> torch.Tensor:  # x [BV, P, C] -> [B, V*n, C]
        return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1])).reshape(b, v * n, x.shape[-1])

    def pix(x: torch.Tensor) -> torch.Tensor:  # [B, V, C, R, R] -> [BV, P, C]
        return x.reshape(b * v, x.shape[2], pixels).transpose(1, 2)

    return {"origins": take(origins), "dirs": take(dirs), "rgb": take(pix(batch.image)),
            "depth": take(pix(batch.depth)), "mask": take(pix(batch.mask))}


# ----------------------------------------------------------------------------------------------------------------
# Rendering with gradients
# ----------------------------------------------------------------------------------------------------------------

def render_rays_train(G: Generator, planes: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, n_coarse: int,
                      n_fine: int, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """The model's two-pass volume rendering (stratified jittered coarse samples + importance samples), with the
    importance depths drawn without gradient and only the 3 RGB channels composited.

    planes [B, 3, C, H, W], origins/dirs [B, M, 3] -> rgb [B, M, 3] in ~[-1, 1], weights [B, M, S-1, 1],
    mids [B, M, S-1, 1] (the depths the weights sit at), wsum [B, M, 1].
    """
    r = G.config.rendering
    b, m, _ = origins.shape

    def field(depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pts = (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(b, -1, 3)
        out = G.sample_planes(pts, planes, precision)
        s = depths.shape[2]
        return out["rgb"][..., :3].reshape(b, m, s, 3), out["sigma"].reshape(b, m, s, 1)

    coarse = stratified_depths(b, m, r.ray_start, r.ray_end, n_coarse, True, origins.device)
    rgb_c, sigma_c = field(coarse)
    with torch.no_grad():
        _, _, w = march(rgb_c, sigma_c, coarse, r.white_back)
        fine = importance_depths(coarse, w, n_fine, deterministic=False)
    rgb_f, sigma_f = field(fine)
    depths, order = torch.sort(torch.cat([coarse, fine], dim=2), dim=2)
    rgb = torch.cat([rgb_c, rgb_f], dim=2).gather(2, order.expand(-1, -1, -1, 3))
    sigma = torch.cat([sigma_c, sigma_f], dim=2).gather(2, order)
    out, _, weights = march(rgb, sigma, depths, r.white_back)
    mids = 0.5 * (depths[:, :, 1:] + depths[:, :, :-1])
    return {"rgb": out, "weights": weights, "mids": mids, "wsum": weights.sum(dim=2)}


PROBE_DIM = tc.PARAM_DIM + 12  # parameters + body, roof, accent, hub colours


def probe_targets(z: torch.Tensor) -> torch.Tensor:
    """What the latent probe predicts from w: z [N, z_dim] -> [N, PROBE_DIM] in [0, 1]."""
    params = tc.params_from_latent(z)
    cols = tc._colours(tc._decode(params))
    return torch.cat([params, cols["body"], cols["roof"], cols["accent"], cols["hub"]], dim=1)


def psnr(mse: float) -> float:
    """PSNR of images in [-1, 1] (equal to the PSNR of the same images mapped to [0, 1])."""
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def empty_space_loss(G: Generator, planes: torch.Tensor, z: torch.Tensor, gen: torch.Generator, n_points: int,
                     extent: float, margin: float, interval: float, precision: str = "fp32") -> torch.Tensor:
    """Density where the ground truth is empty: n_points uniform points per car in [-extent, extent]^3 (beyond the
    tri-plane box too, where the original's sampling still reads the planes), kept where the car's signed distance
    exceeds ``margin``; the loss is their mean opacity over one interval, 1 - exp(-softplus(sigma - 1) * interval)
    (the marcher's density activation), so a speck anywhere in the camera's view is penalised however few rays
    happen to cross it."""
    b = z.shape[0]
    pts = (torch.rand(b, n_points, 3, generator=gen) * 2 - 1) * extent
    with torch.no_grad():
        empty = (tc.sdf(tc.params_from_latent(z), pts) > margin).float()  # [B, N]
    sigma = G.sample_planes(pts, planes, precision)["sigma"].reshape(b, n_points).float()
    alpha = 1 - torch.exp(-nn.functional.softplus(sigma - 1) * interval)
    return (alpha * empty).sum() / empty.sum().clamp(min=1.0)


def image_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of [N, C, H, W] images along x and y."""
    return image[..., :, 1:] - image[..., :, :-1], image[..., 1:, :] - image[..., :-1, :]


def edge_loss(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance of the images' gradients (rewards edges where the truth has them, penalises blur)."""
    (ax, ay), (bx, by) = image_gradients(image), image_gradients(target)
    return 0.5 * ((ax - bx).abs().mean() + (ay - by).abs().mean())


class PatchDiscriminator(nn.Module):
    """A small PatchGAN-style discriminator (not exported): [N, C, H, W] in [-1, 1] -> patch logits [N, 1, H/8, W/8].
    Four 4x4 convolutions (three of stride 2), leaky ReLU, no normalisation (R1 regularises it)."""

    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def discriminator_step(D: nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                       r1_gamma: float) -> dict[str, float]:
    """One non-saturating discriminator update with the R1 penalty (gamma / 2 * |grad_x D(real)|^2) on reals."""
    real = real.detach().requires_grad_(r1_gamma > 0)
    logits_real = D(real)
    logits_fake = D(fake.detach())
    loss = nn.functional.softplus(logits_fake).mean() + nn.functional.softplus(-logits_real).mean()
    stats = {"d_loss": loss.item()}
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(logits_real.sum(), real, create_graph=True)
        r1 = grad.square().flatten(1).sum(1).mean()
        loss = loss + 0.5 * r1_gamma * r1
        stats["r1"] = r1.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return stats


def random_crops(images: list[torch.Tensor], size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """The same random size x size crop of each [N, C, H, W] image (one position per image index)."""
    n, _, h, w = images[0].shape
    if size >= h and size >= w:
        return images
    ys = torch.randint(0, h - size + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=gen).tolist()
    return [torch.stack([im[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(zip(ys, xs, strict=True))]) for im in images]


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def build_optimizer(G: Generator, probe: nn.Module, lr: float, mapping_lr_ratio: float) -> torch.optim.Adam:
    """Adam over all parameters except the camera embedding (unused: c is zeroed, and the RMS normalisation of
    its all-zero output has a 1e4 gradient). The mapping layers store weights divided by their 0.01 learning-rate
    multiplier, so Adam's step on the stored value moves the effective weight 100x less: their group gets
    ``lr * mapping_lr_ratio / 0.01`` for an effective rate of ``lr * mapping_lr_ratio``. The probe gets ``lr``."""
    mapping = [p for n, p in G.backbone.mapping.named_parameters() if not n.startswith("embed.")]
    mapping_ids = {id(p) for p in mapping} | {id(p) for p in G.backbone.mapping.embed.parameters()}
    rest = [p for p in G.parameters() if id(p) not in mapping_ids]
    for p in G.backbone.mapping.embed.parameters():
        p.requires_grad_(False)
    return torch.optim.Adam([{"params": rest + list(probe.parameters()), "lr": lr, "base_lr": lr},
                             {"params": mapping, "lr": lr * mapping_lr_ratio / 0.01,
                              "base_lr": lr * mapping_lr_ratio / 0.01}], betas=(0.9, 0.99), eps=1e-8)


def lr_factor(step: int, total: int, warmup: int, final: float) -> float:
    """Linear warm-up, then cosine decay to ``final``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 16 + stream)


@torch.no_grad()
def set_w_avg(G: Generator, seed: int, n: int = 4096) -> None:
    """The mapping's w_avg (truncation centre) = the mean w of n standard-normal latents."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    ws = G.mapping(z, torch.zeros(n, G.c_dim))
    G.backbone.mapping.w_avg.copy_(ws[:, 0].mean(dim=0))


def save_checkpoint(path: Path, G: Generator, probe: nn.Module, opt: torch.optim.Optimizer, step: int,
                    args: argparse.Namespace, history: list[dict[str, float]], D: nn.Module | None = None,
                    d_opt: torch.optim.Optimizer | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    state = {"step": step, "model": G.state_dict(), "probe": probe.state_dict(), "optim": opt.state_dict(),
             "config": G.config.to_dict(),
             "args": {k: v for k, v in vars(args).items() if k not in ("resume",)}, "history": history}
    if D is not None and d_opt is not None:
        state["disc"], state["disc_optim"] = D.state_dict(), d_opt.state_dict()
    torch.save(state, tmp)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train the bundled toy-car demo generator (CPU, no GAN).")
    ap.add_argument("--out", default="assets/demo", help="export folder (save_generator format)")
    ap.add_argument("--run-dir", default="runs/demo", help="periodic checkpoints, metrics.jsonl")
    ap.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt if it exists")
    ap.add_argument("--steps", type=int, default=3000, help="optimisation steps (sets the learning-rate schedule)")
    ap.add_argument("--minutes", type=float, default=72.0, help="wall-clock budget of this invocation; "
                    "the run stops gracefully and exports when it is spent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=6, help="cars per step")
    ap.add_argument("--views", type=int, default=3, help="cameras per car per step")
    ap.add_argument("--rays", type=int, default=256, help="random rays per view in ray steps")
    ap.add_argument("--samples", type=int, nargs=2, default=(16, 16), metavar=("COARSE", "FINE"),
                    help="depth samples per ray in training (the model renders with 24 + 24)")
    ap.add_argument("--sr-every", type=int, default=4, help="a super-resolution loss every this many steps")
    ap.add_argument("--sr-batch", type=int, default=2, help="full renders (cars) per super-resolution step")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--mapping-lr-ratio", type=float, default=2.0, help="effective mapping lr / lr")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--sigma-bias-init", type=float, default=-4.5, help="initial bias of the raw density output")
    ap.add_argument("--final-lr", type=float, default=0.05, help="final lr as a fraction of --lr")
    ap.add_argument("--w-rgb", type=float, default=1.0)
    ap.add_argument("--w-mask", type=float, default=1.0)
    ap.add_argument("--w-depth", type=float, default=1.0)
    ap.add_argument("--w-sr", type=float, default=1.0)
    ap.add_argument("--w-probe", type=float, default=1.0, help="weight of the latent probe loss")
    ap.add_argument("--probe-batch", type=int, default=256, help="latents per step for the probe (0: no probe)")
    rec = ap.add_argument_group("recipe (the defaults are the shipped model's)")
    rec.add_argument("--box-warp", type=float, default=1.0,
                     help="side of the tri-plane box (the original's ShapeNet config: 1.6 with this camera)")
    rec.add_argument("--triplane-res", type=int, default=64, help="tri-plane resolution (the backbone's last block)")
    rec.add_argument("--triplane-channels", type=int, default=16)
    rec.add_argument("--decoder-hidden", type=int, default=64)
    rec.add_argument("--sr-channels", type=int, nargs=2, default=(32, 16), metavar=("BLOCK0", "BLOCK1"))
    rec.add_argument("--w-empty", type=float, default=0.0,
                     help="weight of the empty-space density penalty (0: off): opacity at random points where the "
                          "car's signed distance exceeds --empty-margin, in and beyond the box")
    rec.add_argument("--empty-points", type=int, default=1024, help="random points per car for --w-empty")
    rec.add_argument("--empty-extent", type=float, default=1.0, help="the points fill [-E, E]^3")
    rec.add_argument("--empty-margin", type=float, default=0.03, help="signed distance beyond which a point is empty")
    rec.add_argument("--w-edge", type=float, default=0.0,
                     help="weight of an L1 loss on the final image's gradients against the truth's (SR steps)")
    rec.add_argument("--sr-l1", action="store_true", help="L1 instead of MSE for the super-resolution loss")
    rec.add_argument("--w-adv", type=float, default=0.0,
                     help="weight of the non-saturating adversarial loss of a patch discriminator on the final image "
                          "(SR steps; 0: no discriminator)")
    rec.add_argument("--adv-start", type=int, default=0, help="step from which the adversarial loss is on")
    rec.add_argument("--d-lr", type=float, default=2e-3)
    rec.add_argument("--d-width", type=int, default=32)
    rec.add_argument("--r1-gamma", type=float, default=0.001,
                     help="R1 penalty weight on the discriminator's reals (1 keeps it at chance on these 64px crops)")
    rec.add_argument("--adv-crop", type=int, default=64, help="discriminator input: random crops of this size")
    ap.add_argument("--checkpoint-minutes", type=float, default=4.0)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast in the backbone, decoder and super-resolution: faster only on CPUs with "
                         "native bfloat16 (AVX512-BF16/AMX); on AVX2-only CPUs it is several times slower (off here)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    t_start = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    if out_dir.exists() and not (out_dir / "model.safetensors").is_file():
        raise SystemExit(f"--out {out_dir} exists and is not a checkpoint folder; it would not be overwritten")
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"

    torch.manual_seed(args.seed)
    config = demo_config(args.box_warp, args.triplane_res, args.triplane_channels, args.decoder_hidden,
                         tuple(args.sr_channels))
    G = Generator(config).requires_grad_(True)
    precision = "reduced" if args.bf16 else "fp32"
    if args.bf16:
        G.reduced_dtype = torch.bfloat16
    with torch.no_grad():
        # Start from an almost empty scene: the default init is opaque everywhere (raw density ~2).
        G.decoder.net[2].bias[0] = args.sigma_bias_init
    probe = FullyConnected(config.w_dim, PROBE_DIM)
    opt = build_optimizer(G, probe, args.lr, args.mapping_lr_ratio)
    D: nn.Module | None = None
    d_opt: torch.optim.Optimizer | None = None
    if args.w_adv > 0:  # created only then: without it every random draw is the shipped recipe's
        D = PatchDiscriminator(3, args.d_width)
        d_opt = torch.optim.Adam(D.parameters(), lr=args.d_lr, betas=(0.0, 0.99), eps=1e-8)
    step = 0
    history: list[dict[str, float]] = []
    if args.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck["config"] != config.to_dict():
            raise SystemExit(f"{ckpt_path} was written for a different architecture; use another --run-dir")
        G.load_state_dict(ck["model"])
        probe.load_state_dict(ck["probe"])
        opt.load_state_dict(ck["optim"])
        if D is not None and d_opt is not None:
            if "disc" not in ck:
                raise SystemExit(f"{ckpt_path} has no discriminator (a run without --w-adv); use another --run-dir")
            D.load_state_dict(ck["disc"])
            d_opt.load_state_dict(ck["disc_optim"])
        step, history = int(ck["step"]), list(ck["history"])
        print(f"resumed from {ckpt_path} at step {step}")

    stop = {"flag": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    res = config.rendering.neural_rendering_resolution
    n_coarse, n_fine = args.samples
    n_params = sum(p.numel() for p in G.parameters())
    print(f"generator: {n_params:,} parameters; {args.steps} steps, budget {args.minutes} min, "
          f"{torch.get_num_threads()} threads", flush=True)
    metrics_file = open(run_dir / "metrics.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, disable=args.no_progress, desc="train", unit="step", mininterval=2.0)
    last_ckpt = time.monotonic()
    run_stats: dict[str, float] = {}
    reason = "steps"
    try:
        while step < args.steps:
            if stop["flag"]:
                reason = "signal"
                break
            if time.monotonic() - t_start > args.minutes * 60:
                reason = "time budget"
                break
            factor = lr_factor(step, args.steps, args.warmup, args.final_lr)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            torch.manual_seed(args.seed * 1_000_003 + step * 16 + 15)  # render jitter + importance draws
            gen = step_generator(args.seed, step, 0)
            sr_step = args.sr_every > 0 and step % args.sr_every == 0
            batch = sample_cars(gen, args.batch, args.views, config.z_dim, res)
            rays = pick_rays(batch, args.rays, res, gen)

            ws = G.mapping(batch.z, torch.zeros(args.batch, config.c_dim))
            planes = G.planes(ws, noise_mode="const", precision=precision)
            out = render_rays_train(G, planes, rays["origins"], rays["dirs"], n_coarse, n_fine, precision)
            loss_rgb = (out["rgb"] - rays["rgb"]).square().mean()
            loss_mask = (out["wsum"] - rays["mask"]).square().mean()
            hit = (rays["mask"] > 0.999).float()  # [B, M, 1]
            dev = (out["weights"] * (out["mids"] - rays["depth"][:, :, None]).abs()).sum(dim=2)  # [B, M, 1]
            loss_depth = (dev * hit).sum() / hit.sum().clamp(min=1.0)
            loss = args.w_rgb * loss_rgb + args.w_mask * loss_mask + args.w_depth * loss_depth
            stats = {"rgb_mse": loss_rgb.item(), "mask_mse": loss_mask.item(), "depth_dev": loss_depth.item()}
            if args.w_empty > 0:
                interval = (config.rendering.ray_end - config.rendering.ray_start) / n_coarse
                loss_empty = empty_space_loss(G, planes, batch.z, step_generator(args.seed, step, 2),
                                              args.empty_points, args.empty_extent, args.empty_margin, interval,
                                              precision)
                loss = loss + args.w_empty * loss_empty
                stats["empty_opacity"] = loss_empty.item()
            if args.probe_batch > 0:
                z_probe = torch.randn(args.probe_batch, config.z_dim, generator=step_generator(args.seed, step, 1))
                w_probe = G.mapping(z_probe, torch.zeros(args.probe_batch, config.c_dim))[:, 0]
                loss_probe = (probe(w_probe) - probe_targets(z_probe)).square().mean()
                loss = loss + args.w_probe * loss_probe
                stats["probe_mse"] = loss_probe.item()

            if sr_step:
                k = min(args.sr_batch, args.batch)
                cams = batch.cams[:k, 0]
                with torch.no_grad():
                    feats, _ = G.render(planes[:k].detach(), cams, deterministic=False, precision=precision,
                                        depth_resolution=n_coarse, depth_resolution_importance=n_fine)
                    gt128 = tc.render(tc.params_from_latent(batch.z[:k]), cams, config.img_resolution)["image"]
                image = G.super_resolve(feats, ws[:k], precision)
                loss_sr = (image - gt128).square().mean()
                loss = loss + args.w_sr * ((image - gt128).abs().mean() if args.sr_l1 else loss_sr)
                stats["sr_mse"] = loss_sr.item()
                if args.w_edge > 0:
                    loss_edge = edge_loss(image, gt128)
                    loss = loss + args.w_edge * loss_edge
                    stats["edge_l1"] = loss_edge.item()
                if D is not None and d_opt is not None and step >= args.adv_start:
                    crop_gen = step_generator(args.seed, step, 3)
                    fake, real = random_crops([image, gt128], args.adv_crop, crop_gen)
                    stats.update(discriminator_step(D, d_opt, real, fake, args.r1_gamma))
                    D.requires_grad_(False)
                    loss_adv = nn.functional.softplus(-D(fake)).mean()
                    D.requires_grad_(True)
                    loss = loss + args.w_adv * loss_adv
                    stats["g_adv"] = loss_adv.item()

            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                print(f"step {step}: non-finite loss, skipped", flush=True)
                step += 1
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(G.parameters(), 10.0)
            opt.step()
            step += 1

            for k, v in stats.items():  # running means for the log
                run_stats[k] = run_stats.get(k, 0.0) + v
                run_stats[k + "#"] = run_stats.get(k + "#", 0.0) + 1
            bar.update(1)
            if step % args.log_every == 0 or step == args.steps:
                means = {k: run_stats[k] / run_stats[k + "#"] for k in run_stats if not k.endswith("#")}
                rec = {"step": step, "minutes": round((time.monotonic() - t_start) / 60, 2), "lr": opt.param_groups[0]["lr"],
                       **{k: round(v, 6) for k, v in means.items()}, "psnr_raw": round(psnr(means["rgb_mse"]), 3)}
                if "sr_mse" in means:
                    rec["psnr_sr"] = round(psnr(means["sr_mse"]), 3)
                history.append(rec)
                metrics_file.write(json.dumps(rec) + "\n")
                metrics_file.flush()
                bar.set_postfix(psnr=f"{rec['psnr_raw']:.2f}", sr=f"{rec.get('psnr_sr', 0):.2f}",
                                depth=f"{means['depth_dev']:.4f}", mask=f"{means['mask_mse']:.4f}")
                run_stats = {}
            if time.monotonic() - last_ckpt > args.checkpoint_minutes * 60:
                save_checkpoint(ckpt_path, G, probe, opt, step, args, history, D, d_opt)
                last_ckpt = time.monotonic()
    finally:
        bar.close()
        metrics_file.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)

    save_checkpoint(ckpt_path, G, probe, opt, step, args, history, D, d_opt)
    G.eval().requires_grad_(False)
    set_w_avg(G, args.seed)
    out = save_generator(G, out_dir)
    minutes = (time.monotonic() - t_start) / 60
    print(f"stopped at step {step}/{args.steps} ({reason}) after {minutes:.1f} min; exported {out}", flush=True)
    return out


if __name__ == "__main__":
    main()
