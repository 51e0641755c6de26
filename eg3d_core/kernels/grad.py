"""The gradient backend: the reference maths arranged for backward passes to the latent (inversion's steps).

On a single image the reference modulated convolution folds the styles into the weight (the original's fused
modulation). When the styles need a gradient and the weight does not (gradient steps on w with a frozen generator),
autograd then computes a weight gradient of every convolution, a second full-size convolution per layer, only to
reduce it to the styles. Here the styles scale the input channels and demodulation scales the output channels around
the unmodulated weight instead (what the reference does for batches): the backward pass convolves only the input
gradient, and the styles' gradient is a sum over pixels. The same maths up to float32 rounding
(tests/test_inversion.py compares losses and gradients with the reference).

Everything else, 1x1 and large-image modulated convolutions (see ``MAX_PIXELS``), and those whose weight needs a
gradient (pivotal tuning) or whose styles do not, returns None: the reference code runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Where the weight gradient is cheap next to the passes over the activations this adds (1x1 convolutions such as
# ToRGB; inputs above 256 x 256 px with few channels, e.g. the FFHQ super-resolution's last 128-channel layer at
# 512 px), the reference's fused modulation stays faster (benchmarks/RESULTS.md, inversion).
MAX_PIXELS = 256 * 256


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, up: bool,
                     noise: torch.Tensor | None, bias: torch.Tensor | None, gain: float, activate: bool,
                     limit: float | None, cache: dict | None) -> torch.Tensor | None:
    """``networks.layers.modulated_conv2d`` with the modulation on the activations, where styles alone need a
    gradient; else None."""
    del cache
    if not (torch.is_grad_enabled() and styles.requires_grad) or weight.requires_grad:
        return None
    if weight.shape[2] == 1 or x.shape[2] * x.shape[3] > MAX_PIXELS:
        return None
    from ..networks.layers import _convolve, clamp

    n, i = x.shape[:2]
    o = weight.shape[0]
    w = weight.to(x.dtype)
    x = _convolve(x * styles.to(x.dtype).reshape(n, i, 1, 1), w, up)
    scale = styles.new_full((n, o), gain)
    if demodulate:
        # sum over (i, kh, kw) of (weight * style_i)^2 = styles^2 @ (sum over kh, kw of weight^2)^T
        scale = scale * (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
    x = x * scale.to(x.dtype).reshape(n, o, 1, 1)
    if noise is not None:
        x = x + (noise * gain).to(x.dtype)
    if bias is not None:
        x = x + (bias * gain).to(x.dtype).reshape(1, -1, 1, 1)
    if activate:
        x = clamp(F.leaky_relu(x, 0.2), limit)
    return x


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigmoid: bool) -> torch.Tensor | None:
    return None


def softplus_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
    return None


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    return None


def march(depths: torch.Tensor, densities: torch.Tensor, colors: torch.Tensor, fine_depths: torch.Tensor,
          fine_densities: torch.Tensor, fine_colors: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    return None


def importance(depths: torch.Tensor, densities: torch.Tensor, samples: int, deterministic: bool,
               u: torch.Tensor | None) -> torch.Tensor | None:
    return None
