"""eg3d_core.settings: the one render-settings type, its validation and the generator arguments it gives."""
from __future__ import annotations

import pytest
import torch

from eg3d_core import cameras
from eg3d_core.errors import InputError
from eg3d_core.latents import LatentSource
from eg3d_core.settings import NOISE_MODES, PRECISIONS, RenderSettings


def test_one_definition_of_precisions_and_noise_modes() -> None:
    """The generator, the web demo and the viewer use the settings module's tuples, not copies of them."""
    from eg3d_core import generator
    from eg3d_core.apps import webapp
    from eg3d_viewer import state

    assert generator.PRECISIONS is PRECISIONS and generator.NOISE_MODES is NOISE_MODES
    assert webapp.PRECISIONS is PRECISIONS
    assert state.PRECISIONS is PRECISIONS and state.NOISE_MODES is NOISE_MODES


def test_depth_samples_default_multiply_and_explicit(cars_generator) -> None:
    r = cars_generator.config.rendering
    assert RenderSettings().depth_samples(cars_generator.config) == (r.depth_resolution, r.depth_resolution_importance)
    assert RenderSettings(sample_mult=2).depth_samples(cars_generator.config) == (2 * r.depth_resolution,
                                                                                  2 * r.depth_resolution_importance)
    assert RenderSettings(depth_resolution=24, depth_resolution_importance=0).depth_samples(cars_generator.config) \
        == (24, 0)


def test_kwargs_for_render_and_synthesis(cars_generator) -> None:
    s = RenderSettings(neural_rendering_resolution=16, precision="reduced", sr_precision="fp32", noise_mode="none",
                       deterministic=False)
    render = s.render_kwargs(cars_generator.config)
    assert render == {"neural_rendering_resolution": 16, "deterministic": False, "precision": "reduced",
                      "depth_resolution": cars_generator.config.rendering.depth_resolution,
                      "depth_resolution_importance": cars_generator.config.rendering.depth_resolution_importance}
    assert s.synthesis_kwargs(cars_generator.config) == {**render, "noise_mode": "none", "sr_precision": "fp32"}
    assert s.superres_precision == "fp32" and RenderSettings(precision="reduced").superres_precision == "reduced"


def test_synthesis_with_settings_is_the_explicit_call(cars_generator) -> None:
    """The settings only name arguments: the same image, bit for bit, as passing them by hand."""
    G = cars_generator
    d = cameras.camera_defaults(G.config)
    ws = LatentSource(seed=2).ws(G)
    c = cameras.camera(d, 0.2, -0.1)
    with torch.no_grad():
        ours = G.synthesis(ws, c, **RenderSettings(neural_rendering_resolution=16, sample_mult=2).synthesis_kwargs(
            G.config))
        by_hand = G.synthesis(ws, c, neural_rendering_resolution=16,
                              depth_resolution=2 * G.config.rendering.depth_resolution,
                              depth_resolution_importance=2 * G.config.rendering.depth_resolution_importance)
    assert torch.equal(ours["image"], by_hand["image"]) and torch.equal(ours["image_depth"], by_hand["image_depth"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"neural_rendering_resolution": 2}, "neural rendering resolution must be an integer in [4, 1024], got 2"),
    ({"neural_rendering_resolution": 2048}, "neural rendering resolution must be an integer in [4, 1024], got 2048"),
    ({"neural_rendering_resolution": 16.0}, "neural rendering resolution must be an integer in [4, 1024]"),
    ({"sample_mult": 0}, "sample multiplier must be an integer in [1, 16], got 0"),
    ({"sample_mult": 1000}, "sample multiplier must be an integer in [1, 16], got 1000"),
    ({"depth_resolution": 0}, "depth samples per ray must be an integer in [1, 512]"),
    ({"depth_resolution": 10**6}, "depth samples per ray must be an integer in [1, 512], got 1000000"),
    ({"depth_resolution_importance": -1}, "importance samples per ray must be an integer in [0, 512]"),
    ({"depth_resolution_importance": 513}, "importance samples per ray must be an integer in [0, 512], got 513"),
    ({"precision": "fp16"}, "precision must be one of fp32, reduced, got 'fp16'"),
    ({"sr_precision": "half"}, "super-resolution precision must be one of fp32, reduced, got 'half'"),
    ({"noise_mode": "loud"}, "noise mode must be one of const, random, none, got 'loud'"),
    ({"deterministic": 1}, "deterministic must be true or false, got 1"),
    ({"superres": "no"}, "superres must be true or false"),
])
def test_bad_settings_are_one_line_input_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        RenderSettings(**kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_multiplied_samples_are_bounded_too(cars_generator) -> None:
    """In range apart, but 48 coarse samples times 16 are more than 512 per ray (the model's own 12 x 16 are not)."""
    assert RenderSettings(sample_mult=16).depth_samples(cars_generator.config) == (192, 192)
    with pytest.raises(InputError) as info:
        RenderSettings(depth_resolution=48, sample_mult=16).depth_samples(cars_generator.config)
    assert str(info.value) == "48 + 12 samples per ray times the sample multiplier 16 is more than 512 per pass"


def test_ranges_come_from_the_config_limits() -> None:
    """One bound for what a config and a render may ask for."""
    from eg3d_core import config, settings

    assert settings.NEURAL_RENDERING_RESOLUTION[1] == config.MAX_RESOLUTION
    assert settings.DEPTH_SAMPLES[1] == config.MAX_DEPTH_SAMPLES


def test_settings_are_hashable_values() -> None:
    """Equal settings are equal and hash alike (the viewer's scheduler compares qualities by value)."""
    assert RenderSettings(sample_mult=2) == RenderSettings(sample_mult=2)
    assert len({RenderSettings(), RenderSettings(), RenderSettings(precision="reduced")}) == 2
