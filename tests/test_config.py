"""GeneratorConfig / RenderingConfig validation: every field's type and range, checked before anything is built."""
from __future__ import annotations

import json

import pytest

import eg3d_core
from eg3d_core import PRESETS, GeneratorConfig
from eg3d_core.checkpoints import DEMO_MODEL
from eg3d_core.errors import CheckpointError, InputError


def config_dict(**changes) -> dict:
    data = GeneratorConfig().to_dict()
    rendering = changes.pop("rendering", {})
    data.update(changes)
    data["rendering"].update(rendering)
    return data


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_and_their_json_round_trip_are_valid(name) -> None:
    config = PRESETS[name]
    assert GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(("changes", "field"), [
    ({"z_dim": "64"}, "z_dim must be an integer, got '64'"),
    ({"z_dim": True}, "z_dim must be an integer"),
    ({"w_dim": 12000}, "w_dim must be an integer in [1, 4096], got 12000"),
    ({"w_dim": 0}, "w_dim must be an integer in [1, 4096], got 0"),
    ({"triplane_resolution": 32768}, "triplane_resolution must be a power of two in [8, 512], got 32768"),
    ({"triplane_resolution": 96}, "triplane_resolution must be a power of two"),
    ({"img_resolution": 500}, "img_resolution must be a power of two"),
    ({"sr_channels": [64, "x"]}, "sr_channels must be an integer"),
    ({"sr_channels": [64]}, "sr_channels must be two integers"),
    ({"sr_conv_clamp": float("nan")}, "sr_conv_clamp must be a finite number"),
    ({"sr_conv_clamp": -1.0}, "sr_conv_clamp must be above 0"),
    ({"sr_module": "16X"}, "sr_module must be one of"),
    ({"sr_antialias": "yes"}, "sr_antialias must be true or false"),
    ({"rendering": {"neural_rendering_resolution": 10**9}}, "rendering.neural_rendering_resolution must be an integer in"),
    ({"rendering": {"depth_resolution": 10**6}}, "rendering.depth_resolution must be an integer in [2, 512]"),
    ({"rendering": {"depth_resolution_importance": -1}}, "rendering.depth_resolution_importance must be an integer"),
    ({"rendering": {"ray_end": 1.0}}, "rendering.ray_end must be above 2.25, got 1"),
    ({"rendering": {"box_warp": float("inf")}}, "rendering.box_warp must be a finite number"),
    ({"rendering": {"avg_camera_pivot": [0, 0]}}, "rendering.avg_camera_pivot must be 3 numbers"),
    ({"rendering": {"avg_camera_pivot": [0, "a", 0]}}, "rendering.avg_camera_pivot must be a finite number"),
    ({"rendering": {"white_back": 1}}, "rendering.white_back must be true or false"),
])
def test_bad_fields_are_named_in_one_line(changes, field) -> None:
    with pytest.raises(InputError) as err:
        GeneratorConfig.from_dict(config_dict(**changes))
    assert f"config field {field}" in str(err.value) and "\n" not in str(err.value)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(InputError, match="unknown config fields: rendering.typo, zdim"):
        GeneratorConfig.from_dict({**config_dict(), "zdim": 3, "rendering": {**config_dict()["rendering"], "typo": 1}})


def test_a_saved_model_with_a_bad_config_is_refused_before_building(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(DEMO_MODEL / "model.safetensors"), "pt") as f:
        doc = json.loads(f.metadata()["eg3d"])
    doc["config"]["w_dim"] = 10**6
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(load_file(str(DEMO_MODEL / "model.safetensors")), str(folder / "model.safetensors"),
              metadata={"eg3d": json.dumps(doc)})
    with pytest.raises(CheckpointError, match="config field w_dim must be an integer in"):
        eg3d_core.load_generator(folder)
