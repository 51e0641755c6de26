"""The density grid: its coordinates, its dense evaluation, border padding and the original's index conventions.

Grid convention (identical to the original ``gen_samples.py --shapes``, see spec §9.1):

* the grid spans exactly the ``box_size`` cube (``box_warp`` in the generator) with ``N`` points per axis,
  both ends included: coordinate of index ``i`` is ``-box/2 + i*box/(N-1)``;
* our volumes are indexed ``[ix, iy, iz]`` in world axes, **without** the original's x flip;
* the original forces ``pad = int(30*N/256)`` voxels on every face to ``-1000`` so the surface closes,
  and uses iso level 10 on the *raw* sigma (no softplus).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import InputError

DensityFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]

#: Value the original writes into the border voxels (below any sensible iso level).
ORIGINAL_PAD_VALUE = -1000.0
#: Iso level the original uses on raw sigma.
ORIGINAL_LEVEL = 10.0
#: Grid points per axis a front end may ask for: twice gen_samples' 512 (a 1024^3 float32 grid alone is 4.3 GB).
RESOLUTION = (2, 1024)


def border_pad(resolution: int) -> int:
    """Border width the original overwrites: ``int(30*N/256)`` voxels on each face (60 for N=512)."""
    return int(30 * resolution / 256)


def pad_value(level: float) -> float:
    """Value for the border voxels at iso ``level``: the original's -1000, or lower so it stays below any level."""
    return min(ORIGINAL_PAD_VALUE, level - 1000.0)


def pad_volume_borders(volume: np.ndarray, pad: int, value: float = ORIGINAL_PAD_VALUE) -> np.ndarray:
    """Set the ``pad`` outermost layers on every face of volume [N,N,N] to ``value`` **in place**; returns it."""
    if pad > 0:
        volume[:pad] = volume[-pad:] = value
        volume[:, :pad] = volume[:, -pad:] = value
        volume[:, :, :pad] = volume[:, :, -pad:] = value
    return volume


def grid_coordinates(resolution: int, box_size: float = 1.0) -> torch.Tensor:
    """Coordinates of the ``N`` grid points along one axis: [N] float32, ``-box/2 + i*box/(N-1)``.

    Computed once in float32 and then only gathered, so a voxel's point is bit-identical whichever path
    (dense or coarse-to-fine) evaluates it.
    """
    lo, hi = RESOLUTION
    if not lo <= resolution <= hi:
        raise InputError(f"mesh resolution must be in [{lo}, {hi}], got {resolution}")
    return torch.arange(resolution, dtype=torch.float32) * (box_size / (resolution - 1)) + (-box_size / 2)


def index_to_world(indices: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Fractional grid indices [..., 3] (axes x, y, z) -> world coordinates, float64: ``-box/2 + idx*box/(N-1)``."""
    return -box_size / 2 + np.asarray(indices, dtype=np.float64) * (box_size / (resolution - 1))


def world_to_index(points: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Inverse of :func:`index_to_world`, float64."""
    return (np.asarray(points, dtype=np.float64) + box_size / 2) * ((resolution - 1) / box_size)


def call_density(density_fn: DensityFn, points: torch.Tensor) -> np.ndarray:
    """Evaluate ``density_fn`` on points [M,3] and return [M] float32 on the CPU, validating shape and finiteness.

    A density_fn that breaks this contract is a programming error, so it raises a plain ValueError, not an InputError.
    """
    with torch.no_grad():
        out = density_fn(points)
    m = points.shape[0]
    if not isinstance(out, torch.Tensor) or out.shape not in (torch.Size([m]), torch.Size([m, 1])):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"density_fn must return a tensor of shape [{m}] or [{m}, 1], got {shape}")
    values = out.detach().reshape(m).to(device="cpu", dtype=torch.float32).numpy()
    if not np.isfinite(values).all():
        raise ValueError(f"density_fn returned {int((~np.isfinite(values)).sum())} non-finite values")
    return values


def density_grid(
    density_fn: DensityFn,
    resolution: int = 256,
    box_size: float = 1.0,
    batch_points: int = 2**18,
    progress: ProgressFn | None = None,
    *,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Evaluate the density on the full ``N^3`` grid.

    density_fn: points [M,3] float32 (on ``device``, CPU by default) -> [M] or [M,1].
    Returns [N,N,N] float32 indexed ``[ix, iy, iz]`` in world axes (no x flip, no border padding).
    Points are visited in the original's flat order (x slowest, z fastest).  ``progress(done, total)`` is called
    after every batch.  A generator-backed density_fn that wants the original's per-chunk ``torch.manual_seed(0)``
    has to do that itself.
    """
    n = resolution
    coords = grid_coordinates(n, box_size)
    plane = n * n
    # One x slab (0, y, z) in flat order; a batch is assembled from slabs shifted by (x, 0, 0).  Never materialises
    # N^3 indices (3 GB at N=512), and bit-exact: v + 0.0 == v.
    slab = torch.zeros(plane, 3)
    slab[:, 1:] = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), dim=-1).reshape(plane, 2)
    total = n**3
    flat = np.empty(total, dtype=np.float32)
    buffer = torch.empty(min(batch_points, total), 3)  # reused: fresh pages per batch are slow to fault in
    for start in range(0, total, batch_points):
        end = min(start + batch_points, total)
        pts = buffer[: end - start]
        for ix in range(start // plane, (end - 1) // plane + 1):
            lo, hi = max(start, ix * plane), min(end, (ix + 1) * plane)
            shift = torch.stack([coords[ix], torch.zeros(()), torch.zeros(())])
            torch.add(slab[lo - ix * plane : hi - ix * plane], shift, out=pts[lo - start : hi - start])
        flat[start:end] = call_density(density_fn, pts.to(device) if device is not None else pts)
        if progress is not None:
            progress(end, total)
    return flat.reshape(n, n, n)


def to_original_voxel_convention(vertices_world: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Map our world-space vertices [V,3] to where the original's ``.ply`` puts them: [V,3] float64, voxel units.

    The original flips the x axis of the [ix,iy,iz] volume (ix' = N-1-ix), transposes it to [iz, iy, ix'] and runs
    marching cubes with unit spacing and zero origin, so a world point (x, y, z) with fractional indices
    (ix, iy, iz) = (p + box/2)*(N-1)/box lands at ``(iz, iy, N-1-ix)``.  E.g. N=512, box 1: world (-0.5, 0, 0.5)
    -> (511, 255.5, 511); world (0.5, -0.5, 0) -> (255.5, 0, 0).  (The .ply stores these as float32.)
    """
    idx = world_to_index(vertices_world, resolution, box_size)
    return np.stack([idx[..., 2], idx[..., 1], (resolution - 1) - idx[..., 0]], axis=-1)


def from_original_voxel_convention(vertices_voxel: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Inverse of :func:`to_original_voxel_convention`: original ``.ply`` vertices [V,3] -> world [V,3] float64."""
    v = np.asarray(vertices_voxel, dtype=np.float64)
    idx = np.stack([(resolution - 1) - v[..., 2], v[..., 1], v[..., 0]], axis=-1)
    return index_to_world(idx, resolution, box_size)


def to_original_volume_convention(volume: np.ndarray, pad_borders: bool = True) -> np.ndarray:
    """Our unpadded volume [N,N,N] ``[ix,iy,iz]`` -> the array the original writes to ``.mrc``: x flipped
    (``[N-1-ix, iy, iz]``) and, with ``pad_borders``, the ``int(30*N/256)`` border layers set to -1000.  New array."""
    out = np.ascontiguousarray(np.flip(volume, axis=0), dtype=np.float32)
    if pad_borders:
        pad_volume_borders(out, border_pad(volume.shape[0]))
    return out
