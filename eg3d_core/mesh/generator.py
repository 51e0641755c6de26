"""Meshes of a generator's geometry: its density and colour as callables of points, and :func:`generator_mesh`."""
from __future__ import annotations

import torch

from ..errors import InputError
from ..generator import Generator
from ..rendering.triplane import plane_table
from .color import ColorFn
from .extract import extract_mesh
from .grid import ORIGINAL_LEVEL, DensityFn, ProgressFn
from .surface import Mesh


def density_fn(G: Generator, planes: torch.Tensor) -> DensityFn:
    """Raw sigma of one latent's cached planes [1, 3, C, H, W]: points [M, 3] -> [M]."""
    table = plane_table(planes)  # laid out once for all the chunks of a grid

    def f(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return G.sample_planes(points[None].to(planes.device), planes, table=table)["sigma"][0, :, 0]
    return f


def color_fn(G: Generator, planes: torch.Tensor) -> ColorFn:
    """Raw RGB (first 3 feature channels, mapped to [-1, 1] like the renderer does) at points [M, 3] -> [M, 3]."""
    table = plane_table(planes)

    def f(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return G.sample_planes(points[None].to(planes.device), planes, table=table)["rgb"][0, :, :3] * 2 - 1
    return f


def generator_mesh(G: Generator, ws: torch.Tensor, resolution: int = 256, level: float = ORIGINAL_LEVEL,
                   colors: bool = True, coarse_to_fine: bool = True, noise_mode: str = "const",
                   progress: ProgressFn | None = None, planes: torch.Tensor | None = None, **mesh_kwargs) -> Mesh:
    """Iso-surface of the density of latent ws [1, num_ws, w_dim] over the model's box (world units).

    Uses the original's conventions (grid over the ``box_warp`` cube, raw sigma, level 10, padded borders).
    ``planes``: the tri-planes of ws already computed with ``noise_mode`` in fp32 (``G.planes(ws, noise_mode)``),
    which saves running the backbone again; None computes them.
    Raises NoSurfaceError (one line) if the density never crosses ``level``.
    """
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise InputError(f"generator_mesh takes one latent ws [1, num_ws, w_dim], got {list(ws.shape)}")
    if planes is None:
        with torch.no_grad():
            planes = G.planes(ws, noise_mode)
    return extract_mesh(density_fn(G, planes), resolution, G.config.rendering.box_warp, level,
                        coarse_to_fine=coarse_to_fine, color_fn=color_fn(G, planes) if colors else None,
                        progress=progress, device=planes.device, **mesh_kwargs)
