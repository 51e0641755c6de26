"""The fused upsampling tail (eg3d_core/kernels/fir.py) against PyTorch's separate operations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eg3d_core.kernels import fir
from eg3d_core.networks import layers


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def test_kernel_is_available_here():
    from test_native import X86_AVX2

    assert (fir.library() is not None) == X86_AVX2


@pytest.mark.parametrize(("channels", "height", "width"), [(8, 9, 13), (24, 33, 17), (128, 65, 65)])
@pytest.mark.parametrize("post", [False, True])
def test_matches_filter_bias_noise_activation_and_clamp(channels, height, width, post):
    if fir.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, channels, height, width) * 3)
    bias, noise = torch.randn(channels), torch.randn(height - 1, width - 1)
    expected = F.conv2d(x, layers.fir_kernel(channels, 4.0, x.device, x.dtype), bias=bias if post else None,
                        padding=1, groups=channels)
    if post:
        expected = torch.clamp(F.leaky_relu(expected + noise, 0.2), -2.0, 2.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = (fir.upsample_tail(x, bias, noise, 0.2, 2.0) if post else fir.upsample_tail(x))
    finally:
        torch.set_num_threads(threads)
    assert got.shape == (1, channels, height - 1, width - 1) and got.is_contiguous(memory_format=torch.channels_last)
    # Summation order only: a 16-tap sum rounds to within a few ulps of the outputs' magnitude.
    torch.testing.assert_close(got, expected, atol=1e-6 * (1 + expected.abs().max().item()), rtol=0)
    if post:
        assert (got.abs() == 2.0).any() and (got < 0).any()  # the clamp and the negative slope were exercised


def test_not_used_where_it_cannot_work():
    x = _channels_last(torch.randn(1, 16, 9, 9))
    assert fir.use_fused_tail(x) == (fir.library() is not None)
    assert not fir.use_fused_tail(x.contiguous())  # NCHW
    assert not fir.use_fused_tail(_channels_last(torch.randn(1, 12, 9, 9)))  # channels not a multiple of 8
    assert not fir.use_fused_tail(torch.cat([x, x]))  # a batch
    assert not fir.use_fused_tail(x.double())
    assert not fir.use_fused_tail(x.clone().requires_grad_())  # autograd


def test_upsampling_layer_same_with_and_without(monkeypatch):
    if fir.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    layer = layers.SynthesisLayer(64, 32, 64, 32, up=True, conv_clamp=1.0, noise_buffer=True)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
        x = _channels_last(torch.randn(1, 64, 16, 16))
        w = torch.randn(1, 64)
        calls = []
        fused = fir.upsample_tail
        monkeypatch.setattr(fir, "upsample_tail", lambda *a, **k: calls.append(1) or fused(*a, **k))
        fast = layer(x, w, "const")
        assert calls  # the fused tail was taken
        monkeypatch.setattr(fir, "use_fused_tail", lambda x: False)
        plain = layer(x, w, "const")
    assert fast.shape == plain.shape == (1, 32, 32, 32)
    assert (fast.abs() == 1.0).any()
    torch.testing.assert_close(fast, plain, atol=1e-6 * (1 + plain.abs().max().item()), rtol=0)  # as above
