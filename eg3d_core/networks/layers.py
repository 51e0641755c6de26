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

from ..kernels import modulation
from ..kernels.build import float32_cpu_inference
from ..kernels.fir import upsample_tail, use_fused_tail
from ..kernels.winograd import conv3x3 as winograd_conv3x3
from ..kernels.winograd import conv_transpose3x3_up as winograd_conv_transpose_up
from ..kernels.winograd import use_winograd, use_winograd_up

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


# oneDNN's fused linear kernel (a private op of torch's CPU build); looked up once, absent in some builds.
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_linear_ok(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """Whether ``linear`` may take oneDNN's kernel: float32 CPU inference on a 2-D input."""
    return x.ndim == 2 and _ONEDNN_LINEAR and float32_cpu_inference(x, weight, bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """x [M, I] @ weight [O, I]^T + bias [O] -> [M, O], followed by the logistic sigmoid if ``sigmoid``.

    Float32 CPU inference goes through oneDNN's matrix product (the kernel ``torch.compile`` uses on CPU), with the
    bias and the sigmoid fused: 1.3-1.5x faster than MKL's GEMM behind ``addmm`` for the renderer's tall, narrow
    products, and the sigmoid costs a fraction of a separate pass. Anything else (autograd, autocast, other
    devices or dtypes) takes ``addmm``; both agree to rounding.
    """
    if _onednn_linear_ok(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "sigmoid" if sigmoid else "none", [], "")
    y = torch.addmm(bias.unsqueeze(0), x, weight.t())
    return y.sigmoid_() if sigmoid and inplace_ok(y) else (y.sigmoid() if sigmoid else y)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)) as logaddexp(x, 0): same values as torch's Softplus to rounding, ~2.5x faster on CPU."""
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


def softplus_(x: torch.Tensor) -> torch.Tensor:
    """``softplus``, in place where autograd allows (a fresh result the size of x costs more than the arithmetic)."""
    if inplace_ok(x):
        return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device), out=x)
    return softplus(x)


def softplus_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softplus(x [M, I] @ weight [O, I]^T + bias [O]) -> [M, O].

    On oneDNN's path computed as -log(sigmoid(-y)) with the sigmoid fused into the product (negated weights give
    -y): one logarithm pass instead of logaddexp's exp-and-log1p, ~1.4x faster for the decoder's hidden layer, and
    equal to it within a few float32 ulps of the result's magnitude. Where the fused sigmoid underflows (some
    y above ~87, far outside what trained decoders produce) the whole product is redone the plain way.
    """
    if _onednn_linear_ok(x, weight, bias):
        s = linear(x, -weight, -bias, sigmoid=True)
        if s.numel() and s.min() > 1e-30:  # also False for NaN
            return s.log_().neg_()
    return softplus_(linear(x, weight, bias))


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


def use_small_image_product(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``small_image_conv3x3`` serves this 3x3 layer: one float32 CPU image of at most 8x8 pixels and a weight
    of at least 256 x 256 channels (the backbone's 4-8 px layers), where modulating the 9.4 MB weight costs more
    than the convolution itself (measured 2-4x slower than the matrix product, benchmarks/RESULTS.md)."""
    return (x.shape[0] == 1 and x.shape[2] * x.shape[3] <= 64 and weight.shape[0] * weight.shape[1] >= 256 * 256
            and float32_cpu_inference(x, weight))


def small_image_conv3x3(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, up: bool,
                        gain: float, cache: dict | None = None) -> torch.Tensor:
    """The modulated 3x3 convolution of ``modulated_conv2d`` (padding 1, or with ``up`` the stride-2 transposed one,
    before its filter), without bias, as one matrix product with the raw weight: x [1, I, H, W], weight [O, I, 3, 3],
    styles [I] -> [1, O, H, W] (up: [1, O, 2H+1, 2W+1]), NCHW.

    The convolution is linear in each channel, so the styles scale the input and the demodulation and gain the
    output; the weight is read once, in the layout ``cache`` (a dict per layer, or None) keeps while it is unchanged,
    instead of being modulated, demodulated and reordered into a fresh copy first.
    """
    _, i, h, w = x.shape
    o = weight.shape[0]

    def build(w32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # up: [I, O * 9] (input channel -> each output channel's 9 taps); else [O, I * 9], as unfold orders patches.
        mat = w32.reshape(o, i, 9).transpose(0, 1).reshape(i, o * 9).contiguous() if up else w32.reshape(o, i * 9)
        return mat, modulation.sum_of_squares(w32)

    mat, sumsq = modulation.cached(cache, ("small", up), weight, build)
    scale = modulation.output_scale(sumsq, styles, demodulate, gain)
    xs = x * styles.to(x.dtype).reshape(1, i, 1, 1)
    if up:  # each input pixel's 3x3 output patch, then the overlapping patches summed (stride 2)
        patches = xs.reshape(i, h * w).t() @ mat
        y = F.fold(patches.t().unsqueeze(0), (2 * h + 1, 2 * w + 1), kernel_size=3, stride=2)
    else:
        y = (mat @ F.unfold(xs, 3, padding=1)[0]).reshape(1, o, h, w)
    return y.mul_(scale.reshape(1, o, 1, 1))


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool,
                     up: bool, noise: torch.Tensor | None, bias: torch.Tensor | None = None,
                     gain: float = 1.0, activate: bool = False, limit: float | None = None,
                     cache: dict | None = None) -> torch.Tensor:
    """Style-modulated convolution, returning ``y = gain * (conv + noise + bias)``, or with ``activate`` the
    synthesis layer's output ``clamp(leaky_relu(y, 0.2), -limit, limit)`` (fused into the Winograd path's last pass).

    x: [N, I, H, W], weight: [O, I, k, k], styles: [N, I], bias: [O] -> [N, O, H', W'] (H' = 2H when ``up``).
    Upsampling is a stride-2 transposed convolution (weights used unflipped) followed by the [1,3,3,1] filter,
    as the released weights expect. A single sample folds styles, demodulation, gain and bias into the
    convolution itself (only the noise is added afterwards); a batch scales the input and output around one
    shared-weight convolution instead of the original's grouped convolution. Both equal it up to rounding and
    keep x's memory format. Without autograd the passes after the convolution work in place: a fresh tensor the
    size of a large activation costs more (page faults) than the arithmetic. ``cache`` (a dict per layer, or None)
    lets the Winograd and small-image paths keep their prepared weights while the weight is unchanged.
    """
    n, i = x.shape[:2]
    o, _, kh, _ = weight.shape
    if n > 1 and kh == 3 and (use_winograd_up if up else use_winograd)(x[:1], weight):
        # A batch of images for the Winograd path (e.g. FID sampling): one at a time, each with its own styles.
        per_noise = (lambda k: noise[k:k + 1]) if noise is not None and noise.ndim == 4 else (lambda k: noise)
        return torch.cat([modulated_conv2d(x[k:k + 1], weight, styles[k:k + 1], demodulate, up, per_noise(k), bias,
                                           gain, activate, limit, cache) for k in range(n)])
    b = None if bias is None else (bias * gain).to(x.dtype)
    if n == 1 and kh == 3 and not up and use_winograd(x, weight) and (noise is None or noise.numel() == x[0, 0].numel()):
        # Modulation in the input transform; demodulation, gain, noise, activation and clamp in the output transform.
        return winograd_conv3x3(x, weight, b, None if noise is None else noise * gain, 0.2 if activate else 1.0,
                                limit if activate else None, styles.reshape(i), demodulate, gain, cache)
    winograd_up = n == 1 and up and use_winograd_up(x, weight)  # modulates in its input and output transforms
    small = n == 1 and kh == 3 and not winograd_up and use_small_image_product(x, weight)
    if n == 1 and not (winograd_up or small):
        if not up and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Modulated weights laid out like the activations ([O, k, k, I] in memory), so that the
            # convolution does not copy them into its own layout (transposed convolutions always copy).
            wgt = (weight.permute(0, 2, 3, 1) * styles.reshape(1, 1, 1, i)).permute(0, 3, 1, 2)
        else:
            wgt = weight * styles.reshape(1, i, 1, 1)
        scale = gain
        if demodulate:
            # One pass over the weights whatever their layout (the sum of squares, written out, is not).
            norm = torch.linalg.vector_norm(wgt, dim=(1, 2, 3))
            scale = (norm.square() + 1e-8).rsqrt().reshape(o, 1, 1, 1) * gain
        wgt = (wgt.mul_(scale) if inplace_ok(wgt) else wgt * scale).to(x.dtype)
    elif n > 1:
        dcoef = None
        if demodulate:
            dcoef = ((weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)).square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
        wgt = weight.to(x.dtype)
    conv_bias = b if n == 1 and not small else None
    if small:
        x = small_image_conv3x3(x, weight, styles.reshape(i), demodulate, up, gain, cache)
    if up:
        if winograd_up:
            x = winograd_conv_transpose_up(x, weight, styles.reshape(i), demodulate, gain, cache)
        elif not small:
            x = F.conv_transpose2d(x, wgt.transpose(0, 1), stride=2)
        if n == 1 and use_fused_tail(x) and (noise is None or noise.numel() == (x.shape[2] - 1) * (x.shape[3] - 1)):
            # The low-pass filter, bias, noise, activation and clamp in one pass over the activation.
            return upsample_tail(x, b, None if noise is None else noise * gain, 0.2 if activate else 1.0,
                                 limit if activate else None)
        x = F.conv2d(x, fir_kernel(o, 4.0, x.device, x.dtype), bias=conv_bias, padding=1, groups=o)
    elif n == 1 and kh == 1 and x.is_contiguous(memory_format=torch.channels_last) and float32_cpu_inference(x, wgt):
        # A 1x1 convolution of a channels-last image is a matrix product over its pixels: oneDNN's linear kernel for
        # the backbone's 96-channel ToRGB layers (~1.6x faster than its convolution), MKL's product for the
        # super-resolution's 3-channel ones (~2x: the convolution reads the 512 px activation at half the speed).
        h, w = x.shape[2:]
        rows = x.permute(0, 2, 3, 1).reshape(h * w, i)
        rgb_bias = conv_bias if conv_bias is not None else wgt.new_zeros(o)
        if o >= 16:
            y = linear(rows, wgt.reshape(o, i), rgb_bias)
        else:
            y = torch.addmm(rgb_bias, rows, wgt.reshape(o, i).t())
        x = y.reshape(1, h, w, o).permute(0, 3, 1, 2)
    elif not small:
        x = F.conv2d(x, wgt, bias=conv_bias, padding=kh // 2)
    inplace = inplace_ok(x)
    if n != 1:
        scale = gain if dcoef is None else dcoef.to(x.dtype).reshape(n, o, 1, 1) * gain
        x = x.mul_(scale) if inplace else x * scale
    if noise is not None:
        noise = (noise * gain).to(x.dtype)
        x = x.add_(noise) if inplace else x + noise
    if b is not None and conv_bias is None:
        x = x.add_(b.reshape(1, -1, 1, 1)) if inplace else x + b.reshape(1, -1, 1, 1)
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
        self.fast_path_cache: dict = {}  # prepared weights of the fast paths (see modulated_conv2d; not in the state dict)

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
        """Channels-last from 32x32 up, where its CPU convolutions are faster (several times for the wide
        super-resolution layers); below, the plain layout is (by up to 2x at 4x4 and 8x8)."""
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
