"""How to render, apart from what (``latents.LatentSource``) and from where (a camera): one type for every front end.

The CLIs, videos, the MMagic demo, the web demo, the viewer's preview and full qualities and FID all describe a
render with :class:`RenderSettings` and hand ``synthesis_kwargs`` / ``render_kwargs`` to the generator. The ranges
below are the ones every front end accepts (inclusive); what a render in range costs in memory is ``budget``'s
question.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import MAX_DEPTH_SAMPLES, MAX_RESOLUTION
from .errors import InputError

if TYPE_CHECKING:
    from .config import GeneratorConfig

PRECISIONS = ("fp32", "reduced")
NOISE_MODES = ("const", "random", "none")

# The neural rendering resolution and the coarse or importance samples per ray (after the multiplier): what a
# model's config may ask for (``config``), so a render can ask for it too.
NEURAL_RENDERING_RESOLUTION = (4, MAX_RESOLUTION)
DEPTH_SAMPLES = (1, MAX_DEPTH_SAMPLES)
SAMPLE_MULT = (1, 16)
# Truncation psi: 1 is none, 0 the average w; beyond [-1, 2] the extrapolated ws leave the space the model was
# trained on (the web demo's slider).
TRUNCATION_PSI = (-1.0, 2.0)
# Normalised focal length (focal / image width): 0.2 is a 136 degree field of view, 50 under 1.2 degrees; the
# released models use 4.26 (FFHQ, AFHQ) and 1.71 (ShapeNet).
FOCAL = (0.2, 50.0)
# Camera offsets from the frontal view, radians: any yaw of a full turn; pitch short of straight down / up
# (+-90 degrees would look along the up axis, a degenerate pose).
YAW = (-math.pi, math.pi)
PITCH = (-math.radians(85), math.radians(85))


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        wanted = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise InputError(f"{name} must be an integer {wanted}, got {value!r}")


@dataclass(frozen=True)
class RenderSettings:
    """How to render a latent: volume-rendering resolution and samples, precision, backbone noise, super-resolution.

    * ``neural_rendering_resolution``: side of the volume-rendered image; None keeps the model's.
    * ``depth_resolution`` / ``depth_resolution_importance``: coarse and importance samples per ray; None keeps the
      model's. ``sample_mult`` multiplies both (gen_videos' ``--sample_mult``).
    * ``precision``: ``fp32`` or ``reduced`` (``Generator`` explains what reduced computes where); ``sr_precision``
      sets the super-resolution's apart (None: ``precision``).
    * ``noise_mode``: the backbone's noise (``const``, ``random`` or ``none``); it decides the tri-planes, so plane
      caches key on it.
    * ``deterministic``: no random jitter of the depth samples (the original jitters them).
    * ``superres``: run the super-resolution (False: only the volume-rendered ``image_raw`` and depth).
    """

    neural_rendering_resolution: int | None = None
    sample_mult: int = 1
    depth_resolution: int | None = None
    depth_resolution_importance: int | None = None
    precision: str = "fp32"
    sr_precision: str | None = None
    noise_mode: str = "const"
    deterministic: bool = True
    superres: bool = True

    def __post_init__(self) -> None:
        if self.neural_rendering_resolution is not None:
            _check_int("neural rendering resolution", self.neural_rendering_resolution, *NEURAL_RENDERING_RESOLUTION)
        _check_int("sample multiplier", self.sample_mult, *SAMPLE_MULT)
        if self.depth_resolution is not None:
            _check_int("depth samples per ray", self.depth_resolution, *DEPTH_SAMPLES)
        if self.depth_resolution_importance is not None:
            _check_int("importance samples per ray", self.depth_resolution_importance, 0, DEPTH_SAMPLES[1])
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.sr_precision is not None and self.sr_precision not in PRECISIONS:
            raise InputError(f"super-resolution precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.sr_precision!r}")
        if self.noise_mode not in NOISE_MODES:
            raise InputError(f"noise mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        for name in ("deterministic", "superres"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def superres_precision(self) -> str:
        """The super-resolution's precision."""
        return self.precision if self.sr_precision is None else self.sr_precision

    def depth_samples(self, config: GeneratorConfig) -> tuple[int, int]:
        """(coarse, importance) samples per ray for a model; InputError when the multiplier takes either beyond
        ``DEPTH_SAMPLES``."""
        r = config.rendering
        coarse = r.depth_resolution if self.depth_resolution is None else self.depth_resolution
        fine = r.depth_resolution_importance if self.depth_resolution_importance is None \
            else self.depth_resolution_importance
        most = DEPTH_SAMPLES[1]
        if max(coarse, fine) * self.sample_mult > most:
            raise InputError(f"{coarse} + {fine} samples per ray times the sample multiplier {self.sample_mult} is "
                             f"more than {most} per pass")
        return coarse * self.sample_mult, fine * self.sample_mult

    def render_kwargs(self, config: GeneratorConfig) -> dict[str, Any]:
        """Keyword arguments for ``Generator.render`` (volume rendering only)."""
        coarse, fine = self.depth_samples(config)
        return {"neural_rendering_resolution": self.neural_rendering_resolution, "deterministic": self.deterministic,
                "precision": self.precision, "depth_resolution": coarse, "depth_resolution_importance": fine}

    def synthesis_kwargs(self, config: GeneratorConfig) -> dict[str, Any]:
        """Keyword arguments for ``Generator.render_planes`` / ``synthesis`` (which always super-resolve)."""
        return {**self.render_kwargs(config), "noise_mode": self.noise_mode, "sr_precision": self.sr_precision}


__all__ = ["DEPTH_SAMPLES", "FOCAL", "NEURAL_RENDERING_RESOLUTION", "NOISE_MODES", "PITCH", "PRECISIONS", "SAMPLE_MULT",
           "TRUNCATION_PSI", "YAW", "RenderSettings"]
