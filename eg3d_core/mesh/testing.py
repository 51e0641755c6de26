"""Analytic densities with known surfaces, for the tests and the mesh benchmark (not used by the library itself)."""
from __future__ import annotations

import torch

from .grid import ORIGINAL_LEVEL, DensityFn


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
