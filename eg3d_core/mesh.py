"""Geometry extraction: density grids, marching cubes, and mesh / volume export.

Everything here works on a *density callable* ``density_fn(points [M,3]) -> [M] or [M,1]`` rather than on a
generator, so it can be tested with analytic shapes and reused by the CLI, the viewer and the web demo.

Grid convention (identical to the original ``gen_samples.py --shapes``, see spec §9.1):

* the grid spans exactly the ``box_size`` cube (``box_warp`` in the generator) with ``N`` points per axis,
  both ends included: coordinate of index ``i`` is ``-box/2 + i*box/(N-1)``;
* our volumes are indexed ``[ix, iy, iz]`` in world axes, **without** the original's x flip;
* the original forces ``pad = int(30*N/256)`` voxels on every face to ``-1000`` so the surface closes
  (``pad_borders=True`` here), and uses iso level 10 on the *raw* sigma (no softplus).

Meshes are returned and saved in **world units** (x, y, z as the generator sees them).  The original's ``.ply`` is in
voxel units on a flipped, transposed volume; :func:`to_original_voxel_convention` maps our vertices onto it and
:func:`to_original_volume_convention` turns our volume into the array the original writes to ``.mrc``.

Reproducing ``gen_samples.py --shapes`` with a sigma callable ``f`` (raw density, ``box = box_warp``)::

    volume = density_grid(f, 512, box)                                   # [ix, iy, iz], unpadded
    save_volume(to_original_volume_convention(volume), "seed0000.mrc")   # same array as the original's .mrc
    mesh = extract_mesh(f, 512, box)                                     # world units, padded like the original
    ply_vertices = to_original_voxel_convention(mesh.vertices, 512, box) # the original's .ply vertex positions
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch

from .fileio import atomic_file

DensityFn = Callable[[torch.Tensor], torch.Tensor]
ColorFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]

#: Value the original writes into the border voxels (below any sensible iso level).
ORIGINAL_PAD_VALUE = -1000.0
#: Iso level the original uses on raw sigma.
ORIGINAL_LEVEL = 10.0

MESH_EXTENSIONS = (".ply", ".obj", ".glb")
VOLUME_EXTENSIONS = (".npy", ".mrc")


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in world units.

    vertices: [V, 3] float32, world coordinates (x, y, z).
    faces:    [F, 3] int64, counter-clockwise seen from outside (normals point out of the dense region).
    colors:   [V, 3] uint8 vertex colours, or None.

    Marching cubes output is kept as is: where the density equals the level exactly at a grid point, several
    vertices coincide and some faces have zero area (tools that weld vertices may then see non-manifold edges).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Grid helpers


def border_pad(resolution: int) -> int:
    """Border width the original overwrites: ``int(30*N/256)`` voxels on each face (60 for N=512)."""
    return int(30 * resolution / 256)


def grid_coordinates(resolution: int, box_size: float = 1.0) -> torch.Tensor:
    """Coordinates of the ``N`` grid points along one axis: [N] float32, ``-box/2 + i*box/(N-1)``.

    Computed once in float32 and then only gathered, so a voxel's point is bit-identical whichever path
    (dense or coarse-to-fine) evaluates it.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    return torch.arange(resolution, dtype=torch.float32) * (box_size / (resolution - 1)) + (-box_size / 2)


def _call_density(density_fn: DensityFn, points: torch.Tensor) -> np.ndarray:
    """Evaluate ``density_fn`` on points [M,3] and return [M] float32 on the CPU, validating shape and finiteness."""
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
        out[sl] = _call_density(density_fn, pts.to(device) if device is not None else pts)
        if progress is not None:
            progress(end - start)
    return out


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
    # One x slab (0, y, z) in flat order; a batch is assembled from slabs shifted by (x, 0, 0).  Much cheaper than
    # integer-dividing flat indices, never materialises N^3 indices (3 GB at N=512), and bit-exact: v + 0.0 == v.
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
        flat[start:end] = _call_density(density_fn, pts.to(device) if device is not None else pts)
        if progress is not None:
            progress(end, total)
    return flat.reshape(n, n, n)


def pad_volume_borders(volume: np.ndarray, pad: int, value: float = ORIGINAL_PAD_VALUE) -> np.ndarray:
    """Set the ``pad`` outermost layers on every face of volume [N,N,N] to ``value`` **in place**; returns it."""
    if pad > 0:
        volume[:pad] = volume[-pad:] = value
        volume[:, :pad] = volume[:, -pad:] = value
        volume[:, :, :pad] = volume[:, :, -pad:] = value
    return volume


def _pad_value(level: float) -> float:
    # The original's -1000 works for level 10; keep the pad strictly below any other level too.
    return min(ORIGINAL_PAD_VALUE, level - 1000.0)


# ----------------------------------------------------------------------------------------------------------------------
# Coarse-to-fine evaluation


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
        raise ValueError(f"coarse_step must be >= 1, got {coarse_step}")
    coords = grid_coordinates(n, box_size)
    pad_value = _pad_value(level)
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
    pad_volume_borders(volume, pad, pad_value)

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


# ----------------------------------------------------------------------------------------------------------------------
# Marching cubes and mesh post-processing


def index_to_world(indices: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Fractional grid indices [..., 3] (axes x, y, z) -> world coordinates, float64: ``-box/2 + idx*box/(N-1)``."""
    return -box_size / 2 + np.asarray(indices, dtype=np.float64) * (box_size / (resolution - 1))


def world_to_index(points: np.ndarray, resolution: int, box_size: float = 1.0) -> np.ndarray:
    """Inverse of :func:`index_to_world`, float64."""
    return (np.asarray(points, dtype=np.float64) + box_size / 2) * ((resolution - 1) / box_size)


def volume_to_mesh(volume: np.ndarray, box_size: float = 1.0, level: float = ORIGINAL_LEVEL) -> Mesh:
    """Marching cubes (PyMCubes) on volume [N,N,N] ``[ix, iy, iz]`` -> Mesh in world units, no colours.

    PyMCubes counts a voxel as inside when ``value > level`` and orients faces so that normals point away from the
    high-value region (checked in the tests: a sphere of high density comes out with positive volume).  The index ->
    world map is a positive scale plus a shift per axis, so it keeps that orientation.
    """
    import mcubes

    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume must be a cube [N,N,N], got shape {volume.shape}")
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(volume, dtype=np.float32), float(level))
    if len(faces) == 0:
        raise ValueError(
            f"no surface at level {level}: density range seen [{float(volume.min()):.3g}, {float(volume.max()):.3g}]"
        )
    return Mesh(
        vertices=index_to_world(verts, volume.shape[0], box_size).astype(np.float32),
        faces=np.asarray(faces, dtype=np.int64),
    )


def _vertex_adjacency(n_vertices: int, faces: np.ndarray):  # -> scipy.sparse.csr_matrix [V, V]
    from scipy.sparse import coo_matrix

    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adj = coo_matrix((np.ones(len(i), dtype=np.float64), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    adj = adj + adj.T
    adj.data[:] = 1.0  # an edge shared by two faces counts once
    return adj


def keep_largest_component(mesh: Mesh) -> Mesh:
    """Keep the connected component (via shared vertices) with the most faces; vertices are re-indexed in order."""
    from scipy.sparse.csgraph import connected_components

    n_comp, labels = connected_components(_vertex_adjacency(len(mesh.vertices), mesh.faces), directed=False)
    if n_comp <= 1:
        return mesh
    face_labels = labels[mesh.faces[:, 0]]
    best = int(np.argmax(np.bincount(face_labels, minlength=n_comp)))
    keep_v = labels == best
    remap = np.cumsum(keep_v) - 1
    return Mesh(
        vertices=mesh.vertices[keep_v],
        faces=remap[mesh.faces[face_labels == best]].astype(np.int64),
        colors=None if mesh.colors is None else mesh.colors[keep_v],
    )


def smooth_mesh(mesh: Mesh, iterations: int, lamb: float = 0.5, mu: float = -0.53) -> Mesh:
    """Taubin smoothing (uniform Laplacian, shrink ``lamb`` then inflate ``mu`` per iteration).

    Taubin rather than plain Laplacian so the shape does not shrink.  Smoothing moves vertices off the exact iso
    surface, so meshes meant to line up with the original's should use ``iterations=0``.
    """
    if iterations <= 0:
        return mesh
    adj = _vertex_adjacency(len(mesh.vertices), mesh.faces)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    v = mesh.vertices.astype(np.float64)
    for _ in range(iterations):
        for factor in (lamb, mu):
            v = v + factor * (adj @ v / deg[:, None] - v)
    return Mesh(vertices=v.astype(np.float32), faces=mesh.faces, colors=mesh.colors)


def colorize(
    mesh: Mesh,
    color_fn: ColorFn,
    color_range: tuple[float, float] = (-1.0, 1.0),
    batch_points: int = 2**18,
    device: torch.device | str | None = None,
) -> Mesh:
    """Vertex colours from ``color_fn(points [M,3] world) -> [M,3]``.

    Values are mapped linearly from ``color_range`` (default [-1, 1], the generator's image range; pass (0, 1) for
    [0,1] colours) to 0..255, clipped and rounded to uint8.
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
    Raises ValueError (one line) when the density never crosses the level.
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
        pad_volume_borders(volume, pad, _pad_value(level))
    # All inside or all outside: no surface (with padding an all-inside density would only give the crop box).
    if not (lo <= level < hi):
        raise ValueError(f"no surface at level {level}: density range seen [{lo:.3g}, {hi:.3g}]")
    mesh = volume_to_mesh(volume, box_size, level)
    del volume
    if largest_component:
        mesh = keep_largest_component(mesh)
    mesh = smooth_mesh(mesh, smooth_iterations)
    if color_fn is not None:
        mesh = colorize(mesh, color_fn, color_range, batch_points, device)
    return mesh


# ----------------------------------------------------------------------------------------------------------------------
# The original's conventions


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


# ----------------------------------------------------------------------------------------------------------------------
# Export


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the target directory + os.replace, so readers never see a partial file."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def _extension(path: str | os.PathLike, allowed: tuple[str, ...], what: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        raise ValueError(f"unsupported {what} extension {ext or '(none)'!r} for {path}; use one of {', '.join(allowed)}")
    return ext


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> None:
    """Save as ``.ply`` (binary), ``.obj`` or ``.glb`` chosen by extension, with vertex colours when present.

    Vertex order and faces are kept as is (no merging).  Atomic.  Unknown extension or unwritable path -> ValueError.
    """
    import trimesh

    ext = _extension(path, MESH_EXTENSIONS, "mesh")
    tm = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        vertex_colors=mesh.colors,
        process=False,
    )
    data = tm.export(file_type=ext[1:])
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _atomic_write(path, lambda fh: fh.write(payload))


def _mrc_header(volume: np.ndarray, voxel_size: float) -> bytes:
    """1024-byte MRC2014 header for a float32 (mode 2) volume whose C-order array is [section, row, column].

    Same layout mrcfile produces for ``data[:] = volume``: NX (columns) = shape[2], NZ (sections) = shape[0].
    """
    nz, ny, nx = volume.shape
    v64 = volume.astype(np.float64, copy=False)
    h = bytearray(1024)
    struct.pack_into("<3i", h, 0, nx, ny, nz)  # NX, NY, NZ
    struct.pack_into("<i", h, 12, 2)  # MODE 2 = float32
    struct.pack_into("<3i", h, 16, 0, 0, 0)  # NXSTART, NYSTART, NZSTART
    struct.pack_into("<3i", h, 28, nx, ny, nz)  # MX, MY, MZ (sampling = size: one voxel per grid step)
    struct.pack_into("<3f", h, 40, nx * voxel_size, ny * voxel_size, nz * voxel_size)  # CELLA
    struct.pack_into("<3f", h, 52, 90.0, 90.0, 90.0)  # CELLB
    struct.pack_into("<3i", h, 64, 1, 2, 3)  # MAPC, MAPR, MAPS
    struct.pack_into("<3f", h, 76, float(v64.min()), float(v64.max()), float(v64.mean()))  # DMIN, DMAX, DMEAN
    struct.pack_into("<i", h, 88, 1)  # ISPG 1: a single volume (0 would mean an image stack)
    struct.pack_into("<i", h, 92, 0)  # NSYMBT
    struct.pack_into("<i", h, 108, 20140)  # NVERSION
    struct.pack_into("<3f", h, 196, 0.0, 0.0, 0.0)  # ORIGIN
    h[208:212] = b"MAP "
    h[212:216] = bytes([0x44, 0x44, 0x00, 0x00])  # MACHST: little-endian
    struct.pack_into("<f", h, 216, float(v64.std()))  # RMS
    struct.pack_into("<i", h, 220, 1)  # NLABL
    h[224:304] = b"eg3d_core density volume".ljust(80)
    return bytes(h)


def save_volume(volume: np.ndarray, path: str | os.PathLike, voxel_size: float = 1.0) -> None:
    """Save volume [N,N,N] as ``.npy`` or ``.mrc`` (MRC2014, mode 2 float32, little-endian).  Atomic.

    The array is written as given (pass :func:`to_original_volume_convention` output to reproduce the original's
    ``.mrc``).  In the MRC file the array's last axis is the fastest (NX) one, as with mrcfile.
    """
    ext = _extension(path, VOLUME_EXTENSIONS, "volume")
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D, got shape {volume.shape}")
    if ext == ".npy":
        _atomic_write(path, lambda fh: np.save(fh, volume))
        return
    data = np.ascontiguousarray(volume, dtype="<f4")
    header = _mrc_header(data, voxel_size)

    def write(fh: BinaryIO) -> None:
        fh.write(header)
        data.tofile(fh)

    _atomic_write(path, write)


# ----------------------------------------------------------------------------------------------------------------------
# Analytic densities (tests, benchmarks, demos)


def sphere_density(
    center: tuple[float, float, float] = (0.0, 0.0, 0.0), radius: float = 0.3, scale: float = 100.0
) -> DensityFn:
    """``scale*(radius - |p - center|) + 10``: positive-slope density whose level-10 surface is the sphere."""
    c = torch.tensor(center, dtype=torch.float32)

    def density(points: torch.Tensor) -> torch.Tensor:
        return scale * (radius - torch.linalg.vector_norm(points - c.to(points.device), dim=-1)) + ORIGINAL_LEVEL

    return density


def torus_density(major: float = 0.25, minor: float = 0.1, scale: float = 100.0) -> DensityFn:
    """Torus around the y axis: ``scale*(minor - sdf) + 10`` with sdf the distance to the core circle (non-convex)."""

    def density(points: torch.Tensor) -> torch.Tensor:
        ring = torch.sqrt(points[:, 0] ** 2 + points[:, 2] ** 2) - major
        return scale * (minor - torch.sqrt(ring**2 + points[:, 1] ** 2)) + ORIGINAL_LEVEL

    return density
