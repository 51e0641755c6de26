"""Alpha compositing along rays (the original's MipRayMarcher2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def march(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor,
          white_back: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite sorted samples over the midpoints of consecutive samples.

    colors [N, R, S, C], densities [N, R, S, 1] (raw), depths [N, R, S, 1] ->
    features [N, R, C] in about [-1, 1], depth [N, R, 1], weights [N, R, S-1, 1].
    Density is softplus(mean of the two raw values - 1); depth is the weight-normalised expected
    distance, clamped to the range of all sample depths in the batch.
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-densities_mid * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2), dim=-2)
    weights = alpha * transmittance[:, :, :-1]
    rgb = torch.sum(weights * colors_mid, dim=-2)
    total = weights.sum(dim=2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, dim=-2) / total, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        rgb = rgb + 1 - total
    return rgb * 2 - 1, depth, weights
