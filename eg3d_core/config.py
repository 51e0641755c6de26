"""Typed, frozen configuration of an EG3D generator.

Field defaults follow the released FFHQ 512 model (see ``presets.py`` for all three).
A checkpoint carries its config; nothing is guessed from a file name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

SR_MODULES = ("2X", "4X", "8X", "8XDC")
# Channel widths (block0, block1) the official super-resolution classes hard-code.
SR_DEFAULT_CHANNELS = {"2X": (128, 64), "4X": (128, 64), "8X": (128, 64), "8XDC": (256, 128)}
# Resolution the super-resolution module expects its input at.
SR_INPUT_RESOLUTION = {"2X": 64, "4X": 128, "8X": 128, "8XDC": 128}
# Largest sizes a config may ask for: well above every released model (z/w 512, tri-planes 256 x 32 channels,
# 48 + 48 samples at 128 px), low enough that a file cannot make the loader allocate without bound.
MAX_DIM = 4096
MAX_RESOLUTION = 1024
MAX_TRIPLANE_RESOLUTION = 512
MAX_CHANNELS = 2048
MAX_DEPTH_SAMPLES = 512


def _int(name: str, value: Any, lo: int, hi: int, power_of_two: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"config field {name} must be an integer, got {value!r}")
    if not lo <= value <= hi or (power_of_two and value & (value - 1)):
        kind = "a power of two" if power_of_two else "an integer"
        raise InputError(f"config field {name} must be {kind} in [{lo}, {hi}], got {value}")


def _float(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, above: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"config field {name} must be a finite number, got {value!r}")
    if not (lo < value if above else lo <= value) or value > hi:
        bound = f"above {lo:g}" if above else f"in [{lo:g}, {hi:g}]"
        raise InputError(f"config field {name} must be {bound}, got {value:g}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(f"config field {name} must be true or false, got {value!r}")


def _clamp(name: str, value: Any) -> None:
    if value is not None:
        _float(name, value, 0.0, above=True)


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

    def __post_init__(self) -> None:
        """Types and ranges of every field (``InputError`` naming the first bad one)."""
        _float("rendering.ray_start", self.ray_start, 0.0)
        _float("rendering.ray_end", self.ray_end, self.ray_start, above=True)
        _float("rendering.box_warp", self.box_warp, 0.0, above=True)
        _int("rendering.depth_resolution", self.depth_resolution, 2, MAX_DEPTH_SAMPLES)
        _int("rendering.depth_resolution_importance", self.depth_resolution_importance, 0, MAX_DEPTH_SAMPLES)
        _bool("rendering.white_back", self.white_back)
        _int("rendering.neural_rendering_resolution", self.neural_rendering_resolution, 4, MAX_RESOLUTION)
        _float("rendering.avg_camera_radius", self.avg_camera_radius, 0.0, above=True)
        pivot = self.avg_camera_pivot
        if not isinstance(pivot, tuple) or len(pivot) != 3:
            raise InputError(f"config field rendering.avg_camera_pivot must be 3 numbers, got {pivot!r}")
        for v in pivot:
            _float("rendering.avg_camera_pivot", v)
        _bool("rendering.c_gen_conditioning_zero", self.c_gen_conditioning_zero)
        _float("rendering.c_scale", self.c_scale)
        _float("rendering.decoder_lr_mul", self.decoder_lr_mul, 0.0, above=True)


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
        """Types and ranges of every field (``InputError`` naming the first bad one), before anything is built."""
        _int("z_dim", self.z_dim, 1, MAX_DIM)
        _int("c_dim", self.c_dim, 0, MAX_DIM)
        _int("w_dim", self.w_dim, 1, MAX_DIM)
        _int("img_resolution", self.img_resolution, 8, MAX_RESOLUTION, power_of_two=True)
        _int("mapping_layers", self.mapping_layers, 1, 64)
        _int("channel_base", self.channel_base, 1, 2**20)
        _int("channel_max", self.channel_max, 1, MAX_CHANNELS)
        _int("triplane_resolution", self.triplane_resolution, 8, MAX_TRIPLANE_RESOLUTION, power_of_two=True)
        _int("triplane_channels", self.triplane_channels, 1, 256)
        _int("decoder_hidden", self.decoder_hidden, 1, MAX_CHANNELS)
        _int("decoder_output_dim", self.decoder_output_dim, 3, MAX_CHANNELS)
        _clamp("backbone_conv_clamp", self.backbone_conv_clamp)
        if self.sr_module not in SR_MODULES:
            raise InputError(f"config field sr_module must be one of {', '.join(SR_MODULES)}, got {self.sr_module!r}")
        if not isinstance(self.sr_channels, tuple) or len(self.sr_channels) != 2:
            raise InputError(f"config field sr_channels must be two integers, got {self.sr_channels!r}")
        for v in self.sr_channels:
            _int("sr_channels", v, 1, MAX_CHANNELS)
        _clamp("sr_conv_clamp", self.sr_conv_clamp)
        _bool("sr_antialias", self.sr_antialias)
        if self.sr_noise_mode not in ("none", "random"):
            raise InputError(f"config field sr_noise_mode must be 'none' or 'random', got {self.sr_noise_mode!r}")
        if not isinstance(self.rendering, RenderingConfig):
            raise InputError(f"config field rendering must be a RenderingConfig, got {type(self.rendering).__name__}")
        if self.rendering.depth_resolution_importance not in (0,) and self.rendering.depth_resolution < 4:
            raise InputError("config field rendering.depth_resolution must be at least 4 with importance sampling")

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
            raise InputError(f"unknown config fields: {', '.join(sorted(unknown))}")
        # JSON has lists where the config has tuples; the values themselves are checked by the dataclasses.
        if isinstance(rendering.get("avg_camera_pivot"), list):
            rendering["avg_camera_pivot"] = tuple(rendering["avg_camera_pivot"])
        if isinstance(data.get("sr_channels"), list):
            data["sr_channels"] = tuple(data["sr_channels"])
        return cls(**data, rendering=RenderingConfig(**rendering))
