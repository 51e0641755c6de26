"""Marching cubes on a density volume and the mesh clean-up (largest component, Taubin smoothing) through trimesh."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NoSurfaceError
from .grid import ORIGINAL_LEVEL, index_to_world


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


def require_surface(lo: float, hi: float, level: float) -> None:
    """Raise NoSurfaceError (naming the density range [lo, hi] seen) unless the density crosses ``level``.

    All inside or all outside gives no surface (with padded borders an all-inside density would only give the
    crop box).
    """
    if not (lo <= level < hi):
        raise _no_surface(level, lo, hi)


def _no_surface(level: float, lo: float, hi: float) -> NoSurfaceError:
    return NoSurfaceError(f"no surface at level {level}: density range seen [{lo:.3g}, {hi:.3g}]")


def volume_to_mesh(volume: np.ndarray, box_size: float = 1.0, level: float = ORIGINAL_LEVEL) -> Mesh:
    """Marching cubes (PyMCubes) on volume [N,N,N] ``[ix, iy, iz]`` -> Mesh in world units, no colours.

    PyMCubes counts a voxel as inside when ``value > level`` and orients faces so that normals point away from the
    high-value region (checked in the tests: a sphere of high density comes out with positive volume).  The index ->
    world map is a positive scale plus a shift per axis, so it keeps that orientation.
    Raises NoSurfaceError when no cell crosses the level.
    """
    import mcubes

    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"volume must be a cube [N,N,N], got shape {volume.shape}")
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(volume, dtype=np.float32), float(level))
    if len(faces) == 0:
        raise _no_surface(level, float(volume.min()), float(volume.max()))
    return Mesh(
        vertices=index_to_world(verts, volume.shape[0], box_size).astype(np.float32),
        faces=np.asarray(faces, dtype=np.int64),
    )


def _as_trimesh(mesh: Mesh):  # -> trimesh.Trimesh
    import trimesh

    # process=False: merging would weld the coinciding vertices marching cubes emits and reorder the mesh.
    return trimesh.Trimesh(vertices=np.asarray(mesh.vertices, dtype=np.float64), faces=mesh.faces, process=False)


def keep_largest_component(mesh: Mesh) -> Mesh:
    """Keep the connected component (via shared vertices) with the most faces; vertices are re-indexed in order.

    Components come from ``trimesh.graph.connected_component_labels`` on the face edges.
    """
    import trimesh

    labels = trimesh.graph.connected_component_labels(trimesh.geometry.faces_to_edges(mesh.faces), len(mesh.vertices))
    n_comp = int(labels.max()) + 1 if len(labels) else 0
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
    """Taubin smoothing: per iteration a shrink step ``lamb`` then an inflate step ``mu`` (< 0) of the uniform
    Laplacian, so the shape does not shrink (Taubin 1995).  Done by ``trimesh.smoothing.filter_taubin``.

    Smoothing moves vertices off the exact iso surface, so meshes meant to line up with the original's should use
    ``iterations=0``.  Faces and colours are kept.
    """
    import trimesh

    if iterations <= 0:
        return mesh
    # trimesh counts the shrink and the inflate step as one iteration each, and takes the inflate factor as nu = -mu.
    tm = trimesh.smoothing.filter_taubin(_as_trimesh(mesh), lamb=lamb, nu=-mu, iterations=2 * iterations)
    return Mesh(vertices=np.asarray(tm.vertices, dtype=np.float32), faces=mesh.faces, colors=mesh.colors)
