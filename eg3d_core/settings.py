"""How to render, apart from what (``latents.LatentSource``) and from where (a camera): one type for every front end.

The CLIs, videos, the MMagic demo, the web demo, the viewer's preview and full qualities and FID all describe a
render with :class:`RenderSettings` and hand ``synthesis_kwargs`` / ``render_kwargs`` to the generator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .config import GeneratorConfig

PRECISIONS = ("fp32", "reduced")
NOISE_MODES = ("const", "random", "none")


def _check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")


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
            _check_int("neural rendering resolution", self.neural_rendering_resolution, 4)
        _check_int("sample multiplier", self.sample_mult, 1)
        if self.depth_resolution is not None:
            _check_int("depth samples per ray", self.depth_resolution, 1)
        if self.depth_resolution_importance is not None:
            _check_int("importance samples per ray", self.depth_resolution_importance, 0)
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
        """(coarse, importance) samples per ray for a model."""
        r = config.rendering
        coarse = r.depth_resolution if self.depth_resolution is None else self.depth_resolution
        fine = r.depth_resolution_importance if self.depth_resolution_importance is None \
            else self.depth_resolution_importance
        return coarse * self.sample_mult, fine * self.sample_mult

    def render_kwargs(self, config: GeneratorConfig) -> dict[str, Any]:
        """Keyword arguments for ``Generator.render`` (volume rendering only)."""
        coarse, fine = self.depth_samples(config)
        return {"neural_rendering_resolution": self.neural_rendering_resolution, "deterministic": self.deterministic,
                "precision": self.precision, "depth_resolution": coarse, "depth_resolution_importance": fine}

    def synthesis_kwargs(self, config: GeneratorConfig) -> dict[str, Any]:
        """Keyword arguments for ``Generator.render_planes`` / ``synthesis`` (which always super-resolve)."""
        return {**self.render_kwargs(config), "noise_mode": self.noise_mode, "sr_precision": self.sr_precision}


__all__ = ["NOISE_MODES", "PRECISIONS", "RenderSettings"]
