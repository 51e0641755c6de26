"""StyleGAN2 building blocks shared by the backbone and the super-resolution modules.

Parameter names and storage conventions follow the released checkpoints so that their state
dicts load unchanged: fully-connected weights are stored divided by their learning-rate multiplier
and scaled at run time ("equalized learning rate"); modulated convolutions store raw weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import dispatch

# The [1, 3, 3, 1] binomial filter of StyleGAN2, normalised to sum 1 (separable 1-D form).
_FIR_1D = (1.0 / 8, 3.0 / 8, 3.0 / 8, 1.0 / 8)


def fir_kernel(channels: int, gain: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Depthwise 4x4 [1,3,3,1] outer-product kernel times ``gain``: [channels, 1, 4, 4]."""
    f = torch.tensor(_FIR_1D, device=device, dtype=torch.float32)
    k = torch.outer(f, f) * gain
    return k.to(dtype).expand(channels, 1, 4, 4)


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling with the [1,3,3,1] filter (zero insertion, then FIR with gain 4).

    x: [N, C, H, W] -> [N, C, 2H, 2W]. A stride-2 transposed depthwise convolution with padding 1
    is the same operation as the original's zero-insertion + pad(2, 1) + filter.
    """
    c = x.shape[1]
    return F.conv_transpose2d(x, fir_kernel(c, 4.0, x.device, x.dtype), stride=2, padding=1, groups=c)


def inplace_ok(x: torch.Tensor) -> bool:
    """Whether x may be overwritten: always, unless autograd has to keep it."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """x [M, I] @ weight [O, I]^T + bias [O] -> [M, O], followed by the logistic sigmoid if ``sigmoid``."""
    y = dispatch.linear(x, weight, bias, sigmoid)
    if y is not None:
        return y
    y = torch.addmm(bias.unsqueeze(0), x, weight.t())
    return y.sigmoid_() if sigmoid and inplace_ok(y) else (y.sigmoid() if sigmoid else y)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)), written as logaddexp(x, 0): torch's Softplus to rounding (without its linear branch above
    x = 20), in one element-wise kernel that can also write in place (``softplus_``)."""
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


def softplus_(x: torch.Tensor) -> torch.Tensor:
    """``softplus``, in place where autograd allows (a fresh result the size of x costs more than the arithmetic)."""
    if inplace_ok(x):
        return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device), out=x)
    return softplus(x)


def softplus_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softplus(x [M, I] @ weight [O, I]^T + bias [O]) -> [M, O]: the decoder's hidden layer."""
    y = dispatch.softplus_linear(x, weight, bias)
    return y if y is not None else softplus_(linear(x, weight, bias))


class FullyConnected(nn.Module):
    """Equalized-learning-rate linear layer. x: [N, in] -> [N, out]."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0, lrelu: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.lrelu = lrelu

    def params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective weight [out, in] and bias [out] (learning-rate gains applied) in ``dtype``."""
        w = self.weight.to(dtype) * self.weight_gain
        b = self.bias.to(dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.params(x.dtype)
        if not self.lrelu:
            return linear(x, w, b)
        return F.leaky_relu(x.matmul(w.t()) + b.unsqueeze(0), 0.2) * math.sqrt(2)


def clamp(x: torch.Tensor, limit: float | None) -> torch.Tensor:
    """x clamped to [-limit, limit] (in place where autograd allows; a fresh pass over a large activation costs
    several times more than an in-place one); None keeps x."""
    if limit is None:
        return x
    return x.clamp_(-limit, limit) if inplace_ok(x) else x.clamp(-limit, limit)


def _convolve(x: torch.Tensor, weight: torch.Tensor, up: bool) -> torch.Tensor:
    """x [N, I, H, W] convolved with weight [O, I, k, k] ('same' padding); with ``up`` the stride-2 transposed
    convolution (weights unflipped) followed by the [1,3,3,1] filter -> [N, O, 2H, 2W], as the released weights
    expect."""
    if not up:
        return F.conv2d(x, weight, padding=weight.shape[2] // 2)
    o = weight.shape[0]
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    return F.conv2d(x, fir_kernel(o, 4.0, x.device, x.dtype), padding=1, groups=o)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                     up: bool, noise: torch.Tensor | None, bias: torch.Tensor | None = None,
                     gain: float = 1.0, activate: bool = False, limit: float | None = None,
                     cache: dict | None = None) -> torch.Tensor:
    """Style-modulated convolution (StyleGAN2, eq. 1-3), returning ``y = gain * (conv + noise + bias)``, or with
    ``activate`` the synthesis layer's output ``clamp(leaky_relu(y, 0.2), -limit, limit)``.

    x: [N, I, H, W], weight: [O, I, k, k], styles: [N, I], noise: broadcastable to [N, 1, H', W'] or None, bias: [O]
    -> [N, O, H', W'] (H' = 2H when ``up``). The weight is scaled by the styles on its input channels and, with
    ``demodulate``, divided by the norm of each output channel's modulated weights (+ 1e-8). A single sample folds
    this into the weight (the original's fused modulation); a batch scales the input and the output around one
    shared-weight convolution instead of the original's grouped convolution: the same up to rounding. The backend
    (``kernels.dispatch``) runs it where it can; ``cache`` (a dict per layer, or None) lets it keep prepared weights
    while the weight is unchanged.
    """
    out = dispatch.modulated_conv2d(x, weight, styles, demodulate, up, noise, bias, gain, activate, limit, cache)
    if out is not None:
        return out
    n, i = x.shape[:2]
    o = weight.shape[0]
    if n == 1:
        wgt = weight * styles.reshape(1, i, 1, 1)
        if demodulate:
            wgt = wgt * (wgt.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
        x = _convolve(x, (wgt * gain).to(x.dtype), up)
    else:
        x = _convolve(x * styles.to(x.dtype).reshape(n, i, 1, 1), weight.to(x.dtype), up)
        scale = gain
        if demodulate:
            dcoef = ((weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
            scale = dcoef.to(x.dtype).reshape(n, o, 1, 1) * gain
        x = x.mul_(scale) if inplace_ok(x) else x * scale
    # Without autograd the passes below work in place: a fresh tensor the size of a large activation costs more
    # (page faults) than the arithmetic.
    inplace = inplace_ok(x)
    if noise is not None:
        noise = (noise * gain).to(x.dtype)
        x = x.add_(noise) if inplace else x + noise
    if bias is not None:
        b = (bias * gain).to(x.dtype).reshape(1, -1, 1, 1)
        x = x.add_(b) if inplace else x + b
    if activate:
        x = clamp(F.leaky_relu(x, 0.2, inplace=inplace), limit)
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + noise + bias + leaky ReLU. x: [N, I, H, W] -> [N, O, R, R]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool,
                 conv_clamp: float | None, noise_buffer: bool) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        if noise_buffer:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.fast_path_cache: dict = {}  # the backend's prepared weights (see modulated_conv2d; not in the state dict)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        # lrelu(g * y) = g * lrelu(y) for g > 0, so the gain is applied inside the convolution.
        return modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, noise=noise, bias=self.bias,
                                gain=math.sqrt(2), activate=True, limit=self.conv_clamp, cache=self.fast_path_cache)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution without demodulation. x: [N, I, H, W] -> [N, C, H, W]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return clamp(modulated_conv2d(x, self.weight, styles, demodulate=False, up=False, noise=None, bias=self.bias),
                     self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution stage of a 'skip' StyleGAN2 generator.

    A block with ``in_channels == 0`` starts from a learned constant (b4). ``up`` selects whether the
    block doubles the resolution (the super-resolution "NoUp" blocks do not).
    Forward: x [N, I, H, W] (or None), img [N, C, H, W] (or None), ws [N, num_conv + 1, w_dim]
    -> x [N, O, R, R], img [N, C, R, R].
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 up: bool = True, conv_clamp: float | None = None, noise_buffers: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.up = up and in_channels != 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=self.up,
                                        conv_clamp=conv_clamp, noise_buffer=noise_buffers)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, up=False,
                                    conv_clamp=conv_clamp, noise_buffer=noise_buffers)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.resolution = resolution
        self.memory_format = self.default_memory_format()

    def default_memory_format(self) -> torch.memory_format:
        """Channels-last from 32x32 up, where the CPU convolutions are faster in it (most of all for the wide
        super-resolution layers); below, the plain layout is faster."""
        return torch.channels_last if self.resolution >= 32 else torch.contiguous_format

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = x.contiguous(memory_format=self.memory_format)
        if self.in_channels != 0:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        if img is not None and self.up:
            img = upsample2d(img.contiguous(memory_format=self.memory_format))
        y = self.torgb(x, ws[:, self.num_conv]).float()
        # Never into img: the original adds in place there and thereby overwrites the raw image it returns.
        if img is not None:
            img = y.add_(img) if inplace_ok(y) else img.float() + y
        else:
            img = y
        return x, img
