"""Turning generator outputs into pictures, and seeds into latents, the same way in every front end."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError

SEED_LIMIT = 2**32  # seeds are integers in [0, SEED_LIMIT): numpy's RandomState takes 32-bit seeds

# Anchor colours of a perceptually ordered map (dark blue -> cyan -> yellow -> dark red), for depth images.
_DEPTH_MAP = np.array([
    [0.19, 0.07, 0.23], [0.27, 0.39, 0.85], [0.16, 0.73, 0.92], [0.20, 0.95, 0.60],
    [0.65, 0.99, 0.23], [0.96, 0.80, 0.16], [0.98, 0.45, 0.10], [0.80, 0.15, 0.03], [0.48, 0.02, 0.01],
])


def seed_to_z(seeds: int | Sequence[int], z_dim: int) -> torch.Tensor:
    """Latents the way the original scripts draw them: ``RandomState(seed).randn(z_dim)`` -> [N, z_dim] float32."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    for s in seeds:
        if not 0 <= int(s) < SEED_LIMIT:
            raise InputError(f"seed must be an integer in [0, 2**32), got {s}")
    return torch.from_numpy(np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds])).float()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1], [N, C, H, W] or [C, H, W] -> uint8 [N, H, W, C] or [H, W, C] (the original's rounding)."""
    x = (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


OPACITY_SHOWN = 0.5  # depth is shown where a ray's opacity reaches this (the surface the mesh level also finds)


def depth_range(depth: torch.Tensor, opacity: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(near, far) per image [..., 1, 1] over the pixels that show something (all pixels without ``opacity``)."""
    d = depth.detach().float()
    flat = d.reshape(*d.shape[:-2], -1)
    if opacity is None:
        return flat.min(dim=-1).values[..., None, None], flat.max(dim=-1).values[..., None, None]
    seen = (opacity.detach().float() >= OPACITY_SHOWN).reshape(flat.shape)
    lo = torch.where(seen, flat, torch.inf).min(dim=-1).values
    hi = torch.where(seen, flat, -torch.inf).max(dim=-1).values
    empty = ~seen.any(dim=-1)
    lo, hi = torch.where(empty, 0.0, lo), torch.where(empty, 1.0, hi)
    return lo[..., None, None], hi[..., None, None]


def normalize_depth(depth: torch.Tensor, opacity: torch.Tensor | None = None) -> torch.Tensor:
    """Depth [..., H, W] -> [0, 1] per image with near = 1 (bright), as the original's viewers show it.

    With ``opacity`` (the renderer's ``image_mask``, same shape) the range is taken over the pixels that show
    something, so empty space does not squeeze the object's depth into a sliver of the scale."""
    lo, hi = depth_range(depth, opacity)
    return (1 - (depth.detach().float() - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)


def _background(image: np.ndarray, opacity: torch.Tensor | None, background: int) -> np.ndarray:
    """Fade uint8 [..., H, W, 3] pictures to ``background`` where ``opacity`` [..., 1, H, W] is low."""
    if opacity is None:
        return image
    a = (opacity.detach().float().clamp(0, 1).movedim(-3, -1).cpu().numpy() / OPACITY_SHOWN).clip(0, 1)
    return (image * a + background * (1 - a)).round().astype(np.uint8)


def depth_to_gray(depth: torch.Tensor, opacity: torch.Tensor | None = None, background: int = 0) -> np.ndarray:
    """Depth [N, 1, H, W] or [1, H, W] -> uint8 grey images [..., H, W, 3], near = white; empty space (``opacity``
    given) fades to ``background``."""
    g = (normalize_depth(depth, opacity) * 255).round().to(torch.uint8)
    g = g.movedim(-3, -1).expand(*g.movedim(-3, -1).shape[:-1], 3).cpu().numpy()
    return _background(g, opacity, background)


def depth_to_color(depth: torch.Tensor, opacity: torch.Tensor | None = None, background: int = 255) -> np.ndarray:
    """Depth [N, 1, H, W] or [1, H, W] -> uint8 colour-mapped images [..., H, W, 3], near = warm; empty space
    (``opacity`` given) fades to ``background`` (white by default)."""
    rgb = depth_colormap(normalize_depth(depth, opacity).movedim(-3, -1)[..., 0].cpu().numpy())
    return _background(rgb, opacity, background)


def depth_colormap(t: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (1 = near) -> uint8 colours [..., 3] of the depth colour map (for legends too)."""
    t = np.asarray(t, dtype=np.float64) * (len(_DEPTH_MAP) - 1)
    i = np.clip(np.floor(t).astype(int), 0, len(_DEPTH_MAP) - 2)
    f = (t - i)[..., None]
    rgb = _DEPTH_MAP[i] * (1 - f) + _DEPTH_MAP[i + 1] * f
    return (rgb * 255).round().astype(np.uint8)
