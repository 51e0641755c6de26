"""State -> render request. Pure and immutable, so the worker can render a request while the UI keeps editing.

A request splits into what decides ws (``LatentSpec``: the renderer caches the tri-planes per latent), where the
camera is (``CameraSpec``) and how finely to render (``Quality``: the library's ``RenderSettings`` of a preview or a
full-quality frame). Two requests that compare equal produce the same frame, which is what the scheduler uses to
tell "something moved" from "at rest".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from eg3d_core.settings import RenderSettings

from .model_info import ModelInfo
from .state import AppState, CustomLatent, RenderState


@dataclass(frozen=True)
class LatentSpec:
    """Everything that decides ws, and the backbone's noise mode: with the precision of the request's settings, they
    decide the tri-planes. ``cutoff`` None truncates every w."""

    seed: int
    seed_b: int
    mix: float
    stylemix_seed: int | None
    stylemix_layer: int
    psi: float
    cutoff: int | None
    noise_mode: str
    cond_yaw: float
    cond_pitch: float
    directions: tuple[float, ...]
    direction_layers: tuple[int, int]
    custom: CustomLatent | None = None  # ws in place of seed A (an inversion or a loaded .npz)


@dataclass(frozen=True)
class CameraSpec:
    yaw: float
    pitch: float
    radius: float
    fov: float
    pivot: tuple[float, float, float]


@dataclass(frozen=True)
class Quality:
    """A preview or full-quality frame's ``RenderSettings`` (explicit resolution and samples per ray; the noise mode
    travels with the latent spec)."""

    settings: RenderSettings
    preview: bool
    # Previews may sample tri-planes average-pooled by this factor: the per-frame cost of the plane lookup grows
    # with the plane size, and a low-resolution preview cannot show the finest texels anyway.
    plane_scale: int = 1

    @property
    def label(self) -> str:
        s = self.settings
        kind = "preview" if self.preview else "full"
        sr = " + SR" if s.superres else ""
        planes = f", planes/{self.plane_scale}" if self.plane_scale > 1 else ""
        return (f"{kind} {s.neural_rendering_resolution}px, {s.depth_resolution}+{s.depth_resolution_importance} "
                f"samples{planes}{sr}")


@dataclass(frozen=True)
class Scene:
    """A frame's content, quality aside."""

    latent: LatentSpec
    camera: CameraSpec


@dataclass(frozen=True)
class RenderRequest:
    scene: Scene
    quality: Quality
    # Full-quality frames may be abandoned half-way when a newer request arrives; previews always finish (they are
    # short, and cancelling them during a continuous drag would never show anything).
    cancellable: bool
    serial: int = 0


def latent_spec(state: AppState, info: ModelInfo) -> LatentSpec:
    lat, mix, trunc, dirs = state.latent, state.stylemix, state.truncation, state.directions
    cutoff = trunc.cutoff if trunc.cutoff < info.num_ws else None
    return LatentSpec(
        seed=lat.seed % 2**32, seed_b=lat.seed_b % 2**32, mix=float(min(max(lat.mix, 0.0), 1.0)),
        stylemix_seed=mix.seed % 2**32 if mix.enabled and mix.layer < info.num_ws else None,
        stylemix_layer=min(max(mix.layer, 0), info.num_ws),
        psi=float(trunc.psi), cutoff=cutoff, noise_mode=trunc.noise_mode,
        cond_yaw=state.conditioning.yaw, cond_pitch=state.conditioning.pitch,
        # All-zero amounts are the same latent as no directions at all: normalise so the plane cache sees that.
        directions=tuple(float(a) for a in dirs.amounts) if any(dirs.amounts) else (),
        direction_layers=(max(0, dirs.layer_start), min(info.num_ws, dirs.layer_end)),
        custom=lat.custom,
    )


def camera_spec(state: AppState) -> CameraSpec:
    c = state.camera
    return CameraSpec(yaw=c.yaw, pitch=c.pitch, radius=c.radius, fov=c.fov, pivot=tuple(c.pivot))


def _settings(render: RenderState, resolution: int, samples: int, importance: int, superres: bool) -> RenderSettings:
    # Clamped to what renders at all: a script may set any number (the widgets keep them in range).
    return RenderSettings(neural_rendering_resolution=max(4, resolution), depth_resolution=max(1, samples),
                          depth_resolution_importance=max(0, importance), precision=render.precision,
                          deterministic=render.deterministic, superres=superres)


def full_quality(render: RenderState) -> Quality:
    return Quality(_settings(render, render.full_resolution, render.full_samples, render.full_importance, True),
                   preview=False)


def preview_quality(render: RenderState, resolution: int) -> Quality:
    """The moving-camera quality; samples never exceed the full setting (a preview must not cost more)."""
    settings = _settings(render, min(resolution, render.full_resolution),
                         min(render.preview_samples, render.full_samples),
                         min(render.preview_importance, render.full_importance), render.preview_superres)
    return Quality(settings, preview=True, plane_scale=max(1, render.preview_plane_scale))


def scene_of(state: AppState, info: ModelInfo) -> Scene:
    return Scene(latent_spec(state, info), camera_spec(state))


def adapt_resolution(current: int, render_ms: float, target_ms: float, lo: int = 32, hi: int = 128,
                     step: int = 16) -> int:
    """Next preview resolution so that a preview frame takes at most about ``target_ms`` (nerfstudio's viewer adapts
    its resolution the same way).

    Cost is about proportional to the pixel count, so the side that fits is ``current * sqrt(target / measured)``.
    The result is the largest multiple of ``step`` that fits, changing by at most x0.5 .. x1.5 per frame. It shrinks
    only when the frame is more than 10% over target, so timing jitter does not make it flip between two sizes.
    """
    if render_ms <= 0:
        return current
    fits = current * math.sqrt(target_ms / render_ms)
    if render_ms > 1.1 * target_ms:
        new = int(max(fits, 0.5 * current) // step) * step
    else:
        new = max(current, int(min(fits, 1.5 * current) // step) * step)
    return max(lo, min(hi, new))
