"""Two-pass volume renderer: stratified coarse samples, then importance samples from their weights."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .marcher import composite_weights, march

# points [N, M, 3] -> {"sigma": [N, M, 1], "rgb": [N, M, C]}
FieldFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def stratified_depths(n: int, rays: int, start: float, end: float, samples: int, jitter: bool,
                      device: torch.device) -> torch.Tensor:
    """Evenly spaced depths from start to end (both included) -> [N, R, S, 1]; ``jitter`` adds U[0, step)."""
    depths = torch.linspace(start, end, samples, device=device).reshape(1, 1, samples, 1).expand(n, rays, samples, 1)
    if jitter:
        depths = depths + torch.rand(n, rays, samples, 1, device=device) * ((end - start) / (samples - 1))
    return depths


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, samples: int, deterministic: bool) -> torch.Tensor:
    """Draw depths from the smoothed coarse weights by inverse-CDF sampling.

    depths [N, R, S, 1], weights [N, R, S-1, 1] -> [N, R, samples, 1] (sorted when deterministic).
    The weights are max-pooled then average-pooled (kernel 2) and floored by 0.01. Bins are the
    midpoints of the coarse depths; like the original, the pdf uses the interior weights only, so the
    last midpoint is never an upper bin edge. Deterministic mode uses u = linspace(0, 1).
    """
    n, r, s, _ = depths.shape
    z = depths.reshape(n * r, s)
    w = weights.reshape(n * r, 1, s - 1).float()
    w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1).reshape(n * r, s - 1) + 0.01
    bins = 0.5 * (z[:, :-1] + z[:, 1:])  # [NR, S-1]
    pdf_w = w[:, 1:-1] + 1e-5  # [NR, S-3]
    pdf = pdf_w / pdf_w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # [NR, S-2]
    if deterministic:
        u = torch.linspace(0, 1, samples, device=z.device).expand(n * r, samples).contiguous()
    else:
        u = torch.rand(n * r, samples, device=z.device)
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp_min(0)
    above = idx.clamp_max(s - 3)
    cdf0, cdf1 = cdf.gather(1, below), cdf.gather(1, above)
    bin0, bin1 = bins.gather(1, below), bins.gather(1, above)
    denom = cdf1 - cdf0
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return (bin0 + (u - cdf0) / denom * (bin1 - bin0)).reshape(n, r, samples, 1)


def _points(origins: torch.Tensor, dirs: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """origins/dirs [N, R, 3], depths [N, R, S, 1] -> points [N, R*S, 3]."""
    return (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(origins.shape[0], -1, 3)


def render_rays(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, ray_start: float, ray_end: float,
                depth_resolution: int, depth_resolution_importance: int, white_back: bool,
                deterministic: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render rays through a radiance field.

    origins, dirs [N, R, 3] -> features [N, R, C], depth [N, R, 1], weight sum [N, R, 1].
    Random draws happen in the original's order: coarse jitter, then importance u.
    """
    n, r, _ = origins.shape
    depths = stratified_depths(n, r, ray_start, ray_end, depth_resolution, not deterministic, origins.device)
    out = field(_points(origins, dirs, depths))
    colors = out["rgb"].reshape(n, r, depth_resolution, -1)
    densities = out["sigma"].reshape(n, r, depth_resolution, 1)
    if depth_resolution_importance > 0:
        weights = composite_weights(densities, depths)
        fine = importance_depths(depths, weights, depth_resolution_importance, deterministic)
        out = field(_points(origins, dirs, fine))
        depths, order = torch.sort(torch.cat([depths, fine], dim=-2), dim=-2)
        colors = torch.cat([colors, out["rgb"].reshape(n, r, depth_resolution_importance, -1)], dim=-2)
        densities = torch.cat([densities, out["sigma"].reshape(n, r, depth_resolution_importance, 1)], dim=-2)
        colors = colors.gather(-2, order.expand(-1, -1, -1, colors.shape[-1]))
        densities = densities.gather(-2, order)
    rgb, depth, weights = march(colors, densities, depths, white_back)
    return rgb, depth, weights.sum(dim=2)
