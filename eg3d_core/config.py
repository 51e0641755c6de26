"""Typed, frozen configuration of an EG3D generator.

Field defaults follow the released FFHQ 512 model (see ``presets.py`` for all three).
A checkpoint carries its config; nothing is guessed from a file name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SR_MODULES = ("2X", "4X", "8X", "8XDC")
# Channel widths (block0, block1) the official super-resolution classes hard-code.
SR_DEFAULT_CHANNELS = {"2X": (128, 64), "4X": (128, 64), "8X": (128, 64), "8XDC": (256, 128)}
# Resolution the super-resolution module expects its input at.
SR_INPUT_RESOLUTION = {"2X": 64, "4X": 128, "8X": 128, "8XDC": 128}


@dataclass(frozen=True)
class RenderingConfig:
    """Volume rendering settings (the original's ``rendering_kwargs`` that matter at inference)."""

    ray_start: float = 2.25
    ray_end: float = 3.3
    box_warp: float = 1.0
    depth_resolution: int = 48
    depth_resolution_importance: int = 48
    white_back: bool = False
    neural_rendering_resolution: int = 128
    avg_camera_radius: float = 2.7
    avg_camera_pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
    c_gen_conditioning_zero: bool = False
    c_scale: float = 1.0
    decoder_lr_mul: float = 1.0


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a tri-plane generator.

    ``channel_base``/``channel_max`` set the StyleGAN2 backbone widths: ``min(channel_base // res, channel_max)``.
    ``sr_module`` is one of ``2X``, ``4X``, ``8X``, ``8XDC``; ``sr_channels`` its two block widths.
    ``sr_conv_clamp`` is the activation clamp of the SR layers (256 in the released models, which
    configure their SR for fp16); ``backbone_conv_clamp`` likewise for the backbone (None when released).
    """

    z_dim: int = 512
    c_dim: int = 25
    w_dim: int = 512
    img_resolution: int = 512
    mapping_layers: int = 2
    channel_base: int = 32768
    channel_max: int = 512
    triplane_resolution: int = 256
    triplane_channels: int = 32
    decoder_hidden: int = 64
    decoder_output_dim: int = 32
    backbone_conv_clamp: float | None = None
    sr_module: str = "8XDC"
    sr_channels: tuple[int, int] = (256, 128)
    sr_conv_clamp: float | None = 256.0
    sr_antialias: bool = True
    sr_noise_mode: str = "none"
    rendering: RenderingConfig = field(default_factory=RenderingConfig)

    def __post_init__(self) -> None:
        if self.sr_module not in SR_MODULES:
            raise ValueError(f"sr_module must be one of {SR_MODULES}, got {self.sr_module!r}")
        if self.sr_noise_mode not in ("none", "random"):
            raise ValueError(f"sr_noise_mode must be 'none' or 'random', got {self.sr_noise_mode!r}")
        if self.rendering.depth_resolution < 2:
            raise ValueError("depth_resolution must be at least 2")
        if self.rendering.depth_resolution_importance not in (0,) and self.rendering.depth_resolution < 4:
            raise ValueError("importance sampling needs depth_resolution >= 4")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the backbone consumes (14 for a 256 backbone)."""
        log2 = self.triplane_resolution.bit_length() - 1
        # b4 has one conv, every later block two; the last ToRGB adds one more w.
        return 1 + 2 * (log2 - 2) + 1

    @property
    def sr_input_resolution(self) -> int:
        return SR_INPUT_RESOLUTION[self.sr_module]

    def replace(self, **changes: Any) -> GeneratorConfig:
        """A copy with top-level fields changed; ``rendering`` may be a dict of field changes."""
        rendering = changes.pop("rendering", None)
        if isinstance(rendering, dict):
            changes["rendering"] = dataclasses.replace(self.rendering, **rendering)
        elif rendering is not None:
            changes["rendering"] = rendering
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Inverse of ``to_dict``; unknown keys are an error so that typos do not pass silently."""
        data = dict(data)
        rendering = dict(data.pop("rendering", {}))
        names = {f.name for f in dataclasses.fields(cls)}
        rnames = {f.name for f in dataclasses.fields(RenderingConfig)}
        unknown = (set(data) - names) | {f"rendering.{k}" for k in set(rendering) - rnames}
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        if "avg_camera_pivot" in rendering:
            rendering["avg_camera_pivot"] = tuple(float(v) for v in rendering["avg_camera_pivot"])
        if "sr_channels" in data:
            data["sr_channels"] = tuple(int(v) for v in data["sr_channels"])
        return cls(**data, rendering=RenderingConfig(**rendering))
