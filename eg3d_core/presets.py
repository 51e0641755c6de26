"""The released EG3D generators' settings, as named presets.

Values are those of the official ``train.py`` configurations (and each released pickle's
``neural_rendering_resolution``). Loading a checkpoint never relies on these: a checkpoint carries
its config. They are used to build full-size models (benchmarks), to give an MMagic ``.pth``
(which carries no renderer settings) its rendering config, and as camera defaults.
"""
from __future__ import annotations

from .config import GeneratorConfig, RenderingConfig

PRESETS: dict[str, GeneratorConfig] = {
    "ffhq512-128": GeneratorConfig(
        img_resolution=512,
        sr_module="8XDC",
        sr_channels=(256, 128),
        rendering=RenderingConfig(
            ray_start=2.25, ray_end=3.3, box_warp=1.0,
            depth_resolution=48, depth_resolution_importance=48,
            white_back=False, neural_rendering_resolution=128,
            avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, 0.2),
            c_gen_conditioning_zero=False, c_scale=1.0,
        ),
    ),
    "afhqcats512-128": GeneratorConfig(
        img_resolution=512,
        sr_module="8X",
        sr_channels=(128, 64),
        rendering=RenderingConfig(
            ray_start=2.25, ray_end=3.3, box_warp=1.0,
            depth_resolution=48, depth_resolution_importance=48,
            white_back=False, neural_rendering_resolution=128,
            avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, -0.06),
            c_gen_conditioning_zero=False, c_scale=1.0,
        ),
    ),
    "shapenetcars128-64": GeneratorConfig(
        img_resolution=128,
        sr_module="2X",
        sr_channels=(128, 64),
        rendering=RenderingConfig(
            ray_start=0.1, ray_end=2.6, box_warp=1.6,
            depth_resolution=64, depth_resolution_importance=64,
            white_back=True, neural_rendering_resolution=64,
            avg_camera_radius=1.7, avg_camera_pivot=(0.0, 0.0, 0.0),
            c_gen_conditioning_zero=True, c_scale=1.0,
        ),
    ),
}
