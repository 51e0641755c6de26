"""Tri-plane feature lookup."""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

# Which world axes each plane is indexed by, as (grid x = width, grid y = height).
# The released models use XY, XZ and ZX (not YZ): this must be kept to load their weights.
PLANE_AXES = ((0, 1), (0, 2), (2, 0))


def project(coords: torch.Tensor, box_warp: float) -> torch.Tensor:
    """World points [N, M, 3] -> per-plane grid coordinates [N, 3, M, 2] in [-1, 1] inside the box."""
    scaled = coords * (2 / box_warp)
    return torch.stack([scaled[..., list(axes)] for axes in PLANE_AXES], dim=1)


def plane_table(planes: torch.Tensor) -> torch.Tensor:
    """planes [N, 3, C, H, W] -> texel rows [N, 3, H+2, W+2, C]: channels-last, with a one-texel zero border.

    Built once per render and shared by its passes (it is a full copy of the planes)."""
    n, p, c, h, w = planes.shape
    table = planes.new_zeros(n, p, h + 2, w + 2, c)
    table[:, :, 1:-1, 1:-1].copy_(planes.permute(0, 1, 3, 4, 2))
    return table


class PlaneTables:
    """``plane_table(planes)``, kept for the last ``size`` plane tensors while they live and are not modified in place
    (their in-place version is unchanged): rendering the same planes again, as each camera move does, then skips the
    copy, a full pass over the planes (benchmarks/RESULTS.md). Kept by the tensor's identity, not its address, which
    a new tensor may reuse. Copies (``copy.deepcopy``) and pickles start empty."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: list[tuple[weakref.ref, int, torch.Tensor]] = []

    def __call__(self, planes: torch.Tensor) -> torch.Tensor:
        version = planes._version
        for ref, seen, table in self._entries:
            if ref() is planes and seen == version:
                return table
        table = plane_table(planes)
        others = [e for e in self._entries if e[0]() is not None and e[0]() is not planes]
        self._entries = [(weakref.ref(planes), version, table), *others[:self.size - 1]]  # one assignment: thread-safe
        return table

    def __deepcopy__(self, memo: dict) -> PlaneTables:
        return PlaneTables(self.size)

    def __getstate__(self) -> dict:
        return {"size": self.size, "_entries": []}


def plane_corners(coords: torch.Tensor, box_warp: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the bordered plane table and bilinear weights that ``sample_planes`` sums for each point.

    coords [N, M, 3] -> index [N*M, 12] (long, into ``plane_table(planes).reshape(-1, C)``), weight [N*M, 12]
    (3 planes x 4 corners: the texel, its right, lower and lower-right neighbours; each weight is divided by 3, so a
    point's weights sum to one). Computed coordinate-major ([K, N*M] rows, which CPU kernels stream through far
    faster than [N*M, K] rows with tiny K), then transposed.
    """
    n, m, _ = coords.shape
    p = len(PLANE_AXES)
    axes = [a for a, _ in PLANE_AXES] + [b for _, b in PLANE_AXES]
    # Grid x of the three planes, then grid y: [6, N*M].
    uv = coords.reshape(n * m, 3).t()[axes] * (2 / box_warp)
    size = width if height == width else torch.tensor([width] * p + [height] * p, device=coords.device).reshape(-1, 1)
    # align_corners=False: -1 and +1 are the outer edges of the border texels; +1 for the zero border.
    t = (((uv + 1) * size - 1) * 0.5 + 1).clamp_min(0).clamp_max(size + 1)
    # The far edge (size + 1) must take the zero texel's weight, so the corner is clamped before the fraction.
    t0 = t.floor().clamp_max(size)
    frac = t - t0
    t0 = t0.long()
    stride = width + 2
    plane_size = (height + 2) * stride
    base = (torch.arange(p, device=coords.device) * plane_size).reshape(p, 1) + \
        (torch.arange(n, device=coords.device) * (p * plane_size)).repeat_interleave(m)
    i00 = base + t0[p:] * stride + t0[:p]  # [3, N*M]
    offsets = torch.tensor([0, 1, stride, stride + 1], device=coords.device).reshape(1, 4, 1)
    g = 1 - frac
    wx = torch.stack([g[:p], frac[:p]], dim=1)  # [3, 2, N*M]
    wy = torch.stack([g[p:], frac[p:]], dim=1)
    # Point-major outputs for the gather through one 2-D transposing copy each (arithmetic that writes strided
    # outputs, or with tiny inner dimensions, is far slower).
    index = torch.empty(n * m, p * 4, dtype=torch.long, device=coords.device)
    weight = torch.empty(n * m, p * 4, dtype=frac.dtype, device=coords.device)
    index.t().copy_((i00[:, None] + offsets).reshape(p * 4, n * m))  # [3 planes x 4 corners, N*M]
    weight.t().copy_((wy[:, :, None] * wx[:, None]).reshape(p * 4, n * m))
    return index, weight.mul_(1 / p)


def sample_planes(planes: torch.Tensor, coords: torch.Tensor, box_warp: float,
                  table: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear features at world points, averaged over the three planes.

    planes [N, 3, C, H, W], coords [N, M, 3] -> features [N, M, C]; ``table`` is ``plane_table(planes)`` if
    already built. Same result as ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`` per
    plane followed by the mean (points outside the box read zeros), computed as one weighted gather of 12 texel
    rows per point (4 corners x 3 planes): far faster on CPU than grid_sample, which reads each channel from a
    different plane of memory. The zero border lets clamped coordinates reproduce zero padding without masks.
    """
    n, _, ch, h, w = planes.shape
    table = (plane_table(planes) if table is None else table).reshape(-1, ch)  # [N*3*(H+2)*(W+2), C]
    index, weight = plane_corners(coords.float(), box_warp, h, w)
    feats = F.embedding_bag(index, table, per_sample_weights=weight.to(table.dtype), mode="sum")
    return feats.reshape(n, coords.shape[1], ch)


def sample_planes_reference(planes: torch.Tensor, coords: torch.Tensor, box_warp: float,
                            table: torch.Tensor | None = None) -> torch.Tensor:
    """The plain path, as the original computes it (``grid_sample`` per plane, then the mean).

    Slow on CPU; kept as the reference that tests and benchmarks compare ``sample_planes`` with
    (``table`` is accepted for the same signature and not needed).
    """
    del table
    n, p, ch, h, w = planes.shape
    grid = project(coords.float(), box_warp).reshape(n * p, 1, -1, 2).to(planes.dtype)
    feats = F.grid_sample(planes.reshape(n * p, ch, h, w), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # [N*3, C, 1, M]
    return feats.reshape(n, p, ch, -1).mean(dim=1).transpose(1, 2)
