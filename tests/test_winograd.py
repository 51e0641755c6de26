"""Winograd F(2x2, 3x3), F(3x3, 3x3) and F(6x6, 3x3) convolutions (eg3d_core/kernels/winograd.py) against the
direct convolution."""
from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

from eg3d_core.kernels import winograd
from eg3d_core.networks import layers


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _force_chunks(monkeypatch: pytest.MonkeyPatch, chunked: bool) -> None:
    """With ``chunked``, even small images take the fused path, in chunks of a few tiles (the last one partial)."""
    if chunked:
        monkeypatch.setattr(winograd, "WHOLE_BYTES", 0)
        monkeypatch.setattr(winograd, "CHUNK_BYTES", 3 << 14)


def test_kernels_are_available_here():
    from test_native import X86_AVX2

    assert (winograd.library() is not None) == X86_AVX2


# F(2x2, 3x3) on any shape; F(3x3, 3x3) on the layers it serves, from 128 channels (its error does not shrink with
# fewer channels as the direct convolution's does), with edges of every remainder modulo 3.
@pytest.mark.parametrize(("tile", "channels_in", "channels_out", "height", "width", "bias"),
                         [(2, 16, 24, 17, 23, True), (2, 128, 128, 32, 32, False), (2, 8, 8, 2, 3, True),
                          (2, 24, 8, 1, 1, False), (2, 64, 64, 40, 36, True), (3, 128, 128, 32, 32, False),
                          (3, 128, 136, 31, 25, True),
                          (3, 256, 128, 17, 16, True)])
@pytest.mark.parametrize("chunked", [False, True])  # in three passes; in small chunks, tile ranges on two threads
def test_matches_the_direct_convolution_in_float64(tile, channels_in, channels_out, height, width, bias, chunked,
                                                   monkeypatch):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    _force_chunks(monkeypatch, chunked)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, channels_in, height, width))
    w = _channels_last(torch.randn(channels_out, channels_in, 3, 3) / (3 * channels_in ** 0.5))
    b = torch.randn(channels_out) if bias else None
    exact = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)
    try:
        got = winograd.conv3x3(x, w, b, size=tile)
    finally:
        torch.set_num_threads(threads)
    direct = F.conv2d(x, w, b, padding=1)
    assert got.shape == exact.shape and got.is_contiguous(memory_format=torch.channels_last)
    # Within twice float32's direct convolution's error (plus an ulp or two): F(2x2, 3x3) is several times below it.
    err, err_direct = (got.double() - exact).abs().max().item(), (direct.double() - exact).abs().max().item()
    assert err <= 2 * err_direct + 1e-6


def test_synthesis_layer_same_with_and_without(monkeypatch):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    layer = layers.SynthesisLayer(128, 128, 64, 32, up=False, conv_clamp=256, noise_buffer=True)
    with torch.no_grad():
        layer.noise_strength.fill_(0.1)
        x = _channels_last(torch.randn(1, 128, 32, 32))
        w = torch.randn(1, 64)
        assert winograd.use_winograd(x, layer.weight)
        fast = layer(x, w, "const")
        monkeypatch.setattr(winograd, "use_winograd", lambda x, w: False)
        direct = layer(x, w, "const")
    # Both within float32 rounding of the exact convolution (see above), relative to the outputs' magnitude.
    torch.testing.assert_close(fast, direct, atol=1e-4 * (1 + direct.abs().max().item()), rtol=0)


def test_not_used_where_it_does_not_pay_or_cannot_work():
    x = _channels_last(torch.randn(1, 128, 32, 32))
    w = torch.randn(128, 128, 3, 3)
    assert not winograd.use_winograd(x[:, :64], w[:64, :64])  # narrow layers: oneDNN's direct kernel
    wide_64 = _channels_last(torch.randn(1, 64, 256, 256))
    assert winograd.use_winograd(wide_64, w[:64, :64])  # ... except on large images (AFHQ's super-resolution)
    assert winograd.tile_size(wide_64, w[:64, :64]) == 2 and winograd.tile_size(x, w) == 3  # small tiles below 128
    assert winograd.use_winograd_up(_channels_last(torch.randn(1, 128, 256, 256)), w[:64])
    assert not winograd.use_winograd_up(x, w[:64])  # 64 output channels at 32 px
    assert not winograd.use_winograd(x[:, :, :8, :8].contiguous(memory_format=torch.channels_last), w)  # small maps
    assert not winograd.use_winograd(x.contiguous(), w)  # NCHW
    assert not winograd.use_winograd(torch.cat([x, x]), w)  # a batch
    assert winograd.use_winograd_up(x, w)
    assert not winograd.use_winograd_up(x[:, :, :8, :8].contiguous(memory_format=torch.channels_last), w)  # 8 px
    assert not winograd.use_winograd(x.requires_grad_(), w)  # autograd


@pytest.mark.parametrize("tile", [2, 3, 6])
def test_fused_noise_activation_and_clamp_match_the_separate_operations(tile):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, 16, 10, 14))
    w = _channels_last(torch.randn(24, 16, 3, 3) / 12)
    b, noise = torch.randn(24), torch.randn(10, 14)
    plain = winograd.conv3x3(x, w, b, size=tile)
    expected = torch.clamp(F.leaky_relu(plain + noise, 0.2), -0.5, 0.5)
    got = winograd.conv3x3(x, w, b, noise=noise, slope=0.2, limit=0.5, size=tile)
    assert torch.equal(got, expected)  # same roundings, bit for bit
    assert (got.abs() == 0.5).any() and (got < 0).any()  # the clamp and the negative slope were exercised


@pytest.mark.parametrize(("channels_in", "channels_out", "height", "width"),
                         [(16, 24, 5, 7), (128, 128, 16, 16), (8, 8, 1, 1), (32, 8, 6, 2), (16, 8, 4, 3),
                          (128, 64, 19, 20)])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("tile", [2, 3])  # input positions per tile side: F(2x2, 2x2) or F(3x3, 2x2) per phase
def test_transposed_up_convolution_matches_float64(channels_in, channels_out, height, width, chunked, tile,
                                                   monkeypatch):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    _force_chunks(monkeypatch, chunked)
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, channels_in, height, width))
    w = torch.randn(channels_out, channels_in, 3, 3) / (3 * channels_in ** 0.5)  # convolution-shaped [O, I, 3, 3]
    exact = F.conv_transpose2d(x.double(), w.double().transpose(0, 1), stride=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = winograd.conv_transpose3x3_up(x, w, size=tile)
    finally:
        torch.set_num_threads(threads)
    direct = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    assert got.shape == exact.shape == (1, channels_out, 2 * height + 1, 2 * width + 1)
    err, err_direct = (got.double() - exact).abs().max().item(), (direct.double() - exact).abs().max().item()
    assert err <= 2 * err_direct + 1e-6


def test_upsampling_layer_same_with_and_without(monkeypatch):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    layer = layers.SynthesisLayer(64, 128, 64, 64, up=True, conv_clamp=None, noise_buffer=True)
    with torch.no_grad():
        layer.noise_strength.fill_(0.1)
        x = _channels_last(torch.randn(1, 64, 32, 32))
        w = torch.randn(1, 64)
        assert winograd.use_winograd_up(x, layer.weight)
        fast = layer(x, w, "const")
        monkeypatch.setattr(winograd, "use_winograd_up", lambda x, w: False)
        direct = layer(x, w, "const")
    assert fast.shape == (1, 128, 64, 64)
    torch.testing.assert_close(fast, direct, atol=1e-4 * (1 + direct.abs().max().item()), rtol=0)  # as above


@pytest.mark.parametrize("up", [False, True])
def test_a_batch_takes_the_winograd_path_image_by_image(up, monkeypatch):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    layer = layers.SynthesisLayer(128, 128, 64, 64, up=up, conv_clamp=256, noise_buffer=True)
    with torch.no_grad():
        layer.noise_strength.fill_(0.1)
        x = _channels_last(torch.randn(3, 128, 32 if up else 64, 32 if up else 64))
        w = torch.randn(3, 64)
        assert (winograd.use_winograd_up if up else winograd.use_winograd)(x[:1], layer.weight)
        fast = layer(x, w, "const")
        monkeypatch.setattr(winograd, "use_winograd", lambda x, w: False)
        monkeypatch.setattr(winograd, "use_winograd_up", lambda x, w: False)
        batched = layer(x, w, "const")  # the plain batch path: shared-weight convolution, per-image scales
    assert fast.shape == batched.shape == (3, 128, 64, 64)
    torch.testing.assert_close(fast, batched, atol=1e-4 * (1 + batched.abs().max().item()), rtol=0)  # as above


@pytest.mark.parametrize(("kind", "channels_in", "channels_out", "size"),
                         [(kind, *case) for kind in ("F(2x2,3x3)", "F(3x3,3x3)", "up F(2x2,2x2)", "up F(3x3,2x2)")
                          for case in ((128, 136, (20, 18)), (256, 128, (128, 128)))])
def test_modulated_and_demodulated_matches_float64(kind, channels_in, channels_out, size):
    """Styles scale the input transform, demodulation and gain the output transform, around the raw weight's filters:
    still no worse than float32's direct convolution of the modulated weight. The second case is the backbone's
    b256 upsampling layer, where oneDNN's transposed convolution is unusually exact (1e-6) and the products' long sums
    over 256 channels must be split to stay within the bound."""
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, channels_in, *size))
    w = torch.randn(channels_out, channels_in, 3, 3)
    styles = torch.rand(channels_in) * 2 + 0.1
    gain = 2 ** 0.5
    wd = w.double() * styles.double().reshape(1, -1, 1, 1)
    wd = wd * (wd.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain
    wf = w * styles.reshape(1, -1, 1, 1)
    wf = wf * (wf.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain
    if kind.startswith("up"):
        exact = F.conv_transpose2d(x.double(), wd.transpose(0, 1), stride=2)
        direct = F.conv_transpose2d(x, wf.transpose(0, 1), stride=2)
        got = winograd.conv_transpose3x3_up(x, w, styles, True, gain, size=2 if "2x2,2x2" in kind else 3)
    else:
        exact = F.conv2d(x.double(), wd, padding=1)
        direct = F.conv2d(x, wf, padding=1)
        got = winograd.conv3x3(x, w, styles=styles, demodulate=True, gain=gain, size=2 if kind == "F(2x2,3x3)" else 3)
    assert got.shape == exact.shape
    err, err_direct = (got.double() - exact).abs().max().item(), (direct.double() - exact).abs().max().item()
    assert err <= 2 * err_direct + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f3x3_sums_128_channels_in_short_runs(seed):
    """F(3x3, 3x3) on a strongly modulated 128-channel layer: its products' rounding, amplified by the output
    transform, dominates its error; summed 64 input channels at a time it reached 2.05x the direct convolution's error
    for these inputs, summed 32 at a time (``products_run``) 0.7-1.2x. Bound: 1.5x."""
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(seed)
    x = _channels_last(torch.randn(1, 128, 20, 18))
    w, styles, gain = torch.randn(136, 128, 3, 3), torch.rand(128) * 2 + 0.1, 2 ** 0.5
    wd = w.double() * styles.double().reshape(1, -1, 1, 1)
    wd = wd * (wd.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain
    wf = w * styles.reshape(1, -1, 1, 1)
    wf = wf * (wf.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain
    exact = F.conv2d(x.double(), wd, padding=1)
    got = winograd.conv3x3(x, w, styles=styles, demodulate=True, gain=gain, size=3)
    err, err_direct = (got.double() - exact).abs().max().item(), (F.conv2d(x, wf, padding=1).double() - exact).abs().max().item()
    assert err <= 1.5 * err_direct


@pytest.mark.parametrize(("up", "tile"), [(False, 2), (False, 3), (False, 6), (True, 2), (True, 3)])
def test_cached_filters_are_reused_until_the_weight_changes(up, tile):
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, 32, 12, 12))
    w = torch.nn.Parameter(torch.randn(16, 32, 3, 3))
    styles = torch.rand(32) + 0.5

    def conv(cache: dict | None) -> torch.Tensor:
        with torch.no_grad():
            if up:
                return winograd.conv_transpose3x3_up(x, w, styles, True, 1.5, cache, size=tile)
            return winograd.conv3x3(x, w, styles=styles, demodulate=True, gain=1.5, cache=cache, size=tile)

    cache: dict = {}
    first = conv(cache)
    (entry,) = cache.values()
    assert torch.equal(conv(cache), first) and next(iter(cache.values())) is entry  # reused, same result
    assert torch.equal(first, conv(None))
    with torch.no_grad():
        w.mul_(-0.5)  # changed in place (as load_state_dict does)
    changed = conv(cache)
    assert next(iter(cache.values())) is not entry
    assert torch.equal(changed, conv(None)) and not torch.allclose(changed, first)


# F(6x6, 3x3), reduced precision only: edges of several remainders modulo 6, modulated and demodulated or not.
@pytest.mark.parametrize(("channels_in", "channels_out", "height", "width", "modulated"),
                         [(128, 136, 31, 25, True), (64, 64, 20, 18, False), (256, 128, 17, 16, True),
                          (8, 16, 7, 5, False)])
@pytest.mark.parametrize("chunked", [False, True])
def test_f6x6_stays_within_2e_5_of_the_outputs_largest_magnitude(channels_in, channels_out, height, width, modulated, chunked,
                                                        monkeypatch):
    """Its transforms' coefficients (up to 21/4 and 32) amplify rounding: measured 3-7e-6 of the outputs' largest
    magnitude against float64 (5-9x the direct float32 convolution's error from 64 channels, 25x with 8, where the
    direct one is nearly exact). Bound: 2e-5 of it, a hundred times below bfloat16's rounding alone (2^-9); a wrong
    coefficient gives errors of the size of the outputs."""
    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    _force_chunks(monkeypatch, chunked)
    torch.manual_seed(0)
    x = _channels_last(torch.randn(1, channels_in, height, width))
    w = torch.randn(channels_out, channels_in, 3, 3)
    styles = torch.rand(channels_in) * 2 + 0.1 if modulated else torch.ones(channels_in)
    b, gain = torch.randn(channels_out), 2 ** 0.5
    wd = w.double() * styles.double().reshape(1, -1, 1, 1)
    wd = wd * (wd.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt() * gain
    exact = F.conv2d(x.double(), wd, b.double(), padding=1)
    got = winograd.conv3x3(x, w, b, styles=styles, demodulate=True, gain=gain, size=6)
    assert got.shape == exact.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert (got.double() - exact).abs().max().item() <= 2e-5 * exact.abs().max().item()


def test_reduced_precision_picks_f6x6_in_its_context_only():
    x, w = _channels_last(torch.randn(1, 128, 64, 64)), torch.randn(128, 128, 3, 3)
    wide_64, narrow = _channels_last(torch.randn(1, 64, 128, 128)), w[:64, :64]
    assert winograd.tile_size(x, w) == 3 and not winograd.use_winograd(wide_64, narrow)
    seen = []
    with winograd.reduced_precision():
        assert winograd.tile_size(x, w) == 6
        assert winograd.use_winograd(wide_64, narrow) and winograd.tile_size(wide_64, narrow) == 6
        assert winograd.tile_size(x[:, :, :32, :32], w) == 3  # small images keep F(3x3, 3x3)
        assert winograd.tile_size(_channels_last(torch.randn(1, 64, 64, 64)), narrow) == 2
        thread = threading.Thread(target=lambda: seen.append(winograd.tile_size(x, w)))  # another thread: its own
        thread.start()
        thread.join()
    assert seen == [3] and winograd.tile_size(x, w) == 3  # and left on exit
