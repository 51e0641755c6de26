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
    default_yaw: float = 0.0  # the model's opening view (``eg3d_core.cameras.CameraDefaults.view``)
    default_pitch: float = 0.0
    fov_min: float = 4.0
    fov_max: float = 60.0
    pivot_max: float = 0.5  # look-at point stays inside the model's box (half of box_warp)
    focal: float = 4.2647

    @classmethod
    def for_model(cls, info: ModelInfo) -> CameraLimits:
        # EG3D renders a fixed depth interval [ray_start, ray_end] from the camera, whatever its distance. Dollying
        # further than that interval allows would cut the object away, so the radius stays inside it.
        r0 = info.camera.radius
        yaw, pitch = info.camera.view
        return cls(radius_min=max(0.5 * r0, info.ray_start), radius_max=min(2.0 * r0, info.ray_end),
                   default_radius=r0, default_fov=info.camera.fov, default_pivot=tuple(info.camera.pivot),
                   default_yaw=yaw, default_pitch=pitch, pivot_max=info.box_warp / 2, focal=info.camera.focal)


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
    """The model's opening view (three-quarter for objects, frontal for faces) at its default radius, FOV and
    look-at point; the zoom mode is kept."""
    return replace(state, yaw=limits.default_yaw, pitch=limits.default_pitch, radius=limits.default_radius,
                   fov=limits.default_fov,
                   pivot=limits.default_pivot, orbit_phase=0.0)


def animate_orbit(state: CameraState, dt: float, period: float = 8.0, yaw_amp: float = 0.35,
                  pitch_amp: float = 0.15) -> CameraState:
    """Advance the gen_videos-style orbit (yaw sine, pitch cosine) by dt seconds."""
    phase = (state.orbit_phase + dt / period) % 1.0
    return replace(state, orbit_phase=phase, yaw=yaw_amp * math.sin(2 * math.pi * phase),
                   pitch=-0.05 + pitch_amp * math.cos(2 * math.pi * phase))


# --------------------------------------------------------------------------------------------------------------------
# Keyboard flight (WASD / QE) and turning in place. The camera is a position on the sphere of radius ``radius``
# (world origin at its centre) looking at ``pivot``; any point along the view ray gives the same picture, so after a
# move the pivot is put back at the ray's point nearest the world origin, inside the model's box. That keeps the
# camera at a renderable distance (radius limits) and pointed at the model: flying sideways past the box turns the
# view towards it instead of losing the object.

Vec = tuple[float, float, float]
CAMERA_MODES = ("orbit", "fly")


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _normalized(a: Vec) -> Vec:
    n = math.sqrt(_dot(a, a)) or 1.0
    return (a[0] / n, a[1] / n, a[2] / n)


def camera_position(state: CameraState) -> Vec:
    """World position of the camera (``eg3d_core.cameras.lookat_pose``'s placement)."""
    h = math.pi / 2 + state.yaw
    v = clamp(math.pi / 2 + state.pitch, 1e-5, math.pi - 1e-5)
    phi = math.acos(1 - 2 * v / math.pi)
    r = state.radius
    return (r * math.sin(phi) * math.cos(math.pi - h), r * math.cos(phi), r * math.sin(phi) * math.sin(math.pi - h))


def view_axes(state: CameraState) -> tuple[Vec, Vec]:
    """(forward, right) unit vectors of the camera looking at its pivot; right is horizontal (no roll)."""
    f = _normalized(_sub(state.pivot, camera_position(state)))
    n = math.hypot(f[0], f[2]) or 1.0
    return f, (-f[2] / n, 0.0, f[0] / n)


def place(state: CameraState, position: Vec, forward: Vec, limits: CameraLimits) -> CameraState:
    """The camera at ``position`` (its distance from the origin kept within the radius limits) looking along
    ``forward`` (the pivot: the view ray's point nearest the origin, clamped to the model's box)."""
    r = math.sqrt(_dot(position, position)) or 1e-6
    radius = clamp(r, limits.radius_min, limits.radius_max)
    p = tuple(x * radius / r for x in position)
    f = _normalized(forward)
    t = max(-_dot(p, f), 0.25 * radius)  # ahead of the camera even when it looks away from the origin
    pm = limits.pivot_max
    # Rounding residue (1e-17) would read "-0.000" in the Look at fields.
    pivot = tuple(0.0 if abs(v) < 1e-12 else v for v in (clamp(x + t * d, -pm, pm) for x, d in zip(p, f, strict=True)))
    yaw = math.atan2(p[0], p[2])
    pitch = -math.pi / 2 * clamp(p[1] / radius, -1.0, 1.0)
    return clamped(replace(state, yaw=yaw, pitch=pitch, radius=radius, pivot=pivot), limits)


def fly(state: CameraState, forward: float, right: float, up: float, limits: CameraLimits) -> CameraState:
    """Move the camera by ``forward`` along its view, ``right`` sideways and ``up`` along world +y (world units),
    keeping its view direction."""
    f, r = view_axes(state)
    p = camera_position(state)
    moved = tuple(p[i] + forward * f[i] + right * r[i] for i in range(3))
    moved = (moved[0], moved[1] + up, moved[2])
    return place(state, moved, f, limits)


def turn(state: CameraState, right: float, up: float, limits: CameraLimits, max_elevation: float = 1.3) -> CameraState:
    """Turn the view in place (fly mode's arrow keys) by ``right`` radians about world +y and ``up`` radians of
    elevation; the camera does not move (up to the radius limits)."""
    f, _ = view_axes(state)
    heading = math.atan2(f[0], f[2]) - right  # turning right lowers the heading (see ``camera_axes``)
    elevation = clamp(math.asin(clamp(f[1], -1.0, 1.0)) + up, -max_elevation, max_elevation)
    ce = math.cos(elevation)
    new_f = (ce * math.sin(heading), math.sin(elevation), ce * math.cos(heading))
    return place(state, camera_position(state), new_f, limits)


@dataclass(frozen=True)
class KeySpeeds:
    """Held-key speeds: flight in model radii per second (so a face and a car take the same time to cross), turns
    and orbits in radians per second."""

    fly_radii_per_s: float = 0.5
    turn_rad_per_s: float = 1.0
    orbit_rad_per_s: float = 1.5


# Held keys -> (forward, right, up) flight and (right, up) rotation, per unit of speed.
FLY_KEYS: dict[str, tuple[float, float, float]] = {
    "w": (1, 0, 0), "s": (-1, 0, 0), "a": (0, -1, 0), "d": (0, 1, 0), "q": (0, 0, -1), "e": (0, 0, 1)}
ARROW_KEYS: dict[str, tuple[float, float]] = {"left": (-1, 0), "right": (1, 0), "up": (0, 1), "down": (0, -1)}


def key_motion(state: CameraState, held: frozenset[str] | set[str], dt: float, limits: CameraLimits,
               speeds: KeySpeeds = KeySpeeds()) -> CameraState:
    """The camera after ``dt`` seconds with ``held`` keys down (names of ``FLY_KEYS`` and ``ARROW_KEYS``). WASD / QE
    fly; the arrows orbit the look-at point (orbit mode: left/right as a drag left/right, up shows the model from
    below) or turn the view in place (fly mode)."""
    cam = state
    if any(k in FLY_KEYS for k in held):
        step = speeds.fly_radii_per_s * limits.default_radius * dt
        fwd, rt, up = (sum(FLY_KEYS[k][i] for k in held if k in FLY_KEYS) for i in range(3))
        cam = fly(cam, fwd * step, rt * step, up * step, limits)
    if any(k in ARROW_KEYS for k in held):
        rt, up = (sum(ARROW_KEYS[k][i] for k in held if k in ARROW_KEYS) for i in range(2))
        if state.mode == "fly":
            a = speeds.turn_rad_per_s * dt
            cam = turn(cam, rt * a, up * a, limits)
        else:  # as a drag: the model turns with the keys like with the mouse
            a = speeds.orbit_rad_per_s * dt
            cfg = ControllerConfig()
            cam = orbit(cam, rt * a / cfg.orbit_rad_per_px, -up * a / cfg.orbit_rad_per_px, limits)
    return cam
