"""3x3 convolutions of one image by Winograd F(2x2, 3x3): 2.25x fewer multiplications than the direct convolution.

The tile transforms are compiled loops (``winograd_kernel.c``, built by ``eg3d_core.native``); the 16 products
between them are batched matrix products (``torch.bmm``). The transforms only add, subtract and halve, so the
result equals the direct convolution to float32 rounding (tested against float64). Used for float32 CPU
inference on the wide layers where it is faster (``use_winograd``); everything else takes ``F.conv2d``. The
stride-2 transposed convolutions of the upsampling layers get the same treatment by output phase
(``conv_transpose3x3_up``, ``use_winograd_up``).
"""
from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import torch

from .. import native
from ..native import float32_cpu_inference, float_ptr, run_parts

SOURCE = Path(__file__).with_name("winograd_kernel.c")
# Tile rows per band: the transformed band ([16, tiles, channels]) should stay in the CPU caches.
BAND_BYTES = 16 << 20


@functools.cache
def library() -> ctypes.CDLL | None:
    """The transforms, or None where compiled kernels cannot be used."""
    lib = native.load(SOURCE)
    if lib is not None:
        i64, fp = ctypes.c_int64, ctypes.POINTER(ctypes.c_float)
        i32, f32 = ctypes.c_int, ctypes.c_float
        lib.wino_weights.argtypes = [i64, i64, fp, fp, f32, i32, i64, i64, fp]
        lib.wino_input.argtypes = [i64, i64, i64, fp, i64, i64, fp]
        lib.wino_output.argtypes = [i64, i64, i64, fp, fp, fp, f32, f32, i64, i64, fp]
        lib.wino_up_weights.argtypes = [i64, i64, fp, fp, f32, i32, i64, i64, fp]
        lib.wino_up_input.argtypes = [i64, i64, i64, fp, i64, i64, fp]
        lib.wino_up_output.argtypes = [i64, i64, i64, fp, i64, i64, fp]
        for f in (lib.wino_weights, lib.wino_input, lib.wino_output, lib.wino_up_weights, lib.wino_up_input,
                  lib.wino_up_output):
            f.restype = None
    return lib


def _single_image(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """What both Winograd paths need: one channels-last image, a 3x3 weight with channel counts that are multiples of
    8, float32 CPU inference, the kernels available."""
    return (x.shape[0] == 1 and tuple(weight.shape[2:]) == (3, 3) and weight.shape[0] % 8 == 0
            and weight.shape[1] % 8 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and float32_cpu_inference(x, weight) and library() is not None)


def use_winograd(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv3x3`` serves ``F.conv2d(x, weight, padding=1)``: one float32 CPU image, channels-last, at least
    128 channels in and out (multiples of 8) and 16 px, no autograd or autocast, kernels available. Measured on a
    2-core AVX2 CPU against oneDNN's direct convolution: 1.1-1.8x from 128 channels and 16 px up
    (benchmarks/RESULTS.md)."""
    return min(weight.shape[0], weight.shape[1]) >= 128 and min(x.shape[2], x.shape[3]) >= 16 and _single_image(x, weight)


def use_winograd_up(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv_transpose3x3_up`` serves the stride-2 transposed convolution of x by the convolution-shaped
    weight [O, I, 3, 3]: as ``use_winograd`` but from 32 channels in, 128 out (multiples of 8) and inputs of 32 to
    128 px. Measured on a 2-core AVX2 CPU against oneDNN (benchmarks/bench_winograd.py): up to 1.7x there (about even
    for 512 -> 256 channels at 64 px); even or slower at 256 px and at 16 px and below."""
    return (weight.shape[0] >= 128 and weight.shape[1] >= 32 and 32 <= min(x.shape[2], x.shape[3])
            and max(x.shape[2], x.shape[3]) <= 128 and _single_image(x, weight))


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, noise: torch.Tensor | None = None,
            slope: float = 1.0, limit: float | None = None, styles: torch.Tensor | None = None,
            demodulate: bool = False, gain: float = 1.0) -> torch.Tensor:
    """``F.conv2d(x, weight', bias, padding=1)`` for x [1, I, H, W] (channels-last), weight [O, I, 3, 3], bias [O]
    -> [1, O, H, W] channels-last, followed in the same pass by ``+ noise`` (noise [H, W], broadcast over channels),
    a leaky ReLU of this ``slope`` (1: none) and a clamp to [-limit, limit] (None: none), each rounded as the
    separate PyTorch operations would. weight' is ``weight`` modulated as in ``layers.modulated_conv2d``: times
    ``styles`` [I] (None: ones), demodulated per output channel if ``demodulate``, times ``gain``; the filter
    transform does this on the fly. Requires ``library()``."""
    lib = library()
    _, i, h, w = x.shape
    o = weight.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    src = x.contiguous(memory_format=torch.channels_last)
    ut = _filters(lib.wino_weights, 16, weight, styles, demodulate, gain)
    b = None if bias is None else bias.float().contiguous()
    out = torch.empty(1, o, h, w, memory_format=torch.channels_last)
    band = max(1, min(th, BAND_BYTES // (16 * tw * max(i, o) * 4)))
    bias_p = None if b is None else float_ptr(b)
    nz = None if noise is None else noise.float().reshape(h, w).contiguous()
    noise_p = None if nz is None else float_ptr(nz)
    post = (noise_p, slope, 0.0 if limit is None else float(limit))

    def band_job(t0: int, rows: int, v: torch.Tensor, m: torch.Tensor) -> None:
        lib.wino_input(h, w, i, float_ptr(src), t0, rows, float_ptr(v))
        torch.bmm(v, ut, out=m)
        lib.wino_output(h, w, o, float_ptr(m), bias_p, *post, t0, rows, float_ptr(out))

    _by_bands(th, tw, band, 16, i, o, band_job)
    return out


def conv_transpose3x3_up(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor | None = None,
                         demodulate: bool = False, gain: float = 1.0) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight'.transpose(0, 1), stride=2)`` for x [1, I, H, W] (channels-last) and the
    convolution-shaped weight [O, I, 3, 3] (weight' modulated as in ``conv3x3``) -> [1, O, 2H+1, 2W+1]
    channels-last, by its four output phases with Winograd F(2x2, 2x2) / F(2, 2): 25 products per 3x3 input patch
    instead of 36 (see winograd_kernel.c). Requires ``library()``."""
    lib = library()
    _, i, h, w = x.shape
    o = weight.shape[0]
    th, tw = (h + 2) // 2, (w + 2) // 2
    src = x.contiguous(memory_format=torch.channels_last)
    ut = _filters(lib.wino_up_weights, 25, weight, styles, demodulate, gain)
    out = torch.empty(1, o, 2 * h + 1, 2 * w + 1, memory_format=torch.channels_last)
    band = max(1, min(th, BAND_BYTES // (25 * tw * max(i, o) * 4)))

    def band_job(t0: int, rows: int, v: torch.Tensor, m: torch.Tensor) -> None:
        lib.wino_up_input(h, w, i, float_ptr(src), t0, rows, float_ptr(v))
        torch.bmm(v, ut, out=m)
        lib.wino_up_output(h, w, o, float_ptr(m), t0, rows, float_ptr(out))

    _by_bands(th, tw, band, 25, i, o, band_job)
    return out


def _filters(transform: Callable, slots: int, weight: torch.Tensor, styles: torch.Tensor | None, demodulate: bool,
             gain: float) -> torch.Tensor:
    """The modulated, transformed filters [slots, I, O] (a column-major view, which MKL's batched product prefers),
    output channels split over the intra-op threads."""
    o, i = weight.shape[:2]
    wgt = weight.float().contiguous()
    sty = None if styles is None else styles.float().reshape(i).contiguous()
    u = torch.empty(slots, o, i)
    parts = max(1, min(torch.get_num_threads(), o // 64))

    def run(k: int) -> None:
        transform(o, i, float_ptr(wgt), None if sty is None else float_ptr(sty), gain, int(demodulate),
                  o * k // parts, o * (k + 1) // parts, float_ptr(u))

    run_parts(run, parts)
    return u.transpose(1, 2)


def _by_bands(th: int, tw: int, band: int, slots: int, i: int, o: int,
              job: Callable[[int, int, torch.Tensor, torch.Tensor], None]) -> None:
    """Run ``job(first tile row, rows, v [slots, rows * tw, i], m [slots, rows * tw, o])`` for every band of ``band``
    tile rows. Bands k, k + T, ... go to thread k of T (the intra-op thread count): each thread transforms, multiplies
    (single-threaded) and writes back its own bands, so a band stays in its core's caches and no thread waits for
    another."""
    starts = list(range(0, th, band))
    parts = max(1, min(torch.get_num_threads(), len(starts)))
    threads = torch.get_num_threads()

    def work(k: int) -> None:
        if parts > 1:
            torch.set_num_threads(1)
        try:
            v_flat = torch.empty(slots * band * tw * i)
            m_flat = torch.empty(slots * band * tw * o)
            for t0 in starts[k::parts]:
                rows = min(band, th - t0)
                job(t0, rows, v_flat[:slots * rows * tw * i].view(slots, rows * tw, i),
                    m_flat[:slots * rows * tw * o].view(slots, rows * tw, o))
        finally:
            if parts > 1:
                torch.set_num_threads(threads)

    run_parts(work, parts)
