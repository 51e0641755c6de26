"""Orbit / zoom / pan math for the rendering camera. Pure: no GL, no torch; every function returns a new state.

Conventions follow ``eg3d_core.cameras``: yaw and pitch are offsets from the frontal view; increasing yaw moves the
camera towards +x, increasing pitch moves it down. The camera orbits the world origin and looks at ``pivot``
(as the original's look-at sampler does), so "pan" moves the look-at point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .model_info import ModelInfo
from .state import CameraState

# Pitch stays clear of the poles, where the look-at frame (up = +y) degenerates.
PITCH_LIMIT = math.pi / 2 - 0.05


@dataclass(frozen=True)
class CameraLimits:
    """Valid ranges and the default view for one model."""

    radius_min: float
    radius_max: float
    default_radius: float
    default_fov: float
    default_pivot: tuple[float, float, float]
    fov_min: float = 4.0
    fov_max: float = 60.0
    pivot_max: float = 0.5  # look-at point stays inside the model's box (half of box_warp)
    focal: float = 4.2647

    @classmethod
    def for_model(cls, info: ModelInfo) -> CameraLimits:
        # EG3D renders a fixed depth interval [ray_start, ray_end] from the camera, whatever its distance. Dollying
        # further than that interval allows would cut the object away, so the radius stays inside it.
        r0 = info.camera.radius
        return cls(radius_min=max(0.5 * r0, info.ray_start), radius_max=min(2.0 * r0, info.ray_end),
                   default_radius=r0, default_fov=info.camera.fov, default_pivot=tuple(info.camera.pivot),
                   pivot_max=info.box_warp / 2, focal=info.camera.focal)


@dataclass(frozen=True)
class ControllerConfig:
    orbit_rad_per_px: float = 0.005
    zoom_per_step: float = 1.1  # one wheel notch scales FOV or radius by this factor
    key_angle_step: float = 0.1


def wrap_angle(a: float) -> float:
    """Angle in [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def clamped(state: CameraState, limits: CameraLimits) -> CameraState:
    """The same view with every value brought into range (used after typing numbers into the fields)."""
    p = limits.pivot_max
    return replace(state, yaw=wrap_angle(state.yaw), pitch=clamp(state.pitch, -PITCH_LIMIT, PITCH_LIMIT),
                   radius=clamp(state.radius, limits.radius_min, limits.radius_max),
                   fov=clamp(state.fov, limits.fov_min, limits.fov_max),
                   pivot=tuple(clamp(v, -p, p) for v in state.pivot))


def orbit(state: CameraState, dx: float, dy: float, limits: CameraLimits,
          cfg: ControllerConfig = ControllerConfig()) -> CameraState:
    """Drag by (dx, dy) pixels. The model turns with the mouse, like grabbing it: dragging right moves the camera
    to the model's left (yaw decreases), dragging down shows it more from above (pitch decreases)."""
    return clamped(replace(state, yaw=state.yaw - dx * cfg.orbit_rad_per_px,
                           pitch=state.pitch - dy * cfg.orbit_rad_per_px), limits)


def zoom(state: CameraState, steps: float, limits: CameraLimits, cfg: ControllerConfig = ControllerConfig()) -> CameraState:
    """Positive steps (wheel up) zoom in: a narrower FOV, or a shorter radius, depending on ``state.zoom_mode``."""
    factor = cfg.zoom_per_step ** (-steps)
    if state.zoom_mode == "radius":
        return clamped(replace(state, radius=state.radius * factor), limits)
    return clamped(replace(state, fov=state.fov * factor), limits)


def focal_of(fov: float) -> float:
    """The original's FOV -> normalised focal rule (same as ``eg3d_core.cameras.focal_from_fov``)."""
    return 1.0 / (math.tan(fov * 3.14159 / 360) * 1.414)


def camera_axes(yaw: float, pitch: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """World directions of the image's right and down axes for a camera at (yaw, pitch) looking at the origin.

    Same spherical placement as ``eg3d_core.cameras.lookat_pose`` (phi = arccos(1 - 2 v / pi)), written out so
    the controller stays free of torch.
    """
    h = math.pi / 2 + yaw
    v = clamp(math.pi / 2 + pitch, 1e-5, math.pi - 1e-5)
    phi = math.acos(1 - 2 * v / math.pi)
    origin = (math.sin(phi) * math.cos(math.pi - h), math.cos(phi), math.sin(phi) * math.sin(math.pi - h))
    fwd = tuple(-o for o in origin)
    # right = -normalize(up0 x forward) with up0 = +y, i.e. (-f_z, 0, f_x) normalised; down = forward x right.
    n = math.hypot(fwd[0], fwd[2])
    right = (-fwd[2] / n, 0.0, fwd[0] / n)
    down = (fwd[1] * right[2] - fwd[2] * right[1], fwd[2] * right[0] - fwd[0] * right[2],
            fwd[0] * right[1] - fwd[1] * right[0])
    return right, down


def pan(state: CameraState, dx: float, dy: float, viewport_px: float, limits: CameraLimits) -> CameraState:
    """Drag by (dx, dy) pixels moves the look-at point so that the content follows the mouse.

    With normalised intrinsics a point at distance ``radius`` moves ``radius / (focal * viewport_px)`` world units
    per pixel, so that is the scale.
    """
    scale = state.radius / (focal_of(state.fov) * max(viewport_px, 1.0))
    right, down = camera_axes(state.yaw, state.pitch)
    pivot = tuple(p - (r * dx + d * dy) * scale for p, r, d in zip(state.pivot, right, down, strict=True))
    return clamped(replace(state, pivot=pivot), limits)


def reset(state: CameraState, limits: CameraLimits) -> CameraState:
    """Frontal view at the model's default radius, FOV and look-at point; the zoom mode is kept."""
    return replace(state, yaw=0.0, pitch=0.0, radius=limits.default_radius, fov=limits.default_fov,
                   pivot=limits.default_pivot, orbit_phase=0.0)


def animate_orbit(state: CameraState, dt: float, period: float = 8.0, yaw_amp: float = 0.35,
                  pitch_amp: float = 0.15) -> CameraState:
    """Advance the gen_videos-style orbit (yaw sine, pitch cosine) by dt seconds."""
    phase = (state.orbit_phase + dt / period) % 1.0
    return replace(state, orbit_phase=phase, yaw=yaw_amp * math.sin(2 * math.pi * phase),
                   pitch=-0.05 + pitch_amp * math.cos(2 * math.pi * phase))
