"""The tail of an upsampling synthesis layer as one compiled pass (``fir_kernel.c``): the [1, 3, 3, 1] low-pass filter
after the stride-2 transposed convolution, then bias, noise, leaky ReLU and clamp.

In PyTorch these are a depthwise convolution and three in-place passes over the layer's largest activation (up to
512 x 512 x 128 floats in the super-resolution module); fused, the activation is read and written once. Used for
float32 CPU inference on single channels-last images (``use_fused_tail``); everything else takes the PyTorch
operations, equal to it up to float32 rounding (tested).
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from . import build as native
from .build import float32_cpu_inference, float_ptr, run_parts

SOURCE = Path(__file__).with_name("fir_kernel.c")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled pass, or None where compiled kernels cannot be used."""
    lib = native.load(SOURCE)
    if lib is not None:
        i64, fp, f32 = ctypes.c_int64, ctypes.POINTER(ctypes.c_float), ctypes.c_float
        lib.fir_up_post.argtypes = [i64, i64, i64, fp, fp, fp, f32, f32, i64, i64, fp]
        lib.fir_up_post.restype = None
    return lib


def use_fused_tail(x: torch.Tensor) -> bool:
    """Whether ``upsample_tail`` serves x: one float32 CPU image, channels-last, channels a multiple of 8, no autograd or
    autocast, the kernel available."""
    return (x.ndim == 4 and x.shape[0] == 1 and x.shape[1] % 8 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and float32_cpu_inference(x) and library() is not None)


def upsample_tail(x: torch.Tensor, bias: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                  slope: float = 1.0, limit: float | None = None) -> torch.Tensor:
    """x [1, C, XH, XW] (channels-last; a stride-2 transposed convolution's output, XH = 2H + 1) -> [1, C, XH - 1,
    XW - 1] channels-last: ``F.conv2d(x, fir_kernel(C, 4), bias, padding=1, groups=C)``, then ``+ noise`` (noise
    [XH - 1, XW - 1], broadcast over channels), a leaky ReLU of this ``slope`` (1: none) and a clamp to
    [-limit, limit] (None: none). Output rows are split over the intra-op threads. Requires ``library()``."""
    lib = library()
    _, c, xh, xw = x.shape
    src = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty(1, c, xh - 1, xw - 1, memory_format=torch.channels_last)
    b = None if bias is None else bias.float().contiguous()
    nz = None if noise is None else noise.float().reshape(xh - 1, xw - 1).contiguous()
    args = (xh, xw, c, float_ptr(src), None if b is None else float_ptr(b), None if nz is None else float_ptr(nz),
            slope, 0.0 if limit is None else float(limit))
    parts = max(1, min(torch.get_num_threads(), (xh - 1) // 8))

    def run(k: int) -> None:
        lib.fir_up_post(*args, (xh - 1) * k // parts, (xh - 1) * (k + 1) // parts, float_ptr(out))

    run_parts(run, parts)
    return out
