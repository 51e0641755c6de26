"""Coarse-to-fine density grid: exact wherever marching cubes looks, evaluating the density only near the surface."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError
from .grid import ORIGINAL_LEVEL, DensityFn, ProgressFn, call_density, grid_coordinates, pad_value, pad_volume_borders


def _evaluate_voxels(
    density_fn: DensityFn,
    coords: torch.Tensor,
    ix: np.ndarray,
    iy: np.ndarray,
    iz: np.ndarray,
    batch_points: int,
    device: torch.device | str | None,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Density at the voxels (ix[k], iy[k], iz[k]) -> [M] float32, evaluated in batches of ``batch_points``."""
    out = np.empty(len(ix), dtype=np.float32)
    for start in range(0, len(ix), batch_points):
        end = min(start + batch_points, len(ix))
        sl = slice(start, end)
        pts = torch.stack(
            [coords[torch.from_numpy(ix[sl])], coords[torch.from_numpy(iy[sl])], coords[torch.from_numpy(iz[sl])]],
            dim=1,
        )
        out[sl] = call_density(density_fn, pts.to(device) if device is not None else pts)
        if progress is not None:
            progress(end - start)
    return out


def _clear_borders(mask: np.ndarray, pad: int) -> None:
    """Set the ``pad`` outermost layers of bool mask [N,N,N] to False in place (slicing: no N^3 temporary)."""
    if pad > 0:
        mask[:pad] = mask[-pad:] = False
        mask[:, :pad] = mask[:, -pad:] = False
        mask[:, :, :pad] = mask[:, :, -pad:] = False


def _corners_of_cells(cells: np.ndarray) -> np.ndarray:
    """Cell mask [N-1]^3 -> voxel mask [N]^3 of all 8 corners of the marked cells."""
    n = cells.shape[0] + 1
    out = np.zeros((n, n, n), dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                out[dx : dx + n - 1, dy : dy + n - 1, dz : dz + n - 1] |= cells
    return out


def _crossing_cells(inside: np.ndarray) -> np.ndarray:
    """Voxel inside-mask [N]^3 -> [N-1]^3 cells whose 8 corners are not all on the same side (those emit triangles)."""
    n = inside.shape[0]
    any_in = np.zeros((n - 1,) * 3, dtype=bool)
    all_in = np.ones((n - 1,) * 3, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = inside[dx : dx + n - 1, dy : dy + n - 1, dz : dz + n - 1]
                any_in |= corner
                all_in &= corner
    return any_in & ~all_in


def _coarse_indices(resolution: int, step: int) -> np.ndarray:
    """Fine indices of the coarse grid: 0, s, 2s, ... and always N-1 (the last block may be shorter)."""
    return np.unique(np.r_[np.arange(0, resolution, step), resolution - 1])


def _linear_weights(resolution: int, ci: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each fine index: the coarse interval a (ci[a] <= i <= ci[a+1]) and the fraction t in [0, 1]."""
    i = np.arange(resolution)
    a = np.clip(np.searchsorted(ci, i, side="right") - 1, 0, len(ci) - 2)
    t = ((i - ci[a]) / (ci[a + 1] - ci[a])).astype(np.float32)
    return a, t


def _trilinear_upsample(coarse: np.ndarray, resolution: int, ci: np.ndarray) -> np.ndarray:
    """Coarse values [Nc]^3 at fine indices ci -> [N]^3 float32 trilinear estimate.

    Separable, and the last axis is done slab by slab, so peak memory stays ~1x the fine volume (0.5 GB at 512^3).
    Each estimate is a convex combination of its block's corners, so inside a block whose corners all lie on
    one side of the level the estimate lies on that side too.
    """
    a, t = _linear_weights(resolution, ci)
    g = coarse[:, :, a] * (1 - t) + coarse[:, :, a + 1] * t  # [Nc, Nc, N]
    g = torch.from_numpy(g[:, a, :] * (1 - t)[:, None] + g[:, a + 1, :] * t[:, None])  # [Nc, N, N]
    out = np.empty((resolution,) * 3, dtype=np.float32)
    out_t = torch.from_numpy(out)  # shares memory: lerp writes straight into the result, no N^3 temporaries
    for i in range(resolution):
        k = int(a[i])  # a plain int: indexing a tensor with a numpy integer takes a slow copying path
        torch.lerp(g[k], g[k + 1], float(t[i]), out=out_t[i])
    return out


class CoarseToFineGrid(NamedTuple):
    """Result of :func:`density_grid_coarse_to_fine` (see there)."""

    volume: np.ndarray  # [N,N,N] float32, border already padded
    evaluated: np.ndarray  # [N,N,N] bool
    value_range: tuple[float, float]  # (min, max) of the values density_fn returned


def density_grid_coarse_to_fine(
    density_fn: DensityFn,
    resolution: int = 256,
    box_size: float = 1.0,
    level: float = ORIGINAL_LEVEL,
    *,
    pad: int = 0,
    coarse_step: int = 4,
    dilate: int = 1,
    batch_points: int = 2**18,
    progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
) -> CoarseToFineGrid:
    """Density grid that is exact wherever marching cubes looks, evaluating only near the surface.

    Returns ``CoarseToFineGrid(volume, evaluated, value_range)``: volume [N,N,N] float32 ``[ix, iy, iz]`` with the
    ``pad`` border layers already set to the pad value; evaluated [N,N,N] bool marking the voxels where ``density_fn``
    was called (outside the border their values are bit-identical to :func:`density_grid`'s, because the same float32
    points are used; inside it they hold the pad value like the dense path after padding); value_range the (min, max)
    of all values ``density_fn`` returned.

    Algorithm:
      1. evaluate the coarse grid made of every ``coarse_step``-th fine index (plus N-1) — these are fine voxels;
      2. mark coarse blocks whose 8 corners straddle ``level``, dilate by ``dilate`` blocks, evaluate all their voxels;
      3. fill the unevaluated voxels with the trilinear upsampling of the coarse grid (on the correct side of the
         level inside blocks whose corners agree);
      4. repeat until stable: find the cells the final (padded) volume would triangulate and evaluate any of their
         corners not evaluated yet.  This follows the surface out of the dilated band, fixes estimates that were
         on the wrong side, and covers the planes where the border padding cuts the shape.
    On termination every cell that emits triangles has exact corners, so the mesh equals the dense grid's mesh.
    The one assumption is that no piece of surface is entirely hidden between coarse samples, i.e. no feature
    thinner than ~``coarse_step`` voxels that is disconnected from the detected surface.

    Bit-identity with the dense grid also assumes ``density_fn`` treats each point independently of the others in
    its batch (true for per-point MLPs up to BLAS blocking; the benchmark checks it for one).

    ``progress(done, scheduled)`` is called after every batch (``scheduled`` grows as the surface is followed).
    """
    n = resolution
    if coarse_step < 1:
        raise InputError(f"coarse_step must be >= 1, got {coarse_step}")
    coords = grid_coordinates(n, box_size)
    fill = pad_value(level)
    counter = {"done": 0, "scheduled": 0}
    seen = [np.inf, -np.inf]

    def evaluate(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        counter["scheduled"] += len(ix)

        def tick(k: int) -> None:
            counter["done"] += k
            if progress is not None:
                progress(counter["done"], counter["scheduled"])

        values = _evaluate_voxels(density_fn, coords, ix, iy, iz, batch_points, device, tick)
        seen[0], seen[1] = min(seen[0], float(values.min())), max(seen[1], float(values.max()))
        return values

    # 1. Coarse grid.
    ci = _coarse_indices(n, coarse_step)
    cx, cy, cz = (g.ravel() for g in np.meshgrid(ci, ci, ci, indexing="ij"))
    coarse = evaluate(cx, cy, cz).reshape(len(ci), len(ci), len(ci))

    # 3 (done first so step 2 can write into it). Estimate everywhere, then the exact coarse samples.
    volume = _trilinear_upsample(coarse, n, ci)
    evaluated = np.zeros((n, n, n), dtype=bool)
    volume[np.ix_(ci, ci, ci)] = coarse
    evaluated[np.ix_(ci, ci, ci)] = True

    # 2. Blocks that straddle the level, dilated for safety, expanded to their (closed) voxel ranges.
    blocks = _crossing_cells(coarse > level)
    if dilate > 0 and blocks.any():
        from scipy.ndimage import binary_dilation

        blocks = binary_dilation(blocks, structure=np.ones((3, 3, 3), dtype=bool), iterations=dilate)
    lengths = np.diff(ci)
    cells = np.repeat(np.repeat(np.repeat(blocks, lengths, axis=0), lengths, axis=1), lengths, axis=2)
    todo = _corners_of_cells(cells) & ~evaluated
    del cells
    _clear_borders(todo, pad)  # pad voxels are overwritten anyway: never evaluate them
    if todo.any():
        ix, iy, iz = np.nonzero(todo)
        volume[ix, iy, iz] = evaluate(ix, iy, iz)
        evaluated[ix, iy, iz] = True
    del todo

    # Padding must be applied before step 4: the pad planes create crossings of their own.
    pad_volume_borders(volume, pad, fill)

    # 4. Follow the surface of the volume marching cubes will actually see.
    while True:
        todo = _corners_of_cells(_crossing_cells(volume > level)) & ~evaluated
        _clear_borders(todo, pad)  # their value is fixed: treat them as known
        if not todo.any():
            break
        ix, iy, iz = np.nonzero(todo)
        volume[ix, iy, iz] = evaluate(ix, iy, iz)
        evaluated[ix, iy, iz] = True
    return CoarseToFineGrid(volume, evaluated, (seen[0], seen[1]))
