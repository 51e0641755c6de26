"""The whole extraction: density grid (dense or coarse-to-fine) -> marching cubes -> clean-up -> colours."""
from __future__ import annotations

import torch

from .coarse_to_fine import density_grid_coarse_to_fine
from .color import ColorFn, colorize
from .grid import ORIGINAL_LEVEL, DensityFn, ProgressFn, border_pad, density_grid, pad_value, pad_volume_borders
from .surface import Mesh, keep_largest_component, require_surface, smooth_mesh, volume_to_mesh


def extract_mesh(
    density_fn: DensityFn,
    resolution: int = 256,
    box_size: float = 1.0,
    level: float = ORIGINAL_LEVEL,
    pad_borders: bool = True,
    coarse_to_fine: bool = False,
    color_fn: ColorFn | None = None,
    largest_component: bool = False,
    smooth_iterations: int = 0,
    progress: ProgressFn | None = None,
    *,
    color_range: tuple[float, float] = (-1.0, 1.0),
    coarse_step: int = 4,
    batch_points: int = 2**18,
    device: torch.device | str | None = None,
) -> Mesh:
    """Iso-surface of ``density_fn`` at ``level`` on an ``N^3`` grid over the ``box_size`` cube -> Mesh (world units).

    pad_borders: like the original, the ``int(30*N/256)`` outer voxel layers are forced below the level so the mesh is
        closed (watertight) even where the shape touches the box; note this also crops anything within that border.
    coarse_to_fine: use :func:`density_grid_coarse_to_fine` (same mesh, far fewer density evaluations; see there for
        the one assumption).  Otherwise the full grid is evaluated with :func:`density_grid`.
    color_fn: optional ``points [M,3] -> [M,3]`` in ``color_range`` (default [-1,1]) giving vertex colours, evaluated
        at the final vertex positions.
    largest_component / smooth_iterations: post-processing (drop floaters; Taubin smoothing).  Both change the mesh
        relative to the original's, so they are off by default.
    Raises NoSurfaceError (one line, naming the density range seen) when the density never crosses the level.
    """
    pad = border_pad(resolution) if pad_borders else 0
    if coarse_to_fine:
        volume, _, (lo, hi) = density_grid_coarse_to_fine(
            density_fn, resolution, box_size, level, pad=pad, coarse_step=coarse_step,
            batch_points=batch_points, progress=progress, device=device,
        )
    else:
        volume = density_grid(density_fn, resolution, box_size, batch_points, progress, device=device)
        lo, hi = float(volume.min()), float(volume.max())
        pad_volume_borders(volume, pad, pad_value(level))
    require_surface(lo, hi, level)
    mesh = volume_to_mesh(volume, box_size, level)
    del volume
    if largest_component:
        mesh = keep_largest_component(mesh)
    mesh = smooth_mesh(mesh, smooth_iterations)
    if color_fn is not None:
        mesh = colorize(mesh, color_fn, color_range, batch_points, device)
    return mesh
