"""Alpha compositing along rays (the original's MipRayMarcher2)."""
from __future__ import annotations

import torch

from ..networks.layers import softplus


def composite_weights(densities: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Per-interval weights of sorted samples: densities [N, R, S, 1] (raw), depths [N, R, S, 1] -> [N, R, S-1, 1].

    Density on an interval is softplus(mean of its two raw values - 1); transmittance multiplies (1 - alpha + 1e-10).
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    densities_mid = softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
    alpha = 1 - torch.exp(-densities_mid * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2), dim=-2)
    return alpha * transmittance[:, :, :-1]


def march(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor,
          white_back: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite sorted samples over the midpoints of consecutive samples.

    colors [N, R, S, C], densities [N, R, S, 1] (raw), depths [N, R, S, 1] ->
    features [N, R, C] in about [-1, 1], depth [N, R, 1], weights [N, R, S-1, 1].
    Depth is the weight-normalised expected distance, clamped to the range of all sample depths in the batch.
    """
    weights = composite_weights(densities, depths)
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    rgb = torch.sum(weights * colors_mid, dim=-2)
    total = weights.sum(dim=2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, dim=-2) / total, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        rgb = rgb + 1 - total
    return rgb * 2 - 1, depth, weights
