"""Turning generator outputs into pictures, and seeds into latents, the same way in every front end."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import InputError

# Anchor colours of a perceptually ordered map (dark blue -> cyan -> yellow -> dark red), for depth images.
_DEPTH_MAP = np.array([
    [0.19, 0.07, 0.23], [0.27, 0.39, 0.85], [0.16, 0.73, 0.92], [0.20, 0.95, 0.60],
    [0.65, 0.99, 0.23], [0.96, 0.80, 0.16], [0.98, 0.45, 0.10], [0.80, 0.15, 0.03], [0.48, 0.02, 0.01],
])


def seed_to_z(seeds: int | Sequence[int], z_dim: int) -> torch.Tensor:
    """Latents the way the original scripts draw them: ``RandomState(seed).randn(z_dim)`` -> [N, z_dim] float32."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    for s in seeds:
        if not 0 <= int(s) < 2**32:
            raise InputError(f"seed must be an integer in [0, 2**32), got {s}")
    return torch.from_numpy(np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds])).float()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1], [N, C, H, W] or [C, H, W] -> uint8 [N, H, W, C] or [H, W, C] (the original's rounding)."""
    x = (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def normalize_depth(depth: torch.Tensor) -> torch.Tensor:
    """Depth [..., H, W] -> [0, 1] per image with near = 1 (bright), as the original's viewers show it."""
    d = depth.detach().float()
    flat = d.reshape(*d.shape[:-2], -1)
    lo = flat.min(dim=-1).values[..., None, None]
    hi = flat.max(dim=-1).values[..., None, None]
    return 1 - (d - lo) / (hi - lo).clamp_min(1e-8)


def depth_to_gray(depth: torch.Tensor) -> np.ndarray:
    """Depth [N, 1, H, W] or [1, H, W] -> uint8 grey images [..., H, W, 3], near = white."""
    g = (normalize_depth(depth) * 255).round().to(torch.uint8)
    return g.movedim(-3, -1).expand(*g.movedim(-3, -1).shape[:-1], 3).cpu().numpy()


def depth_to_color(depth: torch.Tensor) -> np.ndarray:
    """Depth [N, 1, H, W] or [1, H, W] -> uint8 colour-mapped images [..., H, W, 3], near = warm."""
    t = normalize_depth(depth).movedim(-3, -1)[..., 0].cpu().numpy() * (len(_DEPTH_MAP) - 1)
    i = np.clip(np.floor(t).astype(int), 0, len(_DEPTH_MAP) - 2)
    f = (t - i)[..., None]
    rgb = _DEPTH_MAP[i] * (1 - f) + _DEPTH_MAP[i + 1] * f
    return (rgb * 255).round().astype(np.uint8)
