"""The radiance field as one compiled loop (``field_kernel.c``): tri-plane lookup + decoder, and the renderer's
compositing and importance sampling of a chunk of rays.

Tri-plane lookup + decoder in PyTorch is a dozen operations, each streaming a [points, channels] tensor through
memory; the fused loop keeps a point's features in registers and prefetches the next point's texels. One library is
built per tri-plane channel count; calls release the GIL, so the renderer's chunk workers run it in parallel. The
functions here require what they are given to fit the kernel (they raise otherwise); ``kernels.cpu`` decides where
they apply and otherwise leaves the work to the reference PyTorch code.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from ..rendering.triplane import PLANE_AXES, plane_table
from ..runtime import may_spread_work
from . import build
from .build import F32, FLOATS, I64, INTS, STATUS, Function, Library

SOURCE = Path(__file__).with_name("field_kernel.c")
# The decoder sizes of the kernel (every EG3D model's); tri-plane channels are a compile-time choice, multiple of 8.
HIDDEN, OUT = 64, 32
MAX_CHANNELS = 128
# Queries of at least twice this many points from the main thread run on several threads.
SPLIT_POINTS = 16384

FUNCTIONS = (
    Function("eg3d_field", (("n", I64), ("m", I64), ("begin", I64), ("end", I64), ("points", FLOATS),
                            ("table", FLOATS), ("height", I64), ("width", I64), ("scale", F32), ("axes", INTS),
                            ("w0t", FLOATS), ("b0", FLOATS), ("w1t", FLOATS), ("b1", FLOATS), ("sigma", FLOATS),
                            ("rgb", FLOATS))),
    Function("eg3d_march", (("rays", I64), ("s", I64), ("f", I64), ("c", I64), ("dc", FLOATS), ("sc", FLOATS),
                            ("cc", FLOATS), ("df", FLOATS), ("sf", FLOATS), ("cf", FLOATS), ("rgb", FLOATS),
                            ("depth_sum", FLOATS), ("total", FLOATS)), STATUS),
    Function("eg3d_importance", (("rays", I64), ("s", I64), ("f", I64), ("dc", FLOATS), ("sc", FLOATS),
                                 ("u", FLOATS), ("u_stride", I64), ("df", FLOATS)), STATUS),
)


def fits(channels: int) -> bool:
    """Whether a kernel can be built for ``channels`` tri-plane channels: a multiple of 8, at most MAX_CHANNELS."""
    return channels % 8 == 0 and 0 < channels <= MAX_CHANNELS


@functools.cache
def library(channels: int = 32) -> Library | None:
    """The kernel for ``channels`` tri-plane channels, or None where it cannot be built or used."""
    return build.library(SOURCE, FUNCTIONS, (("CH", channels),)) if fits(channels) else None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _kernel(channels: int) -> Library:
    lib = library(channels)
    if lib is None:
        raise RuntimeError(f"the compiled field kernel for {channels} channels is unavailable here")
    return lib


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The decoder's outputs at world points, as ``decoder(sample_planes(planes, coords, box_warp, table))``.

    coords [N, M, 3], planes [N, 3, C, H, W] float32 (C: see ``fits``; ``table``: ``plane_table(planes)`` if already
    built), a decoder of HIDDEN hidden and 1 + OUT outputs -> {"sigma": [N, M, 1], "rgb": [N, M, OUT]}. A large query
    from a thread that may spread its work is split over the intra-op threads.
    """
    fc0, _, fc1 = decoder.net
    _require(planes.ndim == 5 and planes.shape[1] == len(PLANE_AXES) and fits(planes.shape[2]),
             f"planes must be [N, 3, C, H, W] with C a multiple of 8 up to {MAX_CHANNELS}, got {list(planes.shape)}")
    n, _, ch, h, w = planes.shape
    _require(coords.ndim == 3 and coords.shape[0] == n and coords.shape[2] == 3,
             f"coords must be [{n}, M, 3], got {list(coords.shape)}")
    _require((fc0.weight.shape[1], fc0.weight.shape[0], fc1.weight.shape[0]) == (ch, HIDDEN, 1 + OUT),
             f"the kernel's decoder is {ch} -> {HIDDEN} -> {1 + OUT}, got {fc0.weight.shape[1]} -> "
             f"{fc0.weight.shape[0]} -> {fc1.weight.shape[0]}")
    table = (plane_table(planes) if table is None else table).contiguous()
    _require(tuple(table.shape) == (n, len(PLANE_AXES), h + 2, w + 2, ch),
             f"table must be plane_table(planes), [{n}, 3, {h + 2}, {w + 2}, {ch}], got {list(table.shape)}")
    lib = _kernel(ch)
    points = coords.float().contiguous()
    m = points.shape[1]
    w0, b0 = fc0.params(torch.float32)
    w1, b1 = fc1.params(torch.float32)
    w0t, w1t = w0.t().contiguous(), w1.t().contiguous()
    b0, b1 = b0.contiguous(), b1.contiguous()
    axes = torch.tensor([a for a, _ in PLANE_AXES] + [b for _, b in PLANE_AXES], dtype=torch.int32)
    sigma = torch.empty(n, m, 1)
    rgb = torch.empty(n, m, OUT)
    scale = float(torch.tensor(2 / box_warp, dtype=torch.float32))

    total = n * m
    # A large query (mesh grids) is split over the intra-op threads where the caller allows it; the renderer's chunk
    # workers call from their own threads, one chunk each, and already keep the cores busy.
    parts = torch.get_num_threads() if may_spread_work() else 1
    parts = max(1, min(parts, total // SPLIT_POINTS))

    def run(k: int) -> None:  # points of part k
        lib.eg3d_field(n, m, total * k // parts, total * (k + 1) // parts, points, table, h, w, scale, axes, w0t, b0,
                       w1t, b1, sigma, rgb)

    build.run_parts(run, parts)
    return {"sigma": sigma, "rgb": rgb}


def march(depths: torch.Tensor, densities: torch.Tensor, colors: torch.Tensor, fine_depths: torch.Tensor,
          fine_densities: torch.Tensor, fine_colors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The renderer's compositing of coarse + fine samples in one compiled loop (``eg3d_march``).

    depths, densities [N, R, S, 1], colors [N, R, S, C] (C a multiple of 8) and the fine samples' [N, R, F, 1],
    [N, R, F, 1], [N, R, F, C] (unsorted along a ray is fine), float32 -> features [N, R, C], weighted depth sum
    [N, R, 1], weight sum [N, R, 1]: what ``renderer._render_chunk`` computes by sorting, to float32 rounding.
    """
    n, r, s, _ = depths.shape
    f, c = fine_depths.shape[2], colors.shape[-1]
    _require(c % 8 == 0, f"colour channels must be a multiple of 8, got {c}")
    for name, t, want in (("depths", depths, (n, r, s, 1)), ("densities", densities, (n, r, s, 1)),
                          ("colors", colors, (n, r, s, c)), ("fine_depths", fine_depths, (n, r, f, 1)),
                          ("fine_densities", fine_densities, (n, r, f, 1)), ("fine_colors", fine_colors, (n, r, f, c))):
        _require(tuple(t.shape) == want, f"{name} must be {list(want)}, got {list(t.shape)}")
    dc, sc, cc, df, sf, cf = (t.contiguous() for t in (depths, densities, colors, fine_depths, fine_densities,
                                                       fine_colors))
    rgb, depth_sum, total = torch.empty(n, r, c), torch.empty(n, r, 1), torch.empty(n, r, 1)
    _kernel(32).eg3d_march(n * r, s, f, c, dc, sc, cc, df, sf, cf, rgb, depth_sum, total)
    return rgb, depth_sum, total


def importance(depths: torch.Tensor, densities: torch.Tensor, samples: int, deterministic: bool,
               u: torch.Tensor | None = None) -> torch.Tensor:
    """The importance sampler's depths in one compiled loop (``eg3d_importance``).

    depths, densities [N, R, S, 1] (coarse, sorted along each ray, S >= 4) -> [N, R, samples, 1]: what
    ``renderer.importance_depths(depths, marcher.composite_weights(densities, depths), samples, deterministic, u)``
    computes, to float32 rounding. ``u`` [N*R, samples]: the draws when not deterministic (required then).
    """
    n, r, s, _ = depths.shape
    _require(s >= 4, f"the importance sampler needs at least 4 coarse samples, got {s}")
    _require(tuple(densities.shape) == (n, r, s, 1), f"densities must be {[n, r, s, 1]}, got {list(densities.shape)}")
    if deterministic:
        u, stride = torch.linspace(0, 1, samples), 0  # PyTorch's values, shared by all rays
    else:
        _require(u is not None and tuple(u.shape) == (n * r, samples),
                 f"u must be [{n * r}, {samples}] when not deterministic, got {None if u is None else list(u.shape)}")
        u, stride = u.float().contiguous(), samples
    dc, sc = depths.float().contiguous(), densities.float().contiguous()
    out = torch.empty(n, r, samples, 1)
    _kernel(32).eg3d_importance(n * r, s, samples, dc, sc, u, stride, out)
    return out
