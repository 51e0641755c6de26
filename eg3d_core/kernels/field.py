"""The radiance field as one compiled loop (``field_kernel.c``), used for float32 CPU inference where it can be built.

Tri-plane lookup + decoder in PyTorch is a dozen operations, each streaming a [points, channels] tensor through
memory; the fused loop keeps a point's features in registers and prefetches the next point's texels, several times
faster (benchmarks/RESULTS.md). Built and loaded by ``eg3d_core.kernels.build`` (one library per tri-plane channel count);
calls release the GIL, so the renderer's chunk workers run it in parallel. Where it does not apply (no compiler,
not x86-64 AVX2, ``EG3D_NATIVE=0``, autograd, autocast, other devices or decoder sizes) the PyTorch path runs:
same results to float32 rounding (tested).
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import nn

from ..rendering.triplane import PLANE_AXES, plane_table
from ..runtime import may_spread_work
from . import build as native
from .build import float_ptr as _ptr

SOURCE = Path(__file__).with_name("field_kernel.c")
# The decoder sizes of the kernel (every EG3D model's); tri-plane channels are a compile-time choice, multiple of 8.
HIDDEN, OUT = 64, 32
MAX_CHANNELS = 128
# Queries of at least twice this many points from the main thread run on several threads.
SPLIT_POINTS = 16384


@functools.cache
def library(channels: int = 32) -> ctypes.CDLL | None:
    """The kernel for ``channels`` tri-plane channels, or None where it cannot be used."""
    if channels % 8 or not 0 < channels <= MAX_CHANNELS:
        return None
    lib = native.load(SOURCE, (("CH", channels),))
    if lib is not None:
        i64, f32, fp = ctypes.c_int64, ctypes.c_float, ctypes.POINTER(ctypes.c_float)
        lib.eg3d_field.argtypes = [i64, i64, i64, i64, fp, fp, i64, i64, f32, ctypes.POINTER(ctypes.c_int32),
                                   fp, fp, fp, fp, fp, fp]
        lib.eg3d_field.restype = None
        lib.eg3d_march.argtypes = [i64, i64, i64, i64, fp, fp, fp, fp, fp, fp, fp, fp, fp]
        lib.eg3d_march.restype = None
        lib.eg3d_importance.argtypes = [i64, i64, i64, fp, fp, fp, i64, fp]
        lib.eg3d_importance.restype = None
    return lib


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None = None) -> dict[str, torch.Tensor] | None:
    """The decoder's outputs at world points, through the compiled loop; None where it does not apply.

    coords [N, M, 3], planes [N, 3, C, H, W] (``table``: ``plane_table(planes)`` if already built) ->
    {"sigma": [N, M, 1], "rgb": [N, M, 32]}, as ``decoder(sample_planes(planes, coords, box_warp, table))``.
    """
    fc0, _, fc1 = decoder.net
    n, p, ch, h, w = planes.shape
    if (coords.device.type != "cpu" or (torch.is_grad_enabled() and coords.requires_grad)
            or not native.float32_cpu_inference(planes, *decoder.parameters())
            or (fc0.weight.shape[0], fc1.weight.shape[0]) != (HIDDEN, 1 + OUT) or p != len(PLANE_AXES)):
        return None
    lib = library(ch)
    if lib is None:
        return None
    table = (plane_table(planes) if table is None else table).contiguous()
    points = coords.float().contiguous()
    m = points.shape[1]
    w0, b0 = fc0.params(torch.float32)
    w1, b1 = fc1.params(torch.float32)
    w0t, w1t = w0.t().contiguous(), w1.t().contiguous()
    b0, b1 = b0.contiguous(), b1.contiguous()
    axes = torch.tensor([a for a, _ in PLANE_AXES] + [b for _, b in PLANE_AXES], dtype=torch.int32)
    sigma = torch.empty(n, m, 1)
    rgb = torch.empty(n, m, OUT)
    axes_p = ctypes.cast(axes.data_ptr(), ctypes.POINTER(ctypes.c_int32))
    scale = float(torch.tensor(2 / box_warp, dtype=torch.float32))

    total = n * m
    # A large query (mesh grids) is split over the intra-op threads where the caller allows it; the renderer's chunk
    # workers call from their own threads, one chunk each, and already keep the cores busy.
    parts = torch.get_num_threads() if may_spread_work() else 1
    parts = max(1, min(parts, total // SPLIT_POINTS))

    def run(k: int) -> None:  # points of part k
        lib.eg3d_field(n, m, total * k // parts, total * (k + 1) // parts, _ptr(points), _ptr(table), h, w, scale,
                       axes_p, _ptr(w0t), _ptr(b0), _ptr(w1t), _ptr(b1), _ptr(sigma), _ptr(rgb))

    native.run_parts(run, parts)
    return {"sigma": sigma, "rgb": rgb}


def march(depths: torch.Tensor, densities: torch.Tensor, colors: torch.Tensor, fine_depths: torch.Tensor,
          fine_densities: torch.Tensor, fine_colors: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The renderer's compositing of coarse + fine samples in one compiled loop (``eg3d_march`` in field_kernel.c);
    None where it does not apply (not float32 CPU inference, colour channels not a multiple of 8, or no kernel).

    depths, densities [N, R, S, 1], colors [N, R, S, C] and the fine samples' [N, R, F, 1], [N, R, F, C] (unsorted
    along a ray is fine) -> features [N, R, C], weighted depth sum [N, R, 1], weight sum [N, R, 1]: what
    ``renderer._render_chunk`` computes by sorting, to float32 rounding.
    """
    tensors = (depths, densities, colors, fine_depths, fine_densities, fine_colors)
    lib = library() if colors.shape[-1] % 8 == 0 and native.float32_cpu_inference(*tensors) else None
    if lib is None:
        return None
    n, r, s, _ = depths.shape
    f, c = fine_depths.shape[2], colors.shape[-1]
    dc, sc, cc, df, sf, cf = (t.contiguous() for t in tensors)
    rgb, depth_sum, total = torch.empty(n, r, c), torch.empty(n, r, 1), torch.empty(n, r, 1)
    lib.eg3d_march(n * r, s, f, c, *(_ptr(t) for t in (dc, sc, cc, df, sf, cf, rgb, depth_sum, total)))
    return rgb, depth_sum, total


def importance(depths: torch.Tensor, densities: torch.Tensor, samples: int, deterministic: bool,
               u: torch.Tensor | None = None) -> torch.Tensor | None:
    """The importance sampler's depths in one compiled loop (``eg3d_importance`` in field_kernel.c); None where it
    does not apply (not float32 CPU inference, fewer than 4 coarse samples, random draws to be made, or no kernel).

    depths, densities [N, R, S, 1] (coarse, sorted along each ray) -> [N, R, samples, 1]: what
    ``renderer.importance_depths(depths, marcher.composite_weights(densities, depths), samples, deterministic, u)``
    computes, to float32 rounding. ``u`` [N*R, samples]: the draws when not deterministic (required then).
    """
    n, r, s, _ = depths.shape
    if s < 4 or (not deterministic and u is None) or not native.float32_cpu_inference(depths, densities):
        return None
    lib = library()
    if lib is None:
        return None
    if deterministic:
        u, stride = torch.linspace(0, 1, samples), 0  # PyTorch's values, shared by all rays
    else:
        u, stride = u.float().contiguous(), samples
    dc, sc = depths.float().contiguous(), densities.float().contiguous()
    out = torch.empty(n, r, samples, 1)
    lib.eg3d_importance(n * r, s, samples, _ptr(dc), _ptr(sc), _ptr(u), stride, _ptr(out))
    return out
