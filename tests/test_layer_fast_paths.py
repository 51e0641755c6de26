"""The CPU backend's paths for the synthesis layers (eg3d_core/kernels/cpu.py): the backbone's small-image layers and
the 1x1 ToRGB layers as matrix products."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eg3d_core.kernels import cpu
from eg3d_core.networks import layers


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("size", [4, 8])
def test_small_image_product_matches_float64(up, size):
    """The backbone's 4-8 px layers as one matrix product with the raw weight (cpu.small_image_conv3x3): no worse
    than float32's direct convolution of the modulated weight, and the cached weight layout follows the weight."""
    torch.manual_seed(0)
    x = torch.randn(1, 256, size, size)
    w = torch.nn.Parameter(torch.randn(264, 256, 3, 3))
    styles = torch.rand(256) * 2 + 0.1
    gain = 2 ** 0.5

    def modulated(weight: torch.Tensor) -> torch.Tensor:
        m = weight * styles.to(weight.dtype).reshape(1, -1, 1, 1)
        return m * (m.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain

    def conv(xx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(xx, weight.transpose(0, 1), stride=2) if up else F.conv2d(xx, weight, padding=1)

    with torch.no_grad():
        assert cpu.use_small_image_product(x, w)
        cache: dict = {}
        got = cpu.small_image_conv3x3(x, w, styles, True, up, gain, cache)
        exact = conv(x.double(), modulated(w.double()))
        direct = conv(x, modulated(w))
        assert got.shape == exact.shape
        err, err_direct = (got.double() - exact).abs().max().item(), (direct.double() - exact).abs().max().item()
        assert err <= 2 * err_direct + 1e-6
        w.mul_(-1)
        assert torch.equal(cpu.small_image_conv3x3(x, w, styles, True, up, gain, cache),
                           cpu.small_image_conv3x3(x, w, styles, True, up, gain, None))
    assert not cpu.use_small_image_product(torch.randn(1, 256, 16, 16), w)  # larger maps: Winograd / oneDNN
    assert not cpu.use_small_image_product(x[:, :64], w[:64, :64])  # narrow layers
    assert not cpu.use_small_image_product(torch.cat([x, x]), w)  # a batch


def test_small_layers_same_with_and_without(monkeypatch):
    torch.manual_seed(0)
    for up, res in ((False, 8), (True, 16)):
        layer = layers.SynthesisLayer(256, 256, 64, res, up=up, conv_clamp=256, noise_buffer=True)
        with torch.no_grad():
            layer.noise_strength.fill_(0.1)
            x = torch.randn(1, 256, 8, 8)
            w = torch.randn(1, 64)
            assert cpu.use_small_image_product(x, layer.weight)
            fast = layer(x, w, "const")
            with monkeypatch.context() as m:
                m.setattr(cpu, "use_small_image_product", lambda x, w: False)
                direct = layer(x, w, "const")
        assert fast.shape == direct.shape == (1, 256, res, res)
        # Float32 rounding of two summation orders over 256 x 9 products, relative to the outputs' magnitude.
        torch.testing.assert_close(fast, direct, atol=1e-4 * (1 + direct.abs().max().item()), rtol=0)


@pytest.mark.parametrize("channels_out", [3, 96])
def test_torgb_of_a_channels_last_image_is_a_matrix_product(channels_out, monkeypatch):
    """ToRGB of a channels-last image (from 32 px up) goes through a matrix product over its pixels (oneDNN's linear
    kernel from 16 channels, MKL's product below); an NCHW image through the convolution. Both agree to rounding."""
    torch.manual_seed(0)
    layer = layers.ToRGB(64, channels_out, 32, conv_clamp=None)
    with torch.no_grad():
        layer.bias.normal_()
        x, w = torch.randn(1, 64, 40, 40), torch.randn(1, 32)
        with monkeypatch.context() as m:
            m.setattr(layers.F, "conv2d", lambda *a, **k: pytest.fail("the convolution was used"))
            fast = layer(x.contiguous(memory_format=torch.channels_last), w)
        plain = layer(x, w)
        styles = layer.affine(w) * layer.weight_gain
        expected = F.conv2d(x, layer.weight * styles.reshape(1, -1, 1, 1), layer.bias)
    assert fast.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
        memory_format=torch.channels_last)
    # Float32 rounding of a 64-term sum of unit-variance products (~1e-6); 1e-5 is the bound.
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=0)
