"""Generator API behaviour beyond fixture parity: batching, round trips, randomness, precision, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FIXTURES, reference

import eg3d_core
from eg3d_core import load_generator, save_generator


def _inputs(name: str):
    ref = reference(name)
    return ref, torch.from_numpy(ref["z"]), torch.from_numpy(ref["c_cond"]), torch.from_numpy(ref["c_render"])


def test_batch_size_independence(cars_generator):
    """Element 1 rendered alone equals element 1 of the batch of two (op-order rounding only; the original
    shows up to 3e-6 for the same comparison, so 1e-4 leaves room without hiding a real batch dependency)."""
    G = cars_generator
    _, z, c_cond, c_render = _inputs("tiny_cars128")
    with torch.no_grad():
        ws = G.mapping(z, c_cond, 0.7)
        both = G.synthesis(ws, c_render)
        one = G.synthesis(ws[1:], c_render[1:])
    for key in both:
        assert torch.allclose(both[key][1:], one[key], atol=1e-4, rtol=0), key


def test_save_load_round_trip_is_bit_identical(cars_generator, tmp_path):
    G = cars_generator
    save_generator(G, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "model" / "config.json").is_file()
    for source in (tmp_path / "model", tmp_path / "model" / "model.safetensors"):
        G2 = load_generator(source)
        assert G2.config == G.config
        _, z, c_cond, c_render = _inputs("tiny_cars128")
        with torch.no_grad():
            a = G(z, c_render, 0.7)
            b = G2(z, c_render, 0.7)
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_cached_planes_equal_synthesis(cars_generator):
    G = cars_generator
    _, z, c_cond, c_render = _inputs("tiny_cars128")
    with torch.no_grad():
        ws = G.mapping(z, c_cond)
        a = G.synthesis(ws, c_render)
        b = G.render_planes(G.planes(ws), ws, c_render)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_stochastic_rendering_reproduces_original_draws(cars_generator):
    """With the same torch seeds, our stochastic sampler consumes the RNG like the original: the mean final image
    over the fixtures' four draws matches to float precision (1e-5 on a mean of 24k pixels)."""
    G = cars_generator
    ref, z, c_cond, c_render = _inputs("tiny_cars128")
    images = []
    with torch.no_grad():
        ws = G.mapping(z, c_cond, 0.7, 14)
        planes = G.planes(ws)
        det = G.render_planes(planes, ws, c_render)["image"]
        for k in range(4):
            torch.manual_seed(1000 + k)
            images.append(G.render_planes(planes, ws, c_render, deterministic=False)["image"])
    images = torch.stack(images)
    assert np.abs(images.mean(dim=(0, 2, 3, 4)).numpy() - ref["stoch4_image_mean_scalar"]).max() < 1e-5
    spread = images.std(dim=0).mean(dim=(1, 2, 3)).numpy()
    assert np.abs(spread - ref["stoch4_image_std_over_draws_mean"]).max() < 1e-5
    assert (images[0] - det).abs().max() > 1e-3  # stochastic really differs from deterministic


def test_stochastic_raw_statistics_match_original():
    """AFHQ (8X SR: the official image_raw is the true raw render): per-pixel mean/std over the four draws."""
    G = load_generator(FIXTURES / "tiny_afhq512" / "network-snapshot.pkl")
    ref, z, c_cond, c_render = _inputs("tiny_afhq512")
    raws = []
    with torch.no_grad():
        ws = G.mapping(z, c_cond, 0.7, 14)
        planes = G.planes(ws)
        for k in range(4):
            torch.manual_seed(1000 + k)
            raws.append(G.render(planes, c_render, deterministic=False)[0][:, :3])
    raws = torch.stack(raws)
    assert np.abs(raws.mean(0).numpy() - ref["stoch4_image_raw_mean"]).max() < 1e-4
    assert np.abs(raws.std(0).numpy() - ref["stoch4_image_raw_std"]).max() < 1e-4


def test_truncation_cutoff_semantics(cars_generator):
    G = cars_generator
    _, z, c_cond, _ = _inputs("tiny_cars128")
    with torch.no_grad():
        plain = G.mapping(z, c_cond)
        none = G.mapping(z, c_cond, 0.5, truncation_cutoff=0)
        some = G.mapping(z, c_cond, 0.5, truncation_cutoff=3)
        full = G.mapping(z, c_cond, 0.5)
    w_avg = G.backbone.mapping.w_avg
    assert torch.equal(none, plain)
    assert torch.allclose(full, w_avg + 0.5 * (plain - w_avg), atol=1e-6)
    assert torch.equal(some[:, :3], full[:, :3]) and torch.equal(some[:, 3:], plain[:, 3:])


@pytest.mark.parametrize(("dtype", "min_psnr", "min_psnr_raw", "max_depth_error"),
                         [(torch.bfloat16, 35, 40, 0.05), (torch.float16, 53, 58, 0.01)])
def test_reduced_precision_close_to_fp32(cars_generator, dtype, min_psnr, min_psnr_raw, max_depth_error):
    """bfloat16 (reduced precision on CPUs with native bfloat16) keeps 8 mantissa bits (relative rounding 2^-9);
    through ~20 layers that costs a few grey levels. Bound: PSNR >= 35 dB on the final image (RMS error under 2.3/255
    of the [-1, 1] range), >= 40 dB on the raw render, depth within 0.05 world units (the scene is ~1 unit deep).
    Measured: ~42-46 dB, ~57-59 dB, 0.007-0.01. float16 (reduced precision on CUDA) runs here through CPU autocast,
    whose op lists differ in places from CUDA's: it checks that the model's activations stay in float16's range
    (the clamps) without a GPU. It keeps 11 bits (2^-12), 8x finer: bounds 18 dB higher, depth within 0.01.
    Measured: ~65 dB, ~76 dB, 0.0007."""
    G = cars_generator
    _, z, c_cond, c_render = _inputs("tiny_cars128")
    G.reduced_dtype = dtype  # force it: on CPUs without native bf16 "reduced" would compute in float32
    try:
        with torch.no_grad():
            ws = G.mapping(z, c_cond, 0.7)
            a = G.synthesis(ws, c_render, neural_rendering_resolution=32)
            b = G.synthesis(ws, c_render, neural_rendering_resolution=32, precision="reduced")
    finally:
        G.reduced_dtype = None

    def psnr(x, y):
        return float(10 * torch.log10(4 / ((x - y) ** 2).mean()))

    assert psnr(a["image"], b["image"]) >= min_psnr
    assert psnr(a["image_raw"], b["image_raw"]) >= min_psnr_raw
    assert (a["image_depth"] - b["image_depth"]).abs().max() <= max_depth_error
    assert not torch.equal(a["image"], b["image"])  # it really ran in reduced precision
    assert all(v.dtype == torch.float32 for v in b.values())  # outputs in float32 whatever the compute dtype


def test_super_resolution_precision_can_differ(cars_generator):
    """``sr_precision`` sets the super-resolution's precision apart from the other stages' (bfloat16 forced so that
    the two precisions really differ on any CPU): the same as running the stages one by one."""
    G = cars_generator
    _, z, c_cond, c_render = _inputs("tiny_cars128")
    G.reduced_dtype = torch.bfloat16
    try:
        with torch.no_grad():
            ws = G.mapping(z, c_cond, 0.7)
            mixed = G.synthesis(ws, c_render, neural_rendering_resolution=32, precision="reduced", sr_precision="fp32")
            planes = G.planes(ws, precision="reduced")
            features, depth = G.render(planes, c_render, 32, precision="reduced")
            by_stage = G.super_resolve(features, ws, "fp32")
            reduced = G.synthesis(ws, c_render, neural_rendering_resolution=32, precision="reduced")
    finally:
        G.reduced_dtype = None
    assert torch.equal(mixed["image"], by_stage) and torch.equal(mixed["image_depth"], depth)
    assert torch.equal(mixed["image_raw"], reduced["image_raw"])  # the stages before it: reduced either way
    assert not torch.equal(mixed["image"], reduced["image"])
    with pytest.raises(ValueError, match="precision must be one of"):
        G.synthesis(ws, c_render, neural_rendering_resolution=32, sr_precision="fp16")


def test_reduced_precision_in_float32_takes_the_larger_tiles():
    """Where "reduced" computes in float32 (CPUs without native bfloat16), its 3x3 convolutions on the larger images
    take F(6x6, 3x3) (kernels.winograd.reduced_precision): a different result, but still within the float32 parity
    bound (1e-4 on [-1, 1] images; measured 0.2-3e-6 here, since each such layer stays within ~1e-5 of its outputs'
    magnitude). The model: 64-channel layers on 128 px planes and a 128 px super-resolution, which qualify."""
    from eg3d_core.config import GeneratorConfig, RenderingConfig
    from eg3d_core.kernels import winograd

    if winograd.library() is None:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    torch.manual_seed(0)
    config = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=128, channel_base=8192, channel_max=64,
                             triplane_resolution=128, triplane_channels=16, sr_module="2X", sr_channels=(64, 64),
                             rendering=RenderingConfig(depth_resolution=8, depth_resolution_importance=8,
                                                       neural_rendering_resolution=64))
    G = eg3d_core.Generator(config)
    G.reduced_dtype = torch.float32
    c = eg3d_core.cameras.camera(eg3d_core.cameras.camera_defaults(config), yaw=0.3, pitch=-0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 64), c, 0.7)
        a, b = G.synthesis(ws, c), G.synthesis(ws, c, precision="reduced")
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-4, key
    assert not torch.equal(a["image"], b["image"]) and not torch.equal(a["image_raw"], b["image_raw"])


def test_channels_last_and_plain_layout_agree(cars_generator):
    G = cars_generator
    _, z, c_cond, c_render = _inputs("tiny_cars128")
    with torch.no_grad():
        ws = G.mapping(z, c_cond)
        a = G.synthesis(ws, c_render)
        b = G.set_memory_format(torch.contiguous_format).synthesis(ws, c_render)
        G.set_memory_format(None)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=0), key


@pytest.mark.parametrize("call, message", [
    (lambda G: G.mapping(torch.zeros(1, 3), torch.zeros(1, 25)), "z must have shape [N, 64]"),
    (lambda G: G.mapping(torch.zeros(2, 64), torch.zeros(1, 25)), "c must have shape [2, 25]"),
    (lambda G: G.planes(torch.zeros(1, 5, 512)), "ws must have shape [N, 14, 512]"),
    (lambda G: G.planes(torch.zeros(1, 14, 512), noise_mode="loud"), "noise_mode must be one of"),
    (lambda G: G.planes(torch.zeros(1, 14, 512), precision="fp8"), "precision must be one of"),
])
def test_bad_input_gets_one_line_error(cars_generator, call, message):
    with pytest.raises(ValueError) as err:
        call(cars_generator)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_public_attributes(cars_generator):
    G = cars_generator
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution) == (64, 25, 512, 14, 128)
    assert isinstance(G.config, eg3d_core.GeneratorConfig)
