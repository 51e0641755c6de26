"""MMagic's EG3D demo (``mmagic_inference_demo.py --model-name eg3d``): interpolation videos and frames.

What is kept from MMagic 1.2.0 (so outputs line up file by file):

* the three interpolation modes and the orbit ``yaw = h_mean + h_std sin(2 pi i / n)``,
  ``v = v_mean + v_std cos(2 pi i / n)`` built from the config camera's means and stds;
* a batch of ``num_batches`` latents per frame, tiled like torchvision's ``make_grid`` (padding 2, black) with
  MMagic's images-per-row rule; depth as grey with near bright, normalised by the global min/max over all
  frames and batch items, resized to the image size; float -> uint8 by truncation;
* file names ``{depth|fake_img|combine}_seed{S}.mp4`` and ``{...}_frame{i}_seed{S}.png`` (60 fps, libx264,
  10 Mbit/s); a single frame is saved as ``{...}_seed{S}.png`` without videos;
* seeding: Python, NumPy and torch seeded with S, and by default the same torch CPU draws as MMagic before z
  (two per camera, made even with std 0), so an MMagic checkpoint gives MMagic's latents for the same seed,
  batch size and frame count. ``latents="seed"`` draws z first instead (independent of the frame count).

What differs, on purpose:

* ``interpolation="conditioning"`` interpolates the conditioning camera while the render camera stays at the
  mean pose, as MMagic documents it (MMagic's code renders a static sequence because of a bug);
* the volume renderer is deterministic by default (MMagic jitters samples: frames flicker slightly);
* MMagic's generator emits BGR that its visualiser flips back; ours is RGB throughout (same pixels);
* for models without an MMagic config the camera comes from the model (see
  :func:`eg3d_core.cameras.camera_distribution`, imported here as ``demo_camera``).
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cameras import CameraDistribution as DemoCamera
from ..cameras import camera_distribution as demo_camera
from ..errors import InputError
from ..generator import Generator
from ..latents import LatentSource, PlaneCache
from ..settings import RenderSettings
from ..visualize import SEED_LIMIT
from .samples import save_png
from .video import calculate_grid_size, make_grid, write_video

INTERPOLATIONS = ("both", "camera", "conditioning")
VIS_MODES = ("both", "depth", "img")
LATENT_MODES = ("mmagic", "seed")


@dataclass(frozen=True)
class DemoSettings:
    """The demo's options, with MMagic's defaults."""

    interpolation: str = "both"
    num_images: int = 100
    num_batches: int = 4
    seed: int = 2022
    vis_mode: str = "both"
    save_img: bool = True
    save_video: bool = True
    img_suffix: str = ".png"
    video_suffix: str = ".mp4"
    latents: str = "mmagic"
    render: RenderSettings = field(default_factory=RenderSettings)

    def __post_init__(self) -> None:
        for name, value, allowed in (("interpolation", self.interpolation, INTERPOLATIONS),
                                     ("vis_mode", self.vis_mode, VIS_MODES), ("latents", self.latents, LATENT_MODES)):
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.num_images < 1 or self.num_batches < 1:
            raise InputError("num_images and num_batches must be >= 1")
        if not 0 <= self.seed < SEED_LIMIT:
            raise InputError(f"seed must be in [0, 2**32), got {self.seed}")

    @property
    def targets(self) -> tuple[str, ...]:
        """Outputs in MMagic's order (depth first)."""
        return {"both": ("depth", "fake_img", "combine"), "depth": ("depth",), "img": ("fake_img",)}[self.vis_mode]


def draw_latents(z_dim: int, settings: DemoSettings, camera_kind: str) -> torch.Tensor:
    """z [num_batches, z_dim] the way MMagic draws it (module docstring), on the CPU generator."""
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    if settings.latents == "mmagic":
        draw = torch.randn if camera_kind == "gaussian" else torch.rand
        # cond_forward draws (theta, phi); the camera modes then draw both again for every orbit frame.
        calls = 1 + (settings.num_images if settings.interpolation in ("both", "camera") else 0)
        for _ in range(2 * calls):
            draw(settings.num_batches, 1)
    return torch.randn(settings.num_batches, z_dim)


@dataclass
class DemoFrames:
    """Rendered sequence: images uint8 [T, B, S, S, 3] (truncated like MMagic), raw depth float [T, B, 1, R, R]."""

    images: np.ndarray
    depth: torch.Tensor


def render_demo(G: Generator, camera: DemoCamera, settings: DemoSettings, device: str | torch.device = "cpu",
                progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> DemoFrames:
    """Render the interpolation sequence (``progress`` wraps the frame loop, e.g. ``tqdm``)."""
    z = draw_latents(G.z_dim, settings, camera.kind).to(device)
    b, n = settings.num_batches, settings.num_images
    mean = camera.mean().to(device)
    moving = camera.orbit(n).to(device)
    kwargs = settings.render.synthesis_kwargs(G.config)
    images, depths = [], []
    # The camera mode, and models that ignore the conditioning, keep their tri-planes from frame to frame.
    cache = PlaneCache(G, size=1)
    frames: Iterable[int] = range(n)
    if progress is not None:
        frames = progress(frames)
    with torch.no_grad():
        for i in frames:
            cond = mean if settings.interpolation == "camera" else moving[i : i + 1]
            render = moving[i : i + 1] if settings.interpolation in ("both", "camera") else mean
            entry, _ = cache.latent(LatentSource.from_ws(G.mapping(z, cond.expand(b, 25))), settings.render)
            out = G.render_planes(entry.planes, entry.ws, render.expand(b, 25), **kwargs)
            img = ((out["image"].float() + 1) / 2 * 255).clamp(0, 255)
            images.append(img.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())  # to(uint8) truncates like astype
            depths.append(out["image_depth"].float().cpu())
    return DemoFrames(np.stack(images), torch.stack(depths))


def depth_images(depth: torch.Tensor, size: int) -> np.ndarray:
    """MMagic's depth visualisation: -depth min-max normalised over the whole sequence, x255, grey, bilinear
    resize to the image size, truncated to uint8. depth [T, B, 1, R, R] -> [T, B, size, size, 3]."""
    d = -depth
    lo, hi = d.min(), d.max()
    g = ((d - lo) / (hi - lo).clamp_min(1e-12) * 255).clamp(0, 255)
    t, b, _, r, _ = g.shape
    g = g.reshape(t * b, 1, r, r)
    if r != size:
        g = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    g = g.clamp(0, 255).to(torch.uint8).reshape(t, b, size, size, 1).expand(-1, -1, -1, -1, 3)
    return g.numpy()


def _sequences(frames: DemoFrames, targets: tuple[str, ...]) -> dict[str, Callable[[], Iterator[np.ndarray]]]:
    """Per target, a factory of its grid frames (lazy: each grid is built when written)."""
    t, b, size = frames.images.shape[0], frames.images.shape[1], frames.images.shape[2]
    depth = depth_images(frames.depth, size) if {"depth", "combine"} & set(targets) else None
    per_row, per_row_wide = calculate_grid_size(b), calculate_grid_size(b, aspect_ratio=2)

    def fake_img() -> Iterator[np.ndarray]:
        return (make_grid(frames.images[i], per_row) for i in range(t))

    def depth_frames() -> Iterator[np.ndarray]:
        assert depth is not None
        return (make_grid(depth[i], per_row) for i in range(t))

    def combine() -> Iterator[np.ndarray]:
        assert depth is not None
        return (make_grid(np.concatenate([frames.images[i], depth[i]], axis=2), per_row_wide) for i in range(t))

    table = {"depth": depth_frames, "fake_img": fake_img, "combine": combine}
    return {name: table[name] for name in targets}


def write_demo(frames: DemoFrames, settings: DemoSettings, outdir: str | os.PathLike[str],
               progress: Callable[[Iterable[np.ndarray], str, int], Iterable[np.ndarray]] | None = None) -> list[Path]:
    """Write MMagic's files for the rendered sequence into ``outdir`` (created). Returns the paths written.

    ``progress(iterable, description, total)`` may wrap each sequence (e.g. tqdm).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    seed, t = settings.seed, frames.images.shape[0]
    written: list[Path] = []
    for target, make in _sequences(frames, settings.targets).items():
        if t == 1:  # MMagic: a single frame is one image named without a frame index, and no video
            if settings.save_img:
                written.append(save_png(next(iter(make())), outdir / f"{target}_seed{seed}{settings.img_suffix}"))
            continue
        if settings.save_img:
            seq = enumerate(make())
            for i, grid in (progress(seq, f"{target} frames", t) if progress else seq):
                written.append(save_png(grid, outdir / f"{target}_frame{i}_seed{seed}{settings.img_suffix}"))
        if settings.save_video:
            path = outdir / f"{target}_seed{seed}{settings.video_suffix}"
            seq_v = make()
            write_video(progress(seq_v, f"{target} video", t) if progress else seq_v, path, fps=60, bitrate="10M")
            written.append(path)
    return written


__all__ = ["DemoCamera", "DemoFrames", "DemoSettings", "INTERPOLATIONS", "LATENT_MODES", "VIS_MODES",
           "demo_camera", "depth_images", "draw_latents", "render_demo", "write_demo"]
