"""MMagic EG3D checkpoints and configs: reading, writing, config parsing and refusal of bad input."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from eg3d_core.checkpoints.mmagic import (
    config_from_mmagic,
    infer_channel_base_max,
    looks_like_torch_zip,
    parse_mmagic_camera,
    parse_mmagic_config,
    read_mmagic,
    write_mmagic,
)
from eg3d_core.errors import CheckpointError
from eg3d_core.presets import PRESETS

FIXTURES = Path(__file__).parent / "fixtures"
CONFIGS = FIXTURES / "mmagic_configs" / "eg3d"
FFHQ_CFG = CONFIGS / "eg3d_cvt-official-rgb_ffhq-512x512.py"
AFHQ_CFG = CONFIGS / "eg3d_cvt-official-rgb_afhq-512x512.py"
SHAPENET_CFG = CONFIGS / "eg3d_cvt-official-rgb_shapenet-128x128.py"
TINY = ["tiny_cars128", "tiny_ffhq512"]


def _pth(name: str) -> Path:
    return FIXTURES / name / "mmagic.pth"


def _raw(path: Path) -> OrderedDict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _official_keys(mapping_layers: int, sr_noise_free: bool = True) -> set[str]:
    """Official G_ema names of a 256 backbone, minus resample_filter / SR noise_const / dataset_label_std.

    Written out independently of the module's table, from the official naming scheme.
    """
    keys = {"backbone.mapping.embed.weight", "backbone.mapping.embed.bias", "backbone.mapping.w_avg"}
    keys |= {f"backbone.mapping.fc{i}.{p}" for i in range(mapping_layers) for p in ("weight", "bias")}
    layer = ("weight", "bias", "noise_strength", "noise_const", "affine.weight", "affine.bias")
    sr_layer = tuple(p for p in layer if p != "noise_const") if sr_noise_free else layer
    rgb = ("weight", "bias", "affine.weight", "affine.bias")
    keys.add("backbone.synthesis.b4.const")
    keys |= {f"backbone.synthesis.b4.conv1.{p}" for p in layer}
    keys |= {f"backbone.synthesis.b4.torgb.{p}" for p in rgb}
    for res in (8, 16, 32, 64, 128, 256):
        for conv in ("conv0", "conv1"):
            keys |= {f"backbone.synthesis.b{res}.{conv}.{p}" for p in layer}
        keys |= {f"backbone.synthesis.b{res}.torgb.{p}" for p in rgb}
    keys |= {f"decoder.net.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    for block in ("block0", "block1"):
        for conv in ("conv0", "conv1"):
            keys |= {f"superresolution.{block}.{conv}.{p}" for p in sr_layer}
        keys |= {f"superresolution.{block}.torgb.{p}" for p in rgb}
    return keys


# ---------------------------------------------------------------------------------------------------- reading


def test_looks_like_torch_zip() -> None:
    assert looks_like_torch_zip(_pth("tiny_cars128").read_bytes()[:8])
    assert not looks_like_torch_zip(b"\x80\x02}q\x00")  # a legacy (non-zip) pickle
    assert not looks_like_torch_zip(b"PK")


@pytest.mark.parametrize("name", TINY)
def test_read_fixture_keys_and_shapes(name: str) -> None:
    sd, _ = read_mmagic(_pth(name))
    # 160 (cars) / 162 (ffhq) MMagic tensors minus 14 / 16 constant kernels.
    assert len(sd) == 146
    assert set(sd) == _official_keys(mapping_layers=2)
    assert all(t.dtype == torch.float32 for t in sd.values())
    expected = {
        "backbone.synthesis.b4.const": (32, 4, 4),
        "backbone.synthesis.b4.conv1.noise_const": (4, 4),
        "backbone.synthesis.b4.conv1.noise_strength": (),
        "backbone.synthesis.b4.torgb.bias": (96,),
        "backbone.synthesis.b4.torgb.weight": (96, 32, 1, 1),
        "backbone.synthesis.b256.conv0.weight": (16, 32, 3, 3),
        "backbone.synthesis.b256.conv1.noise_const": (256, 256),
        "backbone.mapping.fc0.weight": (512, 64 + 512),
        "backbone.mapping.embed.weight": (512, 25),
        "decoder.net.2.weight": (33, 64),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    sr = (256, 128) if name == "tiny_ffhq512" else (128, 64)
    assert tuple(sd["superresolution.block0.conv0.weight"].shape) == (sr[0], 32, 3, 3)
    assert tuple(sd["superresolution.block1.torgb.weight"].shape) == (3, sr[1], 1, 1)


@pytest.mark.parametrize("name", TINY)
def test_read_values_follow_the_mapping(name: str) -> None:
    sd, _ = read_mmagic(_pth(name))
    raw = _raw(_pth(name))
    pairs = {
        "generator.backbone.constant_input.input": "backbone.synthesis.b4.const",
        "generator.backbone.injected_noise_3": "backbone.synthesis.b16.conv0.noise_const",
        "generator.backbone.injected_noise_12": "backbone.synthesis.b256.conv1.noise_const",
        "generator.backbone.convs.5.conv.weight_orig": "backbone.synthesis.b32.conv1.weight",
        "generator.backbone.to_rgbs.2.bias": "backbone.synthesis.b32.torgb.bias",
        "generator.backbone.style_mapping.1.linear.weight_orig": "backbone.mapping.fc1.weight",
        "generator.sr_model.block1.conv0.noise_injector.weight": "superresolution.block1.conv0.noise_strength",
    }
    for mm, off in pairs.items():
        assert torch.equal(raw[mm].flatten(), sd[off].flatten()), off


@pytest.mark.parametrize("name", TINY)
def test_inferred_arch_matches_fixture_config(name: str) -> None:
    kw = json.loads((FIXTURES / name / "config.json").read_text())["init_kwargs"]
    _, arch = read_mmagic(_pth(name))
    assert arch["z_dim"] == kw["z_dim"] == 64
    assert arch["w_dim"] == kw["w_dim"]
    assert arch["c_dim"] == kw["c_dim"]
    assert arch["mapping_layers"] == kw["mapping_kwargs"]["num_layers"]
    assert (arch["channel_base"], arch["channel_max"]) == (kw["channel_base"], kw["channel_max"]) == (4096, 32)
    assert arch["img_resolution"] == kw["img_resolution"]
    module = kw["rendering_kwargs"]["superresolution_module"].rsplit("Hybrid", 1)[1]
    assert arch["sr_module"] == module
    assert arch["sr_channels"] == {"2X": (128, 64), "8XDC": (256, 128)}[module]
    assert arch["triplane_resolution"] == 256 and arch["triplane_channels"] == 32
    assert arch["zero_cond"] is None


def test_channel_base_inference_released_widths() -> None:
    released = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    assert infer_channel_base_max(released) == (32768, 512)
    # No unclamped block: the smallest base that keeps every block at the maximum.
    assert infer_channel_base_max({4: 32, 8: 32, 16: 32}) == (512, 32)
    with pytest.raises(CheckpointError):
        infer_channel_base_max({4: 32, 8: 32, 16: 8, 32: 16})  # widths grow again: no StyleGAN2 table


def test_config_from_mmagic_presets_and_base() -> None:
    _, arch = read_mmagic(_pth("tiny_cars128"))
    cfg = config_from_mmagic(arch)
    preset = PRESETS["shapenetcars128-64"]
    assert cfg.rendering == preset.rendering
    assert (cfg.z_dim, cfg.channel_base, cfg.channel_max, cfg.sr_module, cfg.img_resolution) == (64, 4096, 32, "2X", 128)
    assert cfg.sr_conv_clamp is None and cfg.sr_noise_mode == "none"

    base = parse_mmagic_config(SHAPENET_CFG)
    cfg = config_from_mmagic(arch, base)
    assert cfg.mapping_layers == 2  # weights win over the config's 8
    assert cfg.rendering.ray_start == 0.4 and cfg.sr_noise_mode == "random"

    _, ffhq_arch = read_mmagic(_pth("tiny_ffhq512"))
    assert config_from_mmagic(ffhq_arch).rendering == PRESETS["ffhq512-128"].rendering
    with pytest.raises(CheckpointError) as err:
        config_from_mmagic(arch, parse_mmagic_config(FFHQ_CFG))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("name", TINY)
def test_round_trip_and_real_layout(name: str, tmp_path: Path) -> None:
    sd, arch = read_mmagic(_pth(name))
    out = tmp_path / "sub" / "written.pth"
    write_mmagic(sd, config_from_mmagic(arch), out)
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary file left behind

    sd2, arch2 = read_mmagic(out)
    assert arch2 == arch
    assert sd2.keys() == sd.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)

    # The writer reproduces MMagic's real file: same keys in the same order, same values (kernels included).
    fixture, written = _raw(_pth(name)), _raw(out)
    assert list(written) == list(fixture)
    for key in fixture:
        assert written[key].shape == fixture[key].shape and torch.equal(written[key], fixture[key]), key
    meta = torch.load(out, map_location="cpu", weights_only=True)["meta"]
    assert meta["mmagic_version"] == "1.2.0"


def test_writer_accepts_and_drops_official_only_tensors(tmp_path: Path) -> None:
    sd, arch = read_mmagic(_pth("tiny_cars128"))
    extra = dict(sd)
    extra["backbone.synthesis.b8.resample_filter"] = torch.ones(4, 4)
    extra["superresolution.block1.conv0.noise_const"] = torch.zeros(128, 128)
    extra["dataset_label_std"] = torch.ones(25)
    write_mmagic(extra, config_from_mmagic(arch), tmp_path / "a.pth")
    assert len(_raw(tmp_path / "a.pth")) == 160


def test_writer_rejects_bad_state_dicts(tmp_path: Path) -> None:
    sd, arch = read_mmagic(_pth("tiny_cars128"))
    cfg = config_from_mmagic(arch)
    bad_cases = [
        {k: v for k, v in sd.items() if k != "decoder.net.0.bias"},
        {**sd, "backbone.mapping.fc2.weight": torch.zeros(512, 512)},
        {**sd, "decoder.net.0.bias": torch.zeros(65)},
    ]
    for bad in bad_cases:
        with pytest.raises(CheckpointError) as err:
            write_mmagic(bad, cfg, tmp_path / "bad.pth")
        assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------- bad files


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        read_mmagic(path)
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_rejects_non_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(b"not a checkpoint at all")
    assert "not a torch zip" in _error(path)
    assert "cannot read" in _error(tmp_path / "missing.pth")
    zipped = tmp_path / "z.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 100)  # zip magic, broken archive
    assert "cannot load" in _error(zipped)


def test_rejects_file_without_generator(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    torch.save({"meta": {}, "state_dict": {"discriminator.w": torch.zeros(2)}}, path)
    assert "no 'generator.'" in _error(path)
    torch.save([torch.zeros(2)], path)
    assert "not a dict" in _error(path)


def test_rejects_unsafe_pickle(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    # weights_only refuses arbitrary objects (here a pathlib global); the error stays one line.
    torch.save({"state_dict": {}, "payload": Path("/tmp")}, path)
    assert "cannot load" in _error(path)


def _modified(tmp_path: Path, change: str) -> Path:
    obj = torch.load(_pth("tiny_cars128"), map_location="cpu", weights_only=True)
    sd = obj["state_dict"]
    if change == "shape":
        sd["generator.backbone.convs.3.conv.weight_orig"] = torch.zeros(1, 32, 32, 3, 4)
    elif change == "missing":
        del sd["generator.renderer.decoder.net.2.bias"]
    elif change == "unexpected":
        sd["generator.backbone.bogus"] = torch.zeros(1)
    elif change == "kernel":
        sd["generator.backbone.convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    elif change == "module-ema":
        # DataParallel prefix + an EMA copy that must win over the plain generator.
        ema = OrderedDict((k.replace("generator.", "module.generator_ema.", 1), v.clone()) for k, v in sd.items())
        ema["module.generator_ema.backbone.w_avg"] += 1.0
        sd.update(ema)
    path = tmp_path / f"{change}.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("change,needle", [
    ("shape", "shape"), ("missing", "missing 1 key"), ("unexpected", "unexpected"), ("kernel", "kernel"),
])
def test_rejects_malformed_state_dict(tmp_path: Path, change: str, needle: str) -> None:
    assert needle in _error(_modified(tmp_path, change))


def test_prefers_ema_and_strips_module(tmp_path: Path) -> None:
    sd, _ = read_mmagic(_modified(tmp_path, "module-ema"))
    ref, _ = read_mmagic(_pth("tiny_cars128"))
    assert torch.equal(sd["backbone.mapping.w_avg"], ref["backbone.mapping.w_avg"] + 1.0)


# ---------------------------------------------------------------------------------------------------- configs


def test_parse_shapenet_config() -> None:
    cfg = parse_mmagic_config(SHAPENET_CFG)
    assert cfg.mapping_layers == 8  # MMagic's default, not set in the file
    assert (cfg.z_dim, cfg.w_dim, cfg.c_dim) == (512, 512, 25)
    assert (cfg.channel_base, cfg.channel_max) == (32768, 512)
    assert (cfg.sr_module, cfg.sr_channels, cfg.img_resolution) == ("2X", (128, 64), 128)
    assert cfg.sr_noise_mode == "random" and cfg.sr_conv_clamp is None
    r = cfg.rendering
    assert (r.ray_start, r.ray_end, r.box_warp) == (0.4, 2.0, 1.7)
    assert (r.depth_resolution, r.depth_resolution_importance, r.neural_rendering_resolution) == (64, 64, 64)
    assert r.white_back is True and r.c_gen_conditioning_zero is True and r.c_scale == 0.0
    assert (r.avg_camera_radius, r.avg_camera_pivot) == (1.2, (0.0, 0.0, 0.0))


def test_parse_ffhq_and_afhq_configs() -> None:
    ffhq = parse_mmagic_config(FFHQ_CFG)
    assert (ffhq.sr_module, ffhq.sr_channels, ffhq.img_resolution) == ("8XDC", (256, 128), 512)
    assert ffhq.mapping_layers == 2 and ffhq.sr_noise_mode == "none"
    r = ffhq.rendering
    assert r.neural_rendering_resolution == 128 and r.white_back is False
    assert (r.ray_start, r.ray_end, r.box_warp, r.depth_resolution) == (2.25, 3.3, 1.0, 48)
    assert r.avg_camera_pivot == (0.0, 0.0, 0.2) and r.avg_camera_radius == 2.7
    assert r.c_gen_conditioning_zero is False and r.c_scale == 1.0

    afhq = parse_mmagic_config(AFHQ_CFG)
    assert (afhq.sr_module, afhq.sr_channels) == ("8X", (128, 64))
    assert afhq.rendering.avg_camera_pivot == (0.0, 0.0, 0.2)  # MMagic reuses the FFHQ pivot


def test_parse_cameras() -> None:
    cam = parse_mmagic_camera(FFHQ_CFG)
    assert cam["type"] == "GaussianCamera"
    assert cam["horizontal_mean"] == pytest.approx(1.57) and cam["vertical_mean"] == pytest.approx(1.52)
    assert (cam["horizontal_std"], cam["vertical_std"], cam["radius"]) == (0.35, 0.25, 2.7)
    assert cam["fov"] == 18.837 and cam["focal"] is None and cam["up"] == (0.0, 1.0, 0.0)
    assert cam["normalized_focal"] == pytest.approx(4.26339, abs=1e-5)

    cam = parse_mmagic_camera(SHAPENET_CFG)
    assert cam["type"] == "UniformCamera" and cam["up"] == (0.0, 0.0, 1.0) and cam["look_at"] == (0.0, 0.0, 0.0)
    assert cam["vertical_mean"] == pytest.approx(3.141 / 2) and cam["normalized_focal"] == 1.025390625


def test_config_inheritance(tmp_path: Path) -> None:
    child = tmp_path / "child.py"
    child.write_text(
        f"_base_ = [{str(SHAPENET_CFG)!r}, 'mmagic::missing_runtime.py', './not_here.py']\n"
        "model = dict(generator=dict(num_mlps=2, renderer_cfg=dict(ray_start=0.1, ray_end=2.6, box_warp=1.6)),\n"
        "             camera=dict(_delete_=True, type='GaussianCamera', radius=1.7, focal=1.7074))\n"
    )
    cfg = parse_mmagic_config(child)
    assert cfg.mapping_layers == 2 and cfg.sr_module == "2X" and cfg.rendering.c_gen_conditioning_zero
    assert (cfg.rendering.ray_start, cfg.rendering.ray_end, cfg.rendering.box_warp) == (0.1, 2.6, 1.6)
    assert cfg.rendering.depth_resolution == 64  # kept from the base's renderer_cfg
    cam = parse_mmagic_camera(child)
    assert cam["up"] == (0.0, 1.0, 0.0) and cam["radius"] == 1.7  # _delete_ dropped the base camera
    assert "_delete_" not in cam and cam["type"] == "GaussianCamera"


@pytest.mark.parametrize("source", [
    "import os\nos.system('touch {marker}')\n",
    "from os import system\n",
    "model = dict(type='EG3D', generator=open('{marker}', 'w'))\n",
    "model = dict(type='EG3D', generator=__import__('os').system('touch {marker}'))\n",
    "x = (lambda: open('{marker}', 'w'))\n",
    "x = [open('{marker}', 'w') for _ in range(1)]\n",
    "model = dict(type='EG3D', generator=dict(**{{'a': 1}}))\n",
    "model = 'a' * 10\n",
    "model = dict(type='EG3D').copy()\n",
    "def f():\n    pass\n",
    # Doubling through names: exponential size from a few lines, refused before memory runs out.
    "a = [0, 0]\n" + "a = [a, a]\n" * 40,
    "a = 'xxxxxxxxxxxxxxxx'\n" + "a = a + a\n" * 60,
])
def test_config_with_code_is_refused(tmp_path: Path, source: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.py"
    path.write_text(source.format(marker=marker))
    with pytest.raises(CheckpointError) as err:
        parse_mmagic_config(path)
    assert "\n" not in str(err.value) and "evil.py line" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("source,needle", [
    ("x = 1\n", "no 'model'"),
    ("model = dict(type='GAN')\n", "not 'EG3D'"),
    ("model = dict(type='EG3D', generator=dict(out_size=128, sr_in_size=64, renderer_cfg=dict(ray_start='auto',"
     " ray_end='auto')))\n", "ray_start"),
    ("model = dict(type='EG3D', generator=dict(out_size=128, sr_in_size=64, fancy=1,"
     " renderer_cfg=dict(ray_start=1, ray_end=2)))\n", "'fancy'"),
    ("model = dict(type='EG3D', generator=dict(out_size=96, renderer_cfg=dict(ray_start=1, ray_end=2)))\n",
     "super-resolution"),
    ("model = dict(type='EG3D', generator=dict(out_size='128', renderer_cfg=dict(ray_start=1, ray_end=2)))\n",
     "out_size"),
    ("model = dict(\n", "not valid Python"),
])
def test_bad_configs(tmp_path: Path, source: str, needle: str) -> None:
    path = tmp_path / "c.py"
    path.write_text(source)
    with pytest.raises(CheckpointError) as err:
        parse_mmagic_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_minimal_config_uses_mmagic_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.py"
    path.write_text("half = 3.14 / 2\nmodel = dict(type='EG3D', generator=dict(out_size=64 * 2,"
                    " renderer_cfg=dict(ray_start=-(-1), ray_end=half + 0.5)), camera=dict(fov=18.837))\n")
    cfg = parse_mmagic_config(path)
    assert cfg.img_resolution == 128 and cfg.mapping_layers == 8 and cfg.sr_noise_mode == "random"
    assert cfg.rendering.white_back is True and cfg.rendering.box_warp == 1.0
    assert cfg.rendering.ray_end == pytest.approx(2.07)
    assert cfg.rendering.avg_camera_radius == 1.0 and cfg.rendering.avg_camera_pivot == (0.0, 0.0, 0.0)
