"""Winograd F(2x2, 3x3) convolution against F.conv2d (eg3d_core.networks.layers)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eg3d_core.networks import layers
from eg3d_core.networks.layers import winograd_conv3x3, winograd_ok


@pytest.mark.parametrize("shape", [(3, 5, 1, 1), (8, 16, 7, 9), (16, 8, 2, 3), (24, 32, 16, 16), (33, 17, 13, 6)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_winograd_matches_conv2d(shape: tuple[int, int, int, int], channels_last: bool, with_bias: bool) -> None:
    """Odd and even sizes, both layouts, with and without bias: float32 rounding of the float64 convolution."""
    i, o, h, w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(1, i, h, w, generator=gen)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(o, i, 3, 3, generator=gen) / (3 * i ** 0.5)
    bias = torch.randn(o, generator=gen) if with_bias else None
    y = winograd_conv3x3(x, weight, bias)
    ref = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last) or h % 2 or w % 2
    assert (y.double() - ref).abs().max() <= 2e-6 * ref.abs().max()


def test_winograd_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several bands of tile rows (first, middle and a short last one) give the same result as one band."""
    x = torch.randn(1, 6, 11, 10).to(memory_format=torch.channels_last)
    weight, bias = torch.randn(5, 6, 3, 3), torch.randn(5)
    whole = winograd_conv3x3(x, weight, bias)
    monkeypatch.setattr(layers, "_WINOGRAD_CHUNK_BYTES", 1)  # one tile row per band
    banded = winograd_conv3x3(x, weight, bias)
    assert torch.allclose(banded, whole, atol=1e-5, rtol=0)
    assert torch.allclose(banded, F.conv2d(x, weight, bias, padding=1), atol=1e-4, rtol=0)


def test_winograd_gate() -> None:
    """Used only for wide float32 single-sample inference; small widths, batches and autograd keep F.conv2d."""
    x = torch.randn(1, 256, 64, 64).to(memory_format=torch.channels_last)
    weight = torch.randn(256, 256, 3, 3)
    assert winograd_ok(x, weight)
    assert not winograd_ok(x[:, :128], weight[:128, :128])
    assert not winograd_ok(x[..., :32, :32], weight)
    assert not winograd_ok(x.double(), weight.double())
    assert not winograd_ok(x.repeat(2, 1, 1, 1), weight)
    assert not winograd_ok(x, weight.requires_grad_())
    with torch.no_grad():
        assert winograd_ok(x, weight)


def test_modulated_conv2d_takes_winograd(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 256-channel 64 px single-sample layer goes through Winograd and matches the float64 convolution."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 256, 64, 64, generator=gen).to(memory_format=torch.channels_last)
    weight, styles = torch.randn(256, 256, 3, 3, generator=gen), torch.randn(1, 256, generator=gen)
    noise, bias = torch.randn(64, 64, generator=gen), torch.randn(256, generator=gen)
    calls = []
    monkeypatch.setattr(layers, "winograd_conv3x3", lambda *args: calls.append(1) or winograd_conv3x3(*args))
    with torch.no_grad():
        y = layers.modulated_conv2d(x, weight, styles, True, False, noise, bias, gain=2 ** 0.5)
        ref = layers.modulated_conv2d(x.double(), weight.double(), styles.double(), True, False, noise.double(),
                                      bias.double(), gain=2 ** 0.5)
    assert calls == [1]
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert (y.double() - ref).abs().max() <= 2e-6 * ref.abs().max()
