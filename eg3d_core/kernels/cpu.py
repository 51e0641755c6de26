"""The CPU backend: float32 inference on the CPU, faster than the reference PyTorch code and equal to it to float32
rounding (tests/test_parity.py runs both; the tests of each path bound the difference).

Each function takes the arguments of the ``dispatch`` function of the same name and returns None where it does not
apply: other devices, autograd to serve, and (except the modulated convolutions' layout choices) other dtypes and CPU
autocast. Where it applies it picks the fastest path it has:

* modulated convolutions: Winograd convolutions (``winograd``) on the wide 3x3 layers, one matrix product with the
  raw weight on the backbone's 4-8 px layers (``small_image_conv3x3``), the modulated weight laid out like a
  channels-last activation, 1x1 convolutions as matrix products over the pixels, and the upsampling layers' filter,
  bias, noise, activation and clamp in one compiled pass (``fir``);
* linear layers: oneDNN's matrix product with the bias and sigmoid fused, and the decoder's softplus through it;
* the radiance field, compositing and importance sampling: compiled loops (``field``).

Where each of these pays is measured by benchmarks/bench_winograd.py and bench_generator.py (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..networks.layers import fir_kernel
from ..rendering.triplane import PLANE_AXES
from . import field as field_kernel
from . import fir, modulation, winograd
from .build import float32_cpu_inference

# oneDNN's fused linear kernel (a private op of torch's CPU build); looked up once, absent in some builds.
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _cpu_inference(*tensors: torch.Tensor | None) -> bool:
    """Whether these tensors (None: skipped) are on the CPU with no autograd to serve (any dtype, autocast or not)."""
    given = [t for t in tensors if t is not None]
    return (all(t.device.type == "cpu" for t in given)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in given)))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigmoid: bool = False) -> torch.Tensor | None:
    """x [M, I] @ weight [O, I]^T + bias [O] (then the sigmoid) through oneDNN's matrix product, the kernel
    ``torch.compile`` uses on CPU, with the bias and the sigmoid fused; faster than MKL's GEMM behind ``addmm`` for the
    renderer's tall, narrow products."""
    if not (x.ndim == 2 and _ONEDNN_LINEAR and float32_cpu_inference(x, weight, bias)):
        return None
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "sigmoid" if sigmoid else "none", [], "")


def softplus_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
    """softplus(x @ weight^T + bias) as -log(sigmoid(-y)), with the sigmoid fused into oneDNN's product (negated
    weights give -y): one logarithm pass instead of logaddexp's exp and log1p, equal to it within a few float32 ulps of
    the result's magnitude. None also where the fused sigmoid underflows (some y above ~87, far outside what trained
    decoders produce): the reference then computes it the plain way."""
    s = linear(x, -weight, -bias, sigmoid=True)
    if s is None or not (s.numel() and s.min() > 1e-30):  # also False for NaN
        return None
    return s.log_().neg_()


def use_small_image_product(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``small_image_conv3x3`` serves this 3x3 layer: one float32 CPU image of at most 8x8 pixels and a weight
    of at least 256 x 256 channels (the backbone's 4-8 px layers), where modulating the weight costs more than the
    convolution itself."""
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


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, up: bool,
                     noise: torch.Tensor | None, bias: torch.Tensor | None, gain: float, activate: bool,
                     limit: float | None, cache: dict | None) -> torch.Tensor | None:
    """``networks.layers.modulated_conv2d`` for CPU inference on single images, and on batches the Winograd path
    serves (image by image, each with its own styles); None for other batches, which the reference runs as one
    shared-weight convolution, and wherever autograd is to be served. The compiled kernels, the small-image product
    and the 1x1 matrix product take float32 without autocast; under CPU autocast only the weight layout and the
    in-place passes apply. ``cache`` keeps the Winograd and small-image paths' prepared weights per layer."""
    if not _cpu_inference(x, weight, styles, noise, bias):
        return None
    n, i = x.shape[:2]
    o, _, kh, _ = weight.shape
    if n > 1:
        if kh == 3 and (winograd.use_winograd_up if up else winograd.use_winograd)(x[:1], weight):
            per_noise = (lambda k: noise[k:k + 1]) if noise is not None and noise.ndim == 4 else (lambda k: noise)
            return torch.cat([modulated_conv2d(x[k:k + 1], weight, styles[k:k + 1], demodulate, up, per_noise(k), bias,
                                               gain, activate, limit, cache) for k in range(n)])
        return None
    b = None if bias is None else (bias * gain).to(x.dtype)
    if kh == 3 and not up and winograd.use_winograd(x, weight) and (noise is None or noise.numel() == x[0, 0].numel()):
        # Modulation in the input transform; demodulation, gain, noise, activation and clamp in the output transform.
        return winograd.conv3x3(x, weight, b, None if noise is None else noise * gain, 0.2 if activate else 1.0,
                                limit if activate else None, styles.reshape(i), demodulate, gain, cache)
    winograd_up = up and winograd.use_winograd_up(x, weight)  # modulates in its input and output transforms
    small = kh == 3 and not winograd_up and use_small_image_product(x, weight)
    if not (winograd_up or small):
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
        wgt = wgt.mul_(scale).to(x.dtype)
    conv_bias = None if small else b
    if small:
        x = small_image_conv3x3(x, weight, styles.reshape(i), demodulate, up, gain, cache)
    if up:
        if winograd_up:
            x = winograd.conv_transpose3x3_up(x, weight, styles.reshape(i), demodulate, gain, cache)
        elif not small:
            x = F.conv_transpose2d(x, wgt.transpose(0, 1), stride=2)
        if fir.use_fused_tail(x) and (noise is None or noise.numel() == (x.shape[2] - 1) * (x.shape[3] - 1)):
            # The low-pass filter, bias, noise, activation and clamp in one pass over the activation.
            return fir.upsample_tail(x, b, None if noise is None else noise * gain, 0.2 if activate else 1.0,
                                     limit if activate else None)
        x = F.conv2d(x, fir_kernel(o, 4.0, x.device, x.dtype), bias=conv_bias, padding=1, groups=o)
    elif kh == 1 and x.is_contiguous(memory_format=torch.channels_last) and float32_cpu_inference(x, wgt):
        # A 1x1 convolution of a channels-last image is a matrix product over its pixels: oneDNN's linear kernel for
        # the backbone's wide ToRGB layers, MKL's product for the super-resolution's 3-channel ones (the convolution
        # reads the large activation slower than the product does).
        h, w = x.shape[2:]
        rows = x.permute(0, 2, 3, 1).reshape(h * w, i)
        rgb_bias = conv_bias if conv_bias is not None else wgt.new_zeros(o)
        y = linear(rows, wgt.reshape(o, i), rgb_bias) if o >= 16 else None
        if y is None:
            y = torch.addmm(rgb_bias, rows, wgt.reshape(o, i).t())
        x = y.reshape(1, h, w, o).permute(0, 3, 1, 2)
    elif not small:
        x = F.conv2d(x, wgt, bias=conv_bias, padding=kh // 2)
    if noise is not None:
        x = x.add_((noise * gain).to(x.dtype))
    if b is not None and conv_bias is None:
        x = x.add_(b.reshape(1, -1, 1, 1))
    if activate:
        x = F.leaky_relu(x, 0.2, inplace=True)
        if limit is not None:
            x = x.clamp_(-limit, limit)
    return x


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    """The compiled field (``field.field``) where it applies: float32 CPU inference, tri-plane channels the kernel is
    built for, the decoder sizes of every EG3D model."""
    fc0, _, fc1 = decoder.net
    n, p, ch, h, w = planes.shape
    if (not _cpu_inference(coords) or not float32_cpu_inference(planes, *decoder.parameters())
            or (fc0.weight.shape[0], fc1.weight.shape[0]) != (field_kernel.HIDDEN, 1 + field_kernel.OUT)
            or p != len(PLANE_AXES) or field_kernel.library(ch) is None):
        return None
    return field_kernel.field(coords, planes, box_warp, decoder, table)


def march(depths: torch.Tensor, densities: torch.Tensor, colors: torch.Tensor, fine_depths: torch.Tensor,
          fine_densities: torch.Tensor, fine_colors: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The compiled compositing (``field.march``) where it applies: float32 CPU inference, colour channels a multiple
    of 8."""
    tensors = (depths, densities, colors, fine_depths, fine_densities, fine_colors)
    if colors.shape[-1] % 8 or not float32_cpu_inference(*tensors) or field_kernel.library() is None:
        return None
    return field_kernel.march(*tensors)


def importance(depths: torch.Tensor, densities: torch.Tensor, samples: int, deterministic: bool,
               u: torch.Tensor | None) -> torch.Tensor | None:
    """The compiled importance sampler (``field.importance``) where it applies: float32 CPU inference, at least 4
    coarse samples, the random draws made beforehand when not deterministic."""
    if (depths.shape[2] < 4 or (not deterministic and u is None) or not float32_cpu_inference(depths, densities)
            or field_kernel.library() is None):
        return None
    return field_kernel.importance(depths, densities, samples, deterministic, u)
