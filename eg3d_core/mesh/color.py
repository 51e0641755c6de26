"""Vertex colours of a mesh from a colour callable evaluated at its vertices."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .surface import Mesh

ColorFn = Callable[[torch.Tensor], torch.Tensor]


def colorize(
    mesh: Mesh,
    color_fn: ColorFn,
    color_range: tuple[float, float] = (-1.0, 1.0),
    batch_points: int = 2**18,
    device: torch.device | str | None = None,
) -> Mesh:
    """Vertex colours from ``color_fn(points [M,3] world) -> [M,3]``.

    Values are mapped linearly from ``color_range`` (default [-1, 1], the generator's image range; pass (0, 1) for
    [0,1] colours) to 0..255, clipped and rounded to uint8.  A color_fn returning another shape is a programming
    error: plain ValueError.
    """
    lo, hi = color_range
    pts = torch.from_numpy(np.ascontiguousarray(mesh.vertices, dtype=np.float32))
    colors = np.empty((len(pts), 3), dtype=np.uint8)
    for start in range(0, len(pts), batch_points):
        chunk = pts[start : start + batch_points]
        with torch.no_grad():
            c = color_fn(chunk.to(device) if device is not None else chunk)
        if not isinstance(c, torch.Tensor) or c.shape != (len(chunk), 3):
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"color_fn must return a tensor of shape [{len(chunk)}, 3], got {shape}")
        c = c.detach().to(device="cpu", dtype=torch.float64).numpy()
        colors[start : start + len(chunk)] = np.clip(np.rint((c - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    return Mesh(vertices=mesh.vertices, faces=mesh.faces, colors=colors)
