"""Tri-plane feature lookup."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Which world axes each plane is indexed by, as (grid x = width, grid y = height).
# The released models use XY, XZ and ZX (not YZ): this must be kept to load their weights.
PLANE_AXES = ((0, 1), (0, 2), (2, 0))


def project(coords: torch.Tensor, box_warp: float) -> torch.Tensor:
    """World points [N, M, 3] -> per-plane grid coordinates [N, 3, M, 2] in [-1, 1] inside the box."""
    scaled = coords * (2 / box_warp)
    return torch.stack([scaled[..., list(axes)] for axes in PLANE_AXES], dim=1)


def sample_planes(planes: torch.Tensor, coords: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Bilinear features at world points, averaged over the three planes.

    planes [N, 3, C, H, W], coords [N, M, 3] -> features [N, M, C]. Points outside the box read zeros
    (grid_sample with zero padding, align_corners=False).
    """
    n, p, ch, h, w = planes.shape
    grid = project(coords, box_warp).reshape(n * p, 1, -1, 2).to(planes.dtype)
    feats = F.grid_sample(planes.reshape(n * p, ch, h, w), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # [N*3, C, 1, M]
    return feats.reshape(n, p, ch, -1).mean(dim=1).transpose(1, 2)
