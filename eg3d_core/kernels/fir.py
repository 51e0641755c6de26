"""The tail of an upsampling synthesis layer as one compiled pass (``fir_kernel.c``): the [1, 3, 3, 1] low-pass filter
after the stride-2 transposed convolution, then bias, noise, leaky ReLU and clamp.

In PyTorch these are a depthwise convolution and three in-place passes over the layer's largest activation (up to
512 x 512 x 128 floats in the super-resolution module); fused, the activation is read and written once. Used by the
CPU backend for float32 inference on single channels-last images (``use_fused_tail``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from . import build
from .build import F32, I64, IMAGE, OPTIONAL_FLOATS, STATUS, Function, Library, float32_cpu_inference, run_parts

SOURCE = Path(__file__).with_name("fir_kernel.c")

FUNCTIONS = (
    Function("fir_up_post", (("xh", I64), ("xw", I64), ("c", I64), ("x", IMAGE), ("bias", OPTIONAL_FLOATS),
                             ("noise", OPTIONAL_FLOATS), ("slope", F32), ("limit", F32), ("r0", I64), ("r1", I64),
                             ("y", IMAGE)), STATUS),
)


@functools.cache
def library() -> Library | None:
    """The compiled pass, or None where compiled kernels cannot be used."""
    return build.library(SOURCE, FUNCTIONS)


def use_fused_tail(x: torch.Tensor) -> bool:
    """Whether ``upsample_tail`` serves x: one float32 CPU image, channels-last, channels a multiple of 8, no autograd or
    autocast, the kernel available."""
    return (x.ndim == 4 and x.shape[0] == 1 and x.shape[1] % 8 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and float32_cpu_inference(x) and library() is not None)


def upsample_tail(x: torch.Tensor, bias: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                  slope: float = 1.0, limit: float | None = None) -> torch.Tensor:
    """x [1, C, XH, XW] (channels-last, float32, C a multiple of 8; a stride-2 transposed convolution's output,
    XH = 2H + 1) -> [1, C, XH - 1, XW - 1] channels-last: ``F.conv2d(x, fir_kernel(C, 4), bias, padding=1, groups=C)``,
    then ``+ noise`` (noise [XH - 1, XW - 1], broadcast over channels), a leaky ReLU of this ``slope`` (1: none) and a
    clamp to [-limit, limit] (None: none). Output rows are split over the intra-op threads. Requires ``library()``."""
    lib = library()
    if lib is None:
        raise RuntimeError("the compiled upsampling tail is unavailable here")
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] % 8:
        raise ValueError(f"x must be one image [1, C, H, W] with C a multiple of 8, got {list(x.shape)}")
    _, c, xh, xw = x.shape
    if bias is not None and bias.numel() != c:
        raise ValueError(f"bias must have {c} values, got {bias.numel()}")
    if noise is not None and noise.numel() != (xh - 1) * (xw - 1):
        raise ValueError(f"noise must be [{xh - 1}, {xw - 1}], got {list(noise.shape)}")
    src = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty(1, c, xh - 1, xw - 1, memory_format=torch.channels_last)
    b = None if bias is None else bias.float().contiguous()
    nz = None if noise is None else noise.float().reshape(xh - 1, xw - 1).contiguous()
    parts = max(1, min(torch.get_num_threads(), (xh - 1) // 8))

    def run(k: int) -> None:
        lib.fir_up_post(xh, xw, c, src, b, nz, slope, 0.0 if limit is None else float(limit),
                        (xh - 1) * k // parts, (xh - 1) * (k + 1) // parts, out)

    run_parts(run, parts)
    return out
