"""Picture -> latent: find the camera of a picture and a ws that the generator renders like it (GAN inversion).

    result = invert(G, "car.png")                       # camera search, then w + camera refinement
    result = invert(G, image, yaw=30, pitch=-10)        # camera given by the user (degrees, viewer offsets)
    result = invert(G, image, InversionSettings(pti_steps=100))   # + pivotal tuning of a copy of G
    result.save("car.npz")                              # ws / c / yaw / pitch / losses / timings

Stages (each reports through ``progress(stage, step, total, preview)`` and stops when ``should_stop()`` is true):

1. ``camera``: a grid of yaw / pitch offsets over the model's camera distribution, each scored by rendering a few
   latents (the average w and samples of W) at a low neural-rendering resolution with few depth samples and no
   super-resolution; the best few distinct cameras, plus the front/back twin of the best (the camera 180 deg of
   yaw away, where the model's cameras go all the way round: a blurry car's front and back look alike), are each
   refined briefly (``candidate_steps``), the best ``finalists`` of them for ``finalist_steps`` more, and the best
   one continues. Skipped when the camera is given.
2. ``coarse`` and ``fine``: joint optimisation of one w (broadcast to all ws; stored in units of W's per-dimension
   standard deviation around its mean, so one learning rate suits any model) and the camera's yaw / pitch (through a
   differentiable copy of ``cameras.lookat_pose``), first at a low neural-rendering resolution on the raw render,
   then at the model's resolution through the super-resolution. Losses: L1 on an image pyramid, 1 - SSIM, the
   prior ``mean(u^2)`` (u: w in those units; 1 on average over W), and, for white-background models, the
   silhouette (the render's opacity against the picture's non-background pixels) plus a term that pushes opacity to
   0 or 1 (no haze that only the input view explains): both at full weight while the camera candidates are refined,
   times ``refine_shape_scale`` (0 by default) afterwards. Optionally ``w_plus_steps`` refine every ws apart
   afterwards, with a penalty on their spread.
3. ``pti`` (optional): pivotal tuning: a copy of the generator is fine-tuned around the found ws on the same image
   loss, with a locality term that keeps the tuned copy's renders of other latents (between the pivot and random
   samples of W) and of the pivot from other cameras close to the original's.

Gradient steps run the gradient backend (``kernels.use("grad")``: the reference code, with the modulated
convolutions arranged so that the backward pass computes no weight gradients; the compiled kernels are
inference-only); the camera search and previews run the default backend. A perceptual loss is used only when
``perceptual`` names a local TorchScript file (a module mapping two [N, 3, H, W] images in [-1, 1] to a distance per
image); nothing is downloaded.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import cameras
from .errors import EG3DError, InputError
from .fileio import atomic_file
from .generator import Generator
from .kernels import dispatch

# Pictures: smallest side accepted, and the most pixels decoded (checked from the header, before decoding).
MIN_SIDE = 8
MAX_PIXELS = 64_000_000
STAGES = ("camera", "coarse", "fine", "w_plus", "pti")

ProgressFn = Callable[[str, int, int, "np.ndarray | None"], None]


class InversionCancelled(EG3DError):
    """``should_stop()`` returned true: the inversion stopped and returned nothing."""


# ----------------------------------------------------------------------------------------------------------------
# Pictures


def _from_pil(img: Any, name: str) -> np.ndarray:
    """A decoded PIL image -> float32 [H, W, 4] in [0, 1] (alpha 1 where the picture has none)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / (65535.0 if img.mode.startswith("I") and arr.max() > 255 else 255.0)
        return np.concatenate([np.repeat(arr[..., None], 3, axis=2), np.ones_like(arr)[..., None]], axis=2)
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if ("A" in img.mode or "transparency" in img.info) else "RGB")
    return _from_array(np.asarray(img), name)


def _from_array(arr: np.ndarray, name: str) -> np.ndarray:
    """[H, W], [H, W, 1|3|4] uint8 (0..255), other integers or floats in [0, 1] -> float32 [H, W, 4] in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{name}: a picture must be [H, W] or [H, W, 1|2|3|4], got {list(arr.shape)}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.integer):
        x = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise InputError(f"{name}: the picture holds NaN or infinite values")
        x = x.clip(0.0, 1.0)
    else:
        raise InputError(f"{name}: unsupported picture dtype {arr.dtype}")
    if x.shape[2] in (1, 2):  # grey (+ alpha)
        x = np.concatenate([np.repeat(x[..., :1], 3, axis=2), x[..., 1:]], axis=2)
    if x.shape[2] == 3:
        x = np.concatenate([x, np.ones_like(x[..., :1])], axis=2)
    return x


def _open_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size  # from the header: nothing decoded yet
                if w * h > MAX_PIXELS:
                    raise InputError(f"{path}: {w}x{h} px is too large (at most {MAX_PIXELS // 1_000_000} megapixels)")
                img.load()
                return _from_pil(img, str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: too large to decode safely (decompression bomb)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: corrupt or truncated image ({' '.join(str(e).split()) or type(e).__name__})"
                         ) from None


def load_picture(picture: Any, resolution: int, background: float = 1.0) -> torch.Tensor:
    """A picture -> [1, 3, resolution, resolution] float32 in [-1, 1].

    ``picture``: a path, a PIL image or a numpy array ([H, W] grey, [H, W, 3] RGB, [H, W, 4] RGBA; uint8, or floats
    in [0, 1]). Transparent pixels are composited on ``background`` (in [0, 1]: 1 white, 0 black); a picture that is
    not square is padded with the background to a square (nothing is cut off), then resized with antialiasing.
    """
    name = "picture"
    if isinstance(picture, (str, os.PathLike)):
        name = str(picture)
        rgba = _open_file(Path(picture))
    elif isinstance(picture, np.ndarray):
        rgba = _from_array(picture, name)
    elif type(picture).__module__.startswith("PIL"):
        rgba = _from_pil(picture, name)
    else:
        raise InputError(f"a picture is a path, a PIL image or a numpy array, got {type(picture).__name__}")
    h, w = rgba.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name}: {w}x{h} px is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if h * w > MAX_PIXELS:
        raise InputError(f"{name}: {w}x{h} px is too large (at most {MAX_PIXELS // 1_000_000} megapixels)")
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + background * (1.0 - alpha)
    side = max(h, w)
    square = np.full((side, side, 3), background, dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = rgb
    x = torch.from_numpy(square).permute(2, 0, 1)[None]
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=side > resolution,
                          align_corners=False)
    return (x * 2 - 1).clamp(-1, 1).contiguous()


def model_background(G: Generator) -> float:
    """The background the model renders where nothing is: white for white_back models, else black."""
    return 1.0 if G.config.rendering.white_back else 0.0


# ----------------------------------------------------------------------------------------------------------------
# Differentiable cameras and losses


def camera_from_offsets(defaults: cameras.CameraDefaults, yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """``cameras.camera(defaults, yaw, pitch)`` in torch, differentiable in yaw / pitch (radian offsets [N])."""
    h = cameras.FRONTAL + yaw
    v = (cameras.FRONTAL + pitch).clamp(1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * v / math.pi)
    origin = defaults.radius * torch.stack(
        [torch.sin(phi) * torch.cos(math.pi - h), torch.cos(phi), torch.sin(phi) * torch.sin(math.pi - h)], dim=-1)
    forward = F.normalize(torch.tensor(defaults.pivot, dtype=origin.dtype) - origin, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=origin.dtype).expand_as(forward)
    right = -F.normalize(torch.linalg.cross(up, forward), dim=-1)
    cam_up = F.normalize(torch.linalg.cross(forward, right), dim=-1)
    n = yaw.shape[0]
    rot = torch.stack([right, cam_up, forward], dim=-1)  # columns
    top = torch.cat([rot, origin[:, :, None]], dim=2)
    pose = torch.cat([top, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=origin.dtype).expand(n, 1, 4)], dim=1)
    k = cameras.intrinsics_from_focal(defaults.focal).to(origin.dtype)
    return cameras.camera_vector(pose, k)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma * sigma))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5, valid region) of images in [-1, 1]: [N, C, H, W] -> [N].

    The formula of ``scripts/evaluate_demo_model.py``, in float32 and differentiable."""
    x, y = (a + 1) / 2, (b + 1) / 2
    c = x.shape[1]
    size = min(11, x.shape[-1])
    g = _gaussian(size).to(x.device)
    kh, kv = g.reshape(1, 1, 1, size).expand(c, 1, 1, size), g.reshape(1, 1, size, 1).expand(c, 1, size, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kv, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of images in [-1, 1] (computed on [0, 1]): [N, C, H, W] -> [N]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp(min=1e-12))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=x.shape[-1] > size, align_corners=False)


def pyramid_l1(a: torch.Tensor, b: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """Mean L1 over an image pyramid (the image, then halved ``levels - 1`` times, down to 8 px)."""
    total, n = a.new_zeros(a.shape[0]), 0
    for _ in range(levels):
        total = total + (a - b).abs().flatten(1).mean(1)
        n += 1
        if a.shape[-1] < 16:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return total / n


def silhouette(target: torch.Tensor, background: float, threshold: float = 0.08) -> torch.Tensor:
    """Soft object mask of a picture on a plain background: [N, 3, H, W] in [-1, 1] -> [N, 1, H, W] in [0, 1]."""
    diff = (target - (2 * background - 1)).abs().amax(dim=1, keepdim=True) / 2
    return (diff / threshold).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------------
# Settings and result


@dataclass(frozen=True)
class InversionSettings:
    """How to invert. Step counts are gradient steps; 0 skips a stage.

    * ``coarse_steps`` at ``coarse_resolution`` (raw render, ``coarse_samples`` coarse + as many importance depth
      samples), then ``fine_steps`` at the model's neural rendering resolution with ``fine_samples`` (None: the
      model's) through the super-resolution; ``w_plus_steps`` then free every ws.
    * camera search: ``search_yaw_step`` / ``search_pitch_step`` degrees, ``search_latents`` latents scored (the
      average w and samples of W), ``search_candidates`` distinct cameras (+ the best one's front/back twin with
      ``twin``, on models whose cameras go all the way round) refined for ``candidate_steps`` each, then the best
      ``finalists`` for ``finalist_steps`` more (on toy cars the twins' losses only part after a few tens of steps).
    * learning rates: ``lr_w`` (w in units of W's standard deviation), ``lr_camera`` (radians).
    * loss weights: ``ssim_weight``, ``prior_weight`` (mean squared w in W's units), ``silhouette_weight`` and
      ``opacity_weight`` (white-background models only), ``perceptual_weight`` (with ``perceptual``), ``spread_weight``
      (w+ ws apart from their mean); ``refine_shape_scale`` scales the silhouette and opacity weights after the
      camera stage (coarse, fine, w+, PTI): they steer the choice of camera, while fitting a blurry model's opacity to
      a sharp picture's silhouette afterwards costs the novel views (benchmarks/RESULTS.md).
    * ``pti_steps`` of pivotal tuning at ``lr_pti``, with ``locality_weight``.
    * ``preview_every``: a preview image to ``progress`` every so many steps (0: none).
    """

    coarse_steps: int = 100
    fine_steps: int = 40
    w_plus_steps: int = 0
    pti_steps: int = 0
    coarse_resolution: int = 32
    coarse_samples: int = 12
    fine_samples: int | None = 12
    search_yaw_step: float = 15.0
    search_pitch_step: float = 10.0
    search_latents: int = 4
    search_candidates: int = 2
    candidate_steps: int = 10
    twin: bool = True
    finalists: int = 2
    finalist_steps: int = 30
    lr_w: float = 0.08
    lr_camera: float = 0.02
    lr_pti: float = 1e-3
    ssim_weight: float = 0.5
    prior_weight: float = 0.02
    silhouette_weight: float = 0.5
    opacity_weight: float = 0.05
    refine_shape_scale: float = 0.0
    perceptual_weight: float = 1.0
    spread_weight: float = 0.1
    locality_weight: float = 1.0
    perceptual: str | None = None
    preview_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "perceptual":
                continue
            if f.name == "twin":
                if not isinstance(value, bool):
                    raise InputError(f"inversion setting twin must be true or false, got {value!r}")
                continue
            if f.name == "fine_samples" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"inversion setting {f.name} must be a number >= 0, got {value!r}")
        for name in ("coarse_steps", "fine_steps", "w_plus_steps", "pti_steps", "candidate_steps", "finalist_steps",
                     "preview_every", "seed"):
            if not isinstance(getattr(self, name), int):
                raise InputError(f"inversion setting {name} must be an integer, got {getattr(self, name)!r}")
        for name in ("coarse_resolution", "coarse_samples", "search_latents", "search_candidates", "finalists"):
            if getattr(self, name) < 1 or not isinstance(getattr(self, name), int):
                raise InputError(f"inversion setting {name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.search_yaw_step <= 0 or self.search_pitch_step <= 0:
            raise InputError("camera search steps must be > 0 degrees")

    def camera_passes(self, full_circle: bool) -> tuple[int, int]:
        """At most how many candidate cameras the camera stage refines and how many finalists it continues;
        ``full_circle``: the model's cameras go all the way round (then the twin is a candidate too)."""
        candidates = self.search_candidates + int(self.twin and full_circle)
        finalists = min(self.finalists, candidates) if candidates > 1 and self.finalist_steps else 0
        return candidates, finalists

    def camera_steps(self, full_circle: bool) -> int:
        """The most gradient steps (at the coarse resolution) the camera stage takes after the grid search."""
        candidates, finalists = self.camera_passes(full_circle)
        return candidates * self.candidate_steps + finalists * self.finalist_steps

    def with_steps(self, steps: int) -> InversionSettings:
        """The same settings with ``steps`` refinement steps in all, split between coarse and fine as the defaults."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {steps!r}")
        total = self.coarse_steps + self.fine_steps
        coarse = round(steps * self.coarse_steps / total) if total else steps
        return replace(self, coarse_steps=coarse, fine_steps=steps - coarse)


@dataclass
class InversionResult:
    """ws [1, num_ws, w_dim] float32 and the picture's camera c [1, 25] (CPU tensors); ``yaw`` / ``pitch`` the camera
    as offsets from frontal in degrees (the viewer's pose fields); ``losses`` the final loss of each stage run and
    ``timings`` its seconds; ``generator`` the pivotally tuned copy (None without PTI); ``fit`` the final render
    [1, 3, S, S] in [-1, 1]; ``psnr`` of the fit against the (resized) picture."""

    ws: torch.Tensor
    c: torch.Tensor
    yaw: float
    pitch: float
    losses: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    generator: Generator | None = None
    fit: torch.Tensor | None = None
    psnr: float = float("nan")

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``save`` writes: ws, c, yaw, pitch, psnr, loss_<stage>, time_<stage>, seconds."""
        out = {"ws": self.ws.detach().to("cpu", torch.float32).numpy(),
               "c": self.c.detach().to("cpu", torch.float32).numpy(),
               "yaw": np.float32(self.yaw), "pitch": np.float32(self.pitch), "psnr": np.float32(self.psnr),
               "seconds": np.float32(sum(self.timings.values()))}
        out.update({f"loss_{k}": np.float32(v) for k, v in self.losses.items()})
        out.update({f"time_{k}": np.float32(v) for k, v in self.timings.items()})
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ``.npz`` (``latents.LatentSource.from_file`` reads its ws), atomically."""
        path = Path(path)
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.arrays())
        return path


# ----------------------------------------------------------------------------------------------------------------
# The optimisation


@dataclass
class _Stats:
    """W's mean and per-dimension standard deviation (from samples of the mapping network)."""

    mean: torch.Tensor  # [w_dim]
    std: torch.Tensor  # [w_dim]


def w_statistics(G: Generator, samples: int = 2000, seed: int = 0) -> _Stats:
    """Mean and standard deviation of W over ``samples`` z (frontal conditioning), on G's device."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen).to(device)
    c = cameras.conditioning(cameras.camera_defaults(G.config), samples).to(device)
    with torch.no_grad():
        w = G.mapping(z, c)[:, 0]
    return _Stats(w.mean(0), w.std(0).clamp(min=1e-6))


class _Inverter:
    def __init__(self, G: Generator, target: torch.Tensor, settings: InversionSettings,
                 progress: ProgressFn | None, should_stop: Callable[[], bool] | None) -> None:
        self.G, self.s = G, settings
        self.device = next(G.parameters()).device
        self.target = target.to(self.device)
        self.defaults = cameras.camera_defaults(G.config)
        self.background = model_background(G)
        self.white = G.config.rendering.white_back
        self.stats = w_statistics(G, seed=settings.seed)
        self.progress = progress or (lambda stage, step, total, preview: None)
        self.should_stop = should_stop or (lambda: False)
        self.perceptual = _load_perceptual(settings.perceptual, self.device) if settings.perceptual else None
        self._targets: dict[int, torch.Tensor] = {}
        self._masks: dict[int, torch.Tensor] = {}

    # -- helpers -----------------------------------------------------------------------------------------------

    def target_at(self, size: int) -> torch.Tensor:
        if size not in self._targets:
            self._targets[size] = _resize(self.target, size)
        return self._targets[size]

    def mask_at(self, size: int) -> torch.Tensor:
        if size not in self._masks:
            self._masks[size] = silhouette(self.target_at(size), self.background)
        return self._masks[size]

    def ws_of(self, u: torch.Tensor) -> torch.Tensor:
        """u [N, w_dim] or [N, num_ws, w_dim] in W's units -> ws [N, num_ws, w_dim]."""
        w = self.stats.mean + u * self.stats.std
        return w[:, None].expand(-1, self.G.num_ws, -1) if w.ndim == 2 else w

    def check_stop(self) -> None:
        if self.should_stop():
            raise InversionCancelled("inversion cancelled")

    def render_raw(self, G: Generator, ws: torch.Tensor, c: torch.Tensor, res: int, samples: int,
                   importance: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature image [N, 32, res, res], depth and opacity [N, 1, res, res] (autograd-friendly)."""
        return G.render(G.planes(ws), c, res, True, "fp32", samples, importance, return_opacity=True)

    def image_loss(self, image: torch.Tensor, raw: torch.Tensor | None, opacity: torch.Tensor | None,
                   parts: dict[str, float] | None = None, shape_scale: float = 1.0) -> torch.Tensor:
        """Pixel + structure (+ perceptual) loss of a render against the picture, with the opacity terms (their
        weights times ``shape_scale``)."""
        s = self.s
        target = self.target_at(image.shape[-1])
        loss = pyramid_l1(image, target) + s.ssim_weight * (1 - ssim(image, target))
        if raw is not None and raw.shape[-1] != image.shape[-1]:
            loss = loss + 0.5 * pyramid_l1(raw, self.target_at(raw.shape[-1]))
        if self.perceptual is not None and s.perceptual_weight > 0:
            loss = loss + s.perceptual_weight * self.perceptual(image, target).reshape(-1)
        if opacity is not None and self.white and shape_scale > 0:
            mask = self.mask_at(opacity.shape[-1])
            o = opacity.clamp(0, 1)
            loss = loss + shape_scale * s.silhouette_weight * (o - mask).abs().flatten(1).mean(1)
            loss = loss + shape_scale * s.opacity_weight * (o * (1 - o)).flatten(1).mean(1)
        if parts is not None:
            parts["image"] = float(loss.detach().mean())
        return loss.mean()

    def preview(self, G: Generator, ws: torch.Tensor, c: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out = G.synthesis(ws.detach(), c.detach())
        return ((out["image"][0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    # -- stage 1: camera search --------------------------------------------------------------------------------

    def search_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Yaw and pitch offsets (radians) of the search grid: [K] each."""
        dist = cameras.camera_distribution(self.G.config)
        ys, ps = math.radians(self.s.search_yaw_step), math.radians(self.s.search_pitch_step)
        if full_circle(self.G):
            yaws = np.arange(-math.pi, math.pi - 1e-9, ys)
        else:
            span = 3 * dist.horizontal_std if dist.kind == "gaussian" else dist.horizontal_std
            yaws = np.arange(-span, span + 1e-9, ys) + (dist.horizontal_mean - cameras.FRONTAL)
        spread = 2.5 * dist.vertical_std if dist.kind == "gaussian" else dist.vertical_std + 0.2
        lo, hi = dist.vertical_mean - spread - cameras.FRONTAL, dist.vertical_mean + spread - cameras.FRONTAL
        count = max(1, int(math.floor((hi - lo) / ps)) + 1)
        pitches = np.linspace(lo, hi, count) if count > 1 else np.array([(lo + hi) / 2])
        yy, pp = np.meshgrid(yaws, pitches, indexing="ij")
        return yy.ravel(), pp.ravel()

    @torch.no_grad()
    def camera_search(self) -> list[tuple[float, float, torch.Tensor]]:
        """The best ``search_candidates`` distinct (yaw, pitch, u) of the grid, best first."""
        s, G = self.s, self.G
        yaws, pitches = self.search_grid()
        cams = cameras.camera(self.defaults, yaws, pitches).to(self.device)
        gen = torch.Generator().manual_seed(s.seed + 1)
        us = torch.cat([torch.zeros(1, G.w_dim), torch.randn(s.search_latents - 1, G.w_dim, generator=gen)]).to(
            self.device)
        res = s.coarse_resolution
        target, mask = self.target_at(res), self.mask_at(res)
        scores = torch.full((len(us), len(yaws)), float("inf"))
        for i, u in enumerate(us):
            self.check_stop()
            planes = G.planes(self.ws_of(u[None]))
            for start in range(0, len(yaws), 32):
                c = cams[start:start + 32]
                feats, _ = G.render(planes.expand(len(c), -1, -1, -1, -1), c, res, True, "fp32", s.coarse_samples, 0)
                raw = feats[:, :3]
                score = pyramid_l1(raw, target.expand_as(raw)) + s.ssim_weight * (1 - ssim(raw, target.expand_as(raw)))
                if self.white:
                    # the raw render's distance from the background stands in for its opacity
                    score = score + s.silhouette_weight * (silhouette(raw, self.background) - mask).abs().flatten(1).mean(1)
                scores[i, start:start + len(c)] = score.cpu()
            self.progress("camera", i + 1, len(us), None)
        best, which = scores.min(0)
        order = torch.argsort(best)
        picked: list[tuple[float, float, torch.Tensor]] = []
        min_gap = math.radians(max(2 * s.search_yaw_step, 30.0))
        for k in order.tolist():
            y, p = float(yaws[k]), float(pitches[k])
            if all(abs(_wrap(y - y2)) >= min_gap or abs(p - p2) >= min_gap for y2, p2, _ in picked):
                picked.append((y, p, us[which[k]].clone()))
            if len(picked) == s.search_candidates:
                break
        if s.twin and full_circle(G):
            y, p, u = picked[0]
            twin = _wrap(y + math.pi)
            # even where a candidate lies near it: at another pitch its refinement can settle elsewhere
            if all(abs(_wrap(twin - y2)) > 1e-6 or abs(p - p2) > 1e-6 for y2, p2, _ in picked):
                picked.append((twin, p, u.clone()))
        return picked

    # -- stage 2: w + camera --------------------------------------------------------------------------------------

    def refine(self, stage: str, u: torch.Tensor, yaw: float, pitch: float, steps: int, fine: bool,
               learn_camera: bool, w_plus: bool = False) -> tuple[torch.Tensor, float, float, float]:
        """Adam on u (and yaw / pitch); returns (u, yaw, pitch, final loss)."""
        s, G = self.s, self.G
        u = u.detach().clone().requires_grad_(True)
        angles = torch.tensor([yaw, pitch], dtype=torch.float32, device=self.device, requires_grad=learn_camera)
        groups: list[dict[str, Any]] = [{"params": [u], "lr": s.lr_w}]
        if learn_camera:
            groups.append({"params": [angles], "lr": s.lr_camera})
        opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
        r = G.config.rendering
        res = r.neural_rendering_resolution if fine else s.coarse_resolution
        samples = (s.fine_samples or r.depth_resolution) if fine else s.coarse_samples
        importance = (s.fine_samples or r.depth_resolution_importance) if fine else s.coarse_samples
        loss_value = float("nan")
        for step in range(steps):
            self.check_stop()
            # a cosine decay of the learning rates, after a short warm-up
            t = step / max(steps, 1)
            scale = min(1.0, (step + 1) / 5) * (0.5 + 0.5 * math.cos(math.pi * t))
            opt.param_groups[0]["lr"] = s.lr_w * scale
            if learn_camera:
                opt.param_groups[1]["lr"] = s.lr_camera * scale
            with dispatch.use("grad"):
                ws = self.ws_of(u)
                c = camera_from_offsets(self.defaults, angles[:1], angles[1:]).to(self.device)
                feats, _, opacity = self.render_raw(G, ws, c, res, samples, importance)
                raw = feats[:, :3]
                image = G.super_resolve(feats, ws) if fine else raw
                loss = self.image_loss(image, raw if fine else None, opacity,
                                       shape_scale=1.0 if stage == "camera" else s.refine_shape_scale)
                if w_plus:
                    loss = loss + s.prior_weight * u.square().mean()
                    loss = loss + s.spread_weight * (u - u.mean(1, keepdim=True)).square().mean()
                else:
                    loss = loss + s.prior_weight * u.square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                angles[1].clamp_(-1.2, 1.2)
            loss_value = float(loss.detach())
            preview = None
            if s.preview_every and ((step + 1) % s.preview_every == 0 or step + 1 == steps):
                preview = self.preview(G, self.ws_of(u), c)
            self.progress(stage, step + 1, steps, preview)
        a = angles.detach()
        return u.detach(), float(a[0]), float(a[1]), loss_value

    # -- stage 3: pivotal tuning --------------------------------------------------------------------------------

    def pti(self, ws: torch.Tensor, c: torch.Tensor, steps: int) -> tuple[Generator, float]:
        s, G = self.s, self.G
        tuned = copy.deepcopy(G)
        params = [p for name, p in tuned.named_parameters() if not name.startswith("backbone.mapping")]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=s.lr_pti)
        gen = torch.Generator().manual_seed(s.seed + 2)
        r = G.config.rendering
        samples = s.fine_samples or r.depth_resolution
        importance = s.fine_samples or r.depth_resolution_importance
        low, dist = s.coarse_resolution, cameras.camera_distribution(G.config)
        loss_value = float("nan")
        ws = ws.detach()
        for step in range(steps):
            self.check_stop()
            with dispatch.use("grad"):
                feats, _, opacity = self.render_raw(tuned, ws, c, r.neural_rendering_resolution, samples, importance)
                image = tuned.super_resolve(feats, ws)
                loss = self.image_loss(image, feats[:, :3], opacity, shape_scale=s.refine_shape_scale)
                if s.locality_weight > 0:
                    # PTI's locality: latents between the pivot and a sample of W, and the pivot seen from a random
                    # camera of the model's distribution, render as the original generator renders them
                    z = torch.randn(1, G.w_dim, generator=gen).to(self.device)
                    w_r = ws[:, :1] + 0.5 * (self.ws_of(z)[:, :1] - ws[:, :1])
                    both = torch.cat([w_r.expand(-1, G.num_ws, -1), ws])
                    yaw, pitch = dist.draw(np.random.RandomState(int(torch.randint(2**31, (1,), generator=gen))))
                    c_r = torch.cat([c, cameras.camera(self.defaults, yaw - cameras.FRONTAL,
                                                       pitch - cameras.FRONTAL).to(self.device)])
                    mine, _, _ = self.render_raw(tuned, both, c_r, low, s.coarse_samples, s.coarse_samples)
                    with torch.no_grad():
                        ref, _, _ = self.render_raw(G, both, c_r, low, s.coarse_samples, s.coarse_samples)
                    loss = loss + s.locality_weight * (mine[:, :3] - ref[:, :3]).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = float(loss.detach())
            preview = None
            if s.preview_every and ((step + 1) % s.preview_every == 0 or step + 1 == steps):
                preview = self.preview(tuned, ws, c)
            self.progress("pti", step + 1, steps, preview)
        tuned.eval().requires_grad_(False)
        return tuned, loss_value


def full_circle(G: Generator) -> bool:
    """Whether G's cameras go all the way round the object (yaw uniform over 360 deg, as the cars')."""
    dist = cameras.camera_distribution(G.config)
    return dist.kind == "uniform" and dist.horizontal_std >= math.pi - 1e-6


def _wrap(angle: float) -> float:
    """An angle in radians wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


class StageProgress:
    """Turns the library's per-stage ``progress(stage, step, total)`` into one fraction for the whole job.

    The camera stage makes several passes (the grid search, a few steps for each candidate camera, the front/back
    twin's too where the model's cameras go all the way round, then more for the finalists); every pass restarts its
    step count, which is how a new one is recognised."""

    def __init__(self, settings: InversionSettings, estimate_camera: bool, full_circle: bool = True) -> None:
        self.stages = [name for name, steps in (("coarse", settings.coarse_steps), ("fine", settings.fine_steps))
                       if steps]
        self.camera_passes = 1 + sum(settings.camera_passes(full_circle)) if estimate_camera else 0
        if estimate_camera:
            self.stages.insert(0, "camera")
        self._pass, self._last_step = 0, 0

    def __call__(self, stage: str, step: int, total: int) -> float:
        index = self.stages.index(stage) if stage in self.stages else len(self.stages) - 1
        part = step / max(total, 1)
        if stage == "camera":
            if step <= self._last_step:
                self._pass = min(self._pass + 1, self.camera_passes - 1)
            self._last_step = step
            part = (self._pass + part) / self.camera_passes
        return min(1.0, (index + part) / max(len(self.stages), 1))


def _load_perceptual(path: str, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such perceptual-loss weights file")
    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it is the one offline format here
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(path, map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{path}: not a TorchScript perceptual-loss module ({' '.join(str(e).split())[:120]})"
                         ) from None
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def invert(G: Generator, picture: Any, settings: InversionSettings | None = None, yaw: float | None = None,
           pitch: float | None = None, progress: ProgressFn | None = None,
           should_stop: Callable[[], bool] | None = None) -> InversionResult:
    """Invert a picture (path, PIL image or numpy array; see ``load_picture``) into G.

    ``yaw`` / ``pitch``: the picture's camera as offsets from frontal in degrees (both or neither); given, the camera
    search is skipped and the camera stays fixed. ``progress(stage, step, total, preview)`` is called after every step
    (``preview``: the current fit as uint8 [S, S, 3], every ``settings.preview_every`` steps, else None);
    ``should_stop()`` is asked before every step and cancels with ``InversionCancelled``. G itself is not changed,
    and torch's global random state is neither used nor changed (random draws come from ``settings.seed``), so a
    worker thread can run it next to renders.
    """
    s = settings or InversionSettings()
    if (yaw is None) != (pitch is None):
        raise InputError("give both yaw and pitch of the picture's camera, or neither")
    for name, value in (("yaw", yaw), ("pitch", pitch)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise InputError(f"{name} must be a finite number of degrees, got {value!r}")
    if pitch is not None and abs(pitch) > 80:
        raise InputError(f"pitch must be within +-80 degrees of frontal, got {pitch}")
    target = load_picture(picture, G.img_resolution, model_background(G))
    timings: dict[str, float] = {}
    losses: dict[str, float] = {}
    inv = _Inverter(G, target, s, progress, should_stop)
    u0 = torch.zeros(1, G.w_dim, device=inv.device)
    t0 = time.perf_counter()
    if yaw is None:
        refined = [inv.refine("camera", u0, y, p, s.candidate_steps, False, True) for y, p, _ in inv.camera_search()]
        if s.finalist_steps and len(refined) > 1:
            refined = sorted(refined, key=lambda r: r[3])[:s.finalists]
            refined = [inv.refine("camera", u, y, p, s.finalist_steps, False, True) for u, y, p, _ in refined]
        u, y, p, losses["camera"] = min(refined, key=lambda r: r[3])
        timings["camera"] = time.perf_counter() - t0
    else:
        u, y, p = u0, math.radians(float(yaw)), math.radians(float(pitch))
    learn_camera = yaw is None
    for stage, steps, fine in (("coarse", s.coarse_steps, False), ("fine", s.fine_steps, True)):
        if steps:
            t0 = time.perf_counter()
            u, y, p, losses[stage] = inv.refine(stage, u, y, p, steps, fine, learn_camera)
            timings[stage] = time.perf_counter() - t0
    if s.w_plus_steps:
        t0 = time.perf_counter()
        u = u[:, None].expand(-1, G.num_ws, -1).contiguous() if u.ndim == 2 else u
        u, y, p, losses["w_plus"] = inv.refine("w_plus", u, y, p, s.w_plus_steps, True, learn_camera, True)
        timings["w_plus"] = time.perf_counter() - t0
    ws = inv.ws_of(u).detach().float().contiguous()
    c = cameras.camera(inv.defaults, _wrap(y), p).to(inv.device)
    with torch.no_grad():
        fit = G.synthesis(ws, c)["image"]
    result = InversionResult(ws=ws.cpu(), c=c.cpu(), yaw=math.degrees(_wrap(y)), pitch=math.degrees(p),
                             losses=losses, timings=timings, fit=fit.cpu(), psnr=float(psnr(fit, inv.target)[0]))
    return _pivotal_tuning(inv, result) if s.pti_steps else result


def pivotal_tuning(G: Generator, picture: Any, result: InversionResult, settings: InversionSettings | None = None,
                   progress: ProgressFn | None = None,
                   should_stop: Callable[[], bool] | None = None) -> InversionResult:
    """Pivotal tuning of a copy of G around an inversion's ws and camera (``settings.pti_steps`` steps, at least 1):
    the result with ``generator``, its fit and PSNR, and the ``pti`` loss and time added. G is not changed."""
    s = settings or InversionSettings()
    target = load_picture(picture, G.img_resolution, model_background(G))
    return _pivotal_tuning(_Inverter(G, target, s, progress, should_stop), result)


def _pivotal_tuning(inv: _Inverter, result: InversionResult) -> InversionResult:
    """``pivotal_tuning`` with an existing inverter (its target, settings, W statistics and perceptual module);
    ``invert`` passes its own rather than loading the picture and sampling W again."""
    steps = max(1, inv.s.pti_steps)
    ws, c = result.ws.to(inv.device), result.c.to(inv.device)
    t0 = time.perf_counter()
    tuned, loss = inv.pti(ws, c, steps)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        fit = tuned.synthesis(ws, c)["image"]
    return replace(result, generator=tuned, fit=fit.cpu(), psnr=float(psnr(fit, inv.target)[0]),
                   losses={**result.losses, "pti": loss}, timings={**result.timings, "pti": seconds})


__all__ = ["InversionCancelled", "InversionResult", "InversionSettings", "MAX_PIXELS", "MIN_SIDE", "STAGES",
           "camera_from_offsets", "invert", "load_picture", "pivotal_tuning", "model_background", "psnr", "ssim", "w_statistics"]
