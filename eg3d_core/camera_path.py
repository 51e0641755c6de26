"""Camera paths: keyframes (camera, FOV, latent, duration), a smooth spline through them, our JSON, nerfstudio's.

A :class:`CameraPath` is a tuple of :class:`Keyframe` s. Each keyframe is a camera on the model's orbit (yaw and
pitch offsets from frontal as ``cameras.camera`` takes them, a radius, a FOV), optionally a latent (a seed with
truncation, or optimised ws), and the seconds it takes to reach the next keyframe. Paths are immutable: the
editing helpers (``append``, ``insert``, ``move``, ``delete``, ``replace``) return new paths.

Interpolation (pure numpy, :func:`CameraPath.view_at`):

* The camera follows a cubic Hermite spline through the keyframes with Catmull-Rom tangents taken at the
  keyframes' times (the three-point derivative, so uneven durations keep the speed continuous), on
  (yaw, pitch, log radius, FOV), limited per coordinate like monotone cubic interpolation: a coordinate that turns
  back or holds at a keyframe stops there, and none overshoots its keyframes (the radius never dips below the
  nearest keyframe's, two equal keyframes hold the camera still). Yaw is unwrapped: each step goes the short way
  round (a keyframe 350 degrees further on is 10 degrees back). The spline passes through every keyframe exactly at
  its time and is C1 in time. An open path starts and ends at rest (zero tangents); a loop closes with the last
  keyframe's duration and is C1 across the seam too.
* ``constant_speed`` reparametrises by the camera position's arc length (the spline sampled densely, its length
  inverted by interpolation): the camera moves the same distance every frame, the total duration is kept, and the
  keyframes' own durations then only shape the curve. Stretches where the camera stands still (a hold, a zoom or a
  latent change alone) take no time then; a path whose camera never moves keeps the keyframe times.
* Latents are blended pairwise: between keyframes i and i + 1 the weight runs linearly from 0 to 1 in the
  spline's parameter (see :func:`path_latents`).

FOV: ``Keyframe.fov`` is in the toolkit's FOV degrees, the value of the viewer's and web demo's FOV control, which
map it to a focal with the original's rule (``cameras.focal_from_fov``: 1 / (tan(fov / 2) * 1.414)). The true
vertical angle of view of a square render is ``true_vertical_fov(fov)`` (2 atan(0.5 / focal)); that is the
angle written to nerfstudio and Blender files.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import cameras
from .config import GeneratorConfig
from .errors import InputError
from .fileio import write_bytes
from .settings import FOCAL, PITCH, TRUNCATION_PSI, YAW
from .visualize import SEED_LIMIT

FORMAT = "eg3d-camera-path"
VERSION = 1
# Limits of a path (and of files read as one).
MAX_FILE_BYTES = 64 * 2**20  # ~1600 keyframes with FFHQ-sized ws (14 x 512)
MAX_KEYFRAMES = 10_000  # a nerfstudio file's frames may become keyframes: 5.5 minutes at 30 fps
MAX_FRAMES = 100_000
FPS = (1, 240)
DURATION = (0.01, 3600.0)  # seconds from a keyframe to the next
RADIUS = (0.01, 1000.0)  # world units; a model's useful range is narrower (its ray interval), its default ~1.7-2.7
CUTOFF = (0, 1000)
SEED = (0, SEED_LIMIT - 1)
# The toolkit's FOV degrees (cameras.focal_from_fov) of the normalised focal range settings.FOCAL accepts.
FOV = (cameras.fov_from_focal(FOCAL[1]), cameras.fov_from_focal(FOCAL[0]))
# Spline samples per segment for the arc length of constant-speed paths.
ARC_SAMPLES = 256


def true_vertical_fov(fov: float) -> float:
    """The vertical angle of view (degrees) of a square render at the toolkit's ``fov`` (degrees)."""
    return math.degrees(2.0 * math.atan(0.5 / cameras.focal_from_fov(fov)))


def fov_from_true_vertical(angle: float) -> float:
    """Inverse of :func:`true_vertical_fov`: a vertical angle of view (degrees) -> the toolkit's FOV degrees."""
    return cameras.fov_from_focal(0.5 / math.tan(math.radians(angle) / 2.0))


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers: each raises InputError naming the field


def _number(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(f"{name} must be in [{lo:.6g}, {hi:.6g}], got {value!r}")
    return float(value)


def _integer(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def _wrap(angle: float | np.ndarray) -> Any:
    """Angles (radians) into [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


# ----------------------------------------------------------------------------------------------------------------
# Keyframes and paths


@dataclass(frozen=True)
class Keyframe:
    """One keyframe of a path.

    * ``yaw``, ``pitch``: radians, offsets from the frontal view as ``cameras.camera`` takes them (yaw within
      ``settings.YAW``, pitch within ``settings.PITCH``; negative pitch looks from above).
    * ``radius``: the camera's distance to the pivot (world units); None: the model's default radius.
    * ``fov``: the toolkit's FOV degrees (module docstring); None: the model's default.
    * The latent: ``seed`` with truncation ``psi`` / ``cutoff`` (None: all ws truncated), or ``ws``
      [1, num_ws, w_dim] (e.g. from ``eg3d invert``); both None keeps the current latent (the one the viewer
      shows, or ``--latent`` / the first seed on the command line).
    * ``duration``: seconds from this keyframe to the next (the last keyframe's counts only in a loop).
    """

    yaw: float
    pitch: float
    radius: float | None = None
    fov: float | None = None
    seed: int | None = None
    psi: float = 0.7
    cutoff: int | None = None
    ws: torch.Tensor | None = field(default=None, repr=False)
    duration: float = 2.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "yaw", _number("yaw", self.yaw, *YAW))
        set_(self, "pitch", _number("pitch", self.pitch, *PITCH))
        if self.radius is not None:
            set_(self, "radius", _number("radius", self.radius, *RADIUS))
        if self.fov is not None:
            set_(self, "fov", _number("fov", self.fov, *FOV))
        if self.seed is not None:
            _integer("seed", self.seed, *SEED)
        set_(self, "psi", _number("psi", self.psi, *TRUNCATION_PSI))
        if self.cutoff is not None:
            _integer("cutoff", self.cutoff, *CUTOFF)
        if self.ws is not None:
            if self.seed is not None:
                raise InputError("a keyframe's latent is a seed or ws, not both")
            ws = self.ws
            if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[0] != 1 or not ws.is_floating_point():
                shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
                raise InputError(f"ws must be a float tensor [1, num_ws, w_dim], got {shape}")
            if ws.shape[1] < 1 or ws.shape[2] < 1 or ws.numel() > 2**20:
                raise InputError(f"ws must be a float tensor [1, num_ws, w_dim] of at most 2**20 values, "
                                 f"got {list(ws.shape)}")
            ws = ws.detach().to("cpu", torch.float32).contiguous()
            if not torch.isfinite(ws).all():
                raise InputError("ws holds NaN or infinite values")
            set_(self, "ws", ws)
        set_(self, "duration", _number("duration", self.duration, *DURATION))

    @property
    def has_latent(self) -> bool:
        return self.seed is not None or self.ws is not None

    def _key(self) -> tuple[Any, ...]:
        ws = None if self.ws is None else (tuple(self.ws.shape), self.ws.numpy().tobytes())
        return (self.yaw, self.pitch, self.radius, self.fov, self.seed, self.psi, self.cutoff, ws, self.duration)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyframe) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class PathView:
    """What a path shows at time ``t`` (seconds): the camera and the latent blend.

    ``radius`` / ``fov`` are None where the path leaves them to the model's defaults. The latent is
    ``(1 - weight) * latent(keyframe index0) + weight * latent(keyframe index1)`` (see :func:`path_latents`).
    """

    t: float
    yaw: float
    pitch: float
    radius: float | None
    fov: float | None
    index0: int
    index1: int
    weight: float


@dataclass(frozen=True)
class CameraPath:
    """Keyframes, frame rate, and how to move between them (module docstring).

    ``loop``: the path returns from the last keyframe to the first (over the last keyframe's duration) and the
    video ends one frame before it is back, so that it loops seamlessly.
    """

    keyframes: tuple[Keyframe, ...] = ()
    fps: int = 30
    constant_speed: bool = False
    loop: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.keyframes, (tuple, list)) or not all(isinstance(k, Keyframe) for k in self.keyframes):
            raise InputError("keyframes must be a sequence of Keyframe")
        object.__setattr__(self, "keyframes", tuple(self.keyframes))
        if len(self.keyframes) > MAX_KEYFRAMES:
            raise InputError(f"a path holds at most {MAX_KEYFRAMES} keyframes, got {len(self.keyframes)}")
        _integer("fps", self.fps, *FPS)
        _boolean("constant_speed", self.constant_speed)
        _boolean("loop", self.loop)
        if self.num_frames > MAX_FRAMES:
            raise InputError(f"the path is {self.num_frames} frames long ({self.total_seconds:g} s at {self.fps} fps), "
                             f"more than {MAX_FRAMES}")

    # -- timing ------------------------------------------------------------------------------------------------------

    @property
    def segment_durations(self) -> tuple[float, ...]:
        """Seconds of each segment: keyframe i -> i + 1 (and the last -> the first in a loop)."""
        d = tuple(k.duration for k in self.keyframes)
        return d if self.loop else d[:-1]

    @property
    def keyframe_times(self) -> tuple[float, ...]:
        """The time (seconds) at which the camera is at each keyframe (without ``constant_speed``)."""
        return tuple(float(t) for t in np.concatenate([[0.0], np.cumsum(self.segment_durations)])[:len(self.keyframes)])

    @property
    def total_seconds(self) -> float:
        return float(sum(self.segment_durations))

    @property
    def num_frames(self) -> int:
        """Frames of the video: an open path shows its first and last keyframes (one frame for one keyframe); a loop
        ends one frame before it is back at the start. No keyframes, no frames."""
        if not self.keyframes:
            return 0
        n = round(self.total_seconds * self.fps)
        return max(1, n) if self.loop else n + 1

    def frame_times(self) -> np.ndarray:
        """The time of each frame, seconds: [num_frames] float64, evenly spaced from 0 to the end (open) or to one
        step short of it (loop)."""
        n = self.num_frames
        if n <= 1:
            return np.zeros(n)
        total = self.total_seconds
        return total * np.arange(n) / (n if self.loop else n - 1)

    # -- editing -----------------------------------------------------------------------------------------------------

    def with_keyframes(self, keyframes: Sequence[Keyframe]) -> CameraPath:
        return dataclasses.replace(self, keyframes=tuple(keyframes))

    def _index(self, index: int, extra: int = 0) -> int:
        n = len(self.keyframes) + extra
        if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
            raise InputError(f"keyframe index {index!r} out of range for {len(self.keyframes)} keyframes")
        return index % n if n else 0

    def append(self, keyframe: Keyframe) -> CameraPath:
        return self.with_keyframes([*self.keyframes, keyframe])

    def insert(self, index: int, keyframe: Keyframe) -> CameraPath:
        """``keyframe`` at position ``index`` (0 .. len: len appends)."""
        i = self._index(index, extra=1)
        return self.with_keyframes([*self.keyframes[:i], keyframe, *self.keyframes[i:]])

    def replace(self, index: int, keyframe: Keyframe) -> CameraPath:
        i = self._index(index)
        return self.with_keyframes([*self.keyframes[:i], keyframe, *self.keyframes[i + 1:]])

    def delete(self, index: int) -> CameraPath:
        i = self._index(index)
        return self.with_keyframes([*self.keyframes[:i], *self.keyframes[i + 1:]])

    def move(self, index: int, to: int) -> CameraPath:
        """The keyframe at ``index`` moved to position ``to`` (the others keep their order)."""
        i, j = self._index(index), self._index(to)
        rest = [*self.keyframes[:i], *self.keyframes[i + 1:]]
        return self.with_keyframes([*rest[:j], self.keyframes[i], *rest[j:]])

    # -- interpolation -----------------------------------------------------------------------------------------------

    def views(self, times: Sequence[float] | np.ndarray, defaults: cameras.CameraDefaults | None = None
              ) -> list[PathView]:
        """The views at ``times`` (seconds, clamped to the path): see :meth:`view_at`."""
        return _Curve(self, defaults).views(np.asarray(times, dtype=np.float64))

    def view_at(self, t: float, defaults: cameras.CameraDefaults | None = None) -> PathView:
        """The view at ``t`` seconds (clamped to [0, total_seconds]; a loop wraps instead).

        ``defaults`` (``cameras.camera_defaults(config)``) fills keyframes whose radius or FOV is None. Without it
        such fields stay None when every keyframe leaves them None (the model's default throughout); a path that
        mixes set and unset values needs ``defaults`` (InputError otherwise).
        """
        return self.views([t], defaults)[0]


def _fill(given: list[float | None], name: str, default: float | None) -> tuple[list[float], bool]:
    """Keyframe values with None replaced by ``default``, and whether they all stay unset (None throughout and no
    default: any constant serves the spline, the views say None)."""
    if default is None:
        if all(v is None for v in given):
            return [1.0] * len(given), True
        if any(v is None for v in given):
            raise InputError(f"some keyframes leave {name} to the model's default: the model's camera defaults are "
                             f"needed to interpolate")
    return [float(default if v is None else v) for v in given], False  # type: ignore[arg-type]


def _tangent(before: np.ndarray, after: np.ndarray, dt_before: float, dt_after: float) -> np.ndarray:
    """The tangent at a knot between chords of slopes ``before`` and ``after`` [D] lasting ``dt_before`` /
    ``dt_after`` seconds: Catmull-Rom's (the derivative of the parabola through the three knots: the time-weighted
    mean of the slopes), limited per coordinate as monotone cubic interpolation (Fritsch-Carlson) does: zero where
    the coordinate turns back or holds (the slopes differ in sign or one is zero), and at most three times the
    smaller slope, so that no coordinate overshoots its keyframes."""
    mean = (dt_after * before + dt_before * after) / (dt_before + dt_after)
    limit = 3.0 * np.minimum(np.abs(before), np.abs(after))
    return np.where(before * after > 0, np.clip(mean, -limit, limit), 0.0)


def _tangents(p: np.ndarray, knots: np.ndarray, closed: bool) -> np.ndarray:
    """Tangents (dvalue / dt) at the knots of values p [m + 1, D] at times knots [m + 1] (:func:`_tangent`).

    An open path's ends get zero (it starts and ends at rest). A closed path (p[m] is p[0] again, yaw possibly a
    turn further) uses the periodic neighbours across the seam, so both ends share one tangent."""
    m = len(p) - 1
    out = np.zeros_like(p)
    if m < 1:
        return out
    dt = np.diff(knots)
    slope = np.diff(p, axis=0) / dt[:, None]
    for i in range(1, m):
        out[i] = _tangent(slope[i - 1], slope[i], dt[i - 1], dt[i])
    if closed:
        out[0] = out[m] = _tangent(slope[-1], slope[0], dt[-1], dt[0])
    return out


class _Curve:
    """A path's spline, built once, evaluated at many times (``CameraPath.views``)."""

    def __init__(self, path: CameraPath, defaults: cameras.CameraDefaults | None) -> None:
        if not path.keyframes:
            raise InputError("the camera path has no keyframes")
        self.path = path
        kfs = list(path.keyframes)
        self.n = len(kfs)
        radius, self.radius_unset = _fill([k.radius for k in kfs], "radius",
                                          None if defaults is None else defaults.radius)
        fov, self.fov_unset = _fill([k.fov for k in kfs], "fov", None if defaults is None else defaults.fov)
        yaw = np.unwrap([k.yaw for k in kfs]) if self.n > 1 else np.array([kfs[0].yaw])
        values = np.stack([yaw, [k.pitch for k in kfs], np.log(radius), fov], axis=1)
        if path.loop:  # the closing segment back to the first keyframe, the short way round
            first = values[0].copy()
            first[0] = values[-1, 0] + _wrap(values[0, 0] - values[-1, 0])
            values = np.concatenate([values, first[None]])
        self.values = values
        self.knots = np.concatenate([[0.0], np.cumsum(path.segment_durations)])
        self.tangents = _tangents(values, self.knots, path.loop)
        self.arc: tuple[np.ndarray, np.ndarray] | None = None
        if path.constant_speed and len(values) > 1:
            self.arc = self._arc_table()

    def evaluate(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spline values at knot-time t [K] -> (values [K, D], segment index [K], local parameter [K] in [0, 1])."""
        m = len(self.values) - 1
        if m == 0:
            return np.repeat(self.values, len(t), axis=0), np.zeros(len(t), dtype=np.int64), np.zeros(len(t))
        seg = np.clip(np.searchsorted(self.knots, t, side="right") - 1, 0, m - 1)
        h = self.knots[seg + 1] - self.knots[seg]
        s = np.clip((t - self.knots[seg]) / h, 0.0, 1.0)
        s2, s3 = s * s, s * s * s
        h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
        p0, p1 = self.values[seg], self.values[seg + 1]
        m0, m1 = self.tangents[seg] * h[:, None], self.tangents[seg + 1] * h[:, None]
        v = h00[:, None] * p0 + h10[:, None] * m0 + h01[:, None] * p1 + h11[:, None] * m1
        return v, seg, s

    @staticmethod
    def positions(v: np.ndarray) -> np.ndarray:
        """Camera positions [K, 3] for spline values [K, D] (as ``cameras.lookat_pose`` places them)."""
        h = cameras.FRONTAL + v[:, 0]
        vv = np.clip(cameras.FRONTAL + v[:, 1], 1e-5, math.pi - 1e-5)
        phi = np.arccos(1 - 2 * vv / math.pi)
        r = np.exp(v[:, 2])
        return r[:, None] * np.stack([np.sin(phi) * np.cos(math.pi - h), np.cos(phi),
                                      np.sin(phi) * np.sin(math.pi - h)], axis=1)

    def _arc_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(knot times [S], arc length at them [S]) sampled densely; None when the camera does not move."""
        m = len(self.values) - 1
        t = np.concatenate([np.linspace(self.knots[i], self.knots[i + 1], ARC_SAMPLES, endpoint=False)
                            for i in range(m)] + [self.knots[-1:]])
        pos = self.positions(self.evaluate(t)[0])
        length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pos, axis=0), axis=1))])
        if length[-1] <= 1e-9 * max(1.0, float(np.abs(pos).max())):
            return None
        return t, length

    def knot_time(self, t: np.ndarray) -> np.ndarray:
        """Path time (seconds) -> spline time: the identity, or the arc-length reparametrisation."""
        total = self.knots[-1]
        if self.path.loop and total > 0:
            t = np.where(t >= total, np.mod(t, total), t)
        t = np.clip(t, 0.0, total)
        if self.arc is None:
            return t
        times, length = self.arc
        return np.interp(t / total * length[-1], length, times)

    def views(self, t: np.ndarray) -> list[PathView]:
        v, seg, s = self.evaluate(self.knot_time(t))
        pitch = np.clip(v[:, 1], *PITCH)
        fov = np.clip(v[:, 3], *FOV)
        out = []
        for k in range(len(t)):
            i0 = int(seg[k]) % self.n
            i1 = (i0 + 1) % self.n if len(self.values) > 1 else i0
            out.append(PathView(
                t=float(t[k]), yaw=float(_wrap(v[k, 0])), pitch=float(pitch[k]),
                radius=None if self.radius_unset else float(np.exp(v[k, 2])),
                fov=None if self.fov_unset else float(fov[k]),
                index0=i0, index1=i1, weight=float(s[k]) if i1 != i0 else 0.0))
        return out


# ----------------------------------------------------------------------------------------------------------------
# Cameras and latents of a path's frames


def view_camera(view: PathView, defaults: cameras.CameraDefaults) -> torch.Tensor:
    """The camera vector [1, 25] of a view (our convention: OpenCV cam2world + normalised intrinsics)."""
    focal = None if view.fov is None else cameras.focal_from_fov(view.fov)
    return cameras.camera(defaults, yaw=view.yaw, pitch=view.pitch, radius=view.radius, focal=focal)


def path_views(path: CameraPath, config: GeneratorConfig) -> list[PathView]:
    """The view of every frame of the path [num_frames]."""
    return path.views(path.frame_times(), cameras.camera_defaults(config))


def path_cameras(path: CameraPath, config: GeneratorConfig) -> torch.Tensor:
    """Camera vectors [num_frames, 25] of the path's frames (the model's pivot; its defaults where keyframes leave
    radius or FOV unset)."""
    defaults = cameras.camera_defaults(config)
    views = path.views(path.frame_times(), defaults)
    if not views:
        raise InputError("the camera path has no keyframes")
    return torch.cat([view_camera(v, defaults) for v in views])


def keyframe_ws(keyframe: Keyframe, G: Any, current_ws: torch.Tensor | None = None, index: int | None = None
                ) -> torch.Tensor:
    """A keyframe's latent ws [1, num_ws, w_dim] on the CPU: its seed mapped like ``latents.LatentSource`` (the
    frontal conditioning camera), its ws (checked against the model), or ``current_ws`` when it has neither."""
    from .latents import LatentSource

    where = "keyframe" if index is None else f"keyframe {index}"
    if keyframe.seed is not None:
        return LatentSource(seed=keyframe.seed, psi=keyframe.psi, cutoff=keyframe.cutoff).ws(G).cpu()
    ws = keyframe.ws if keyframe.ws is not None else current_ws
    if ws is None:
        raise InputError(f"{where} has no latent (a seed or ws) and no current latent was given")
    if ws.ndim != 3 or tuple(ws.shape) != (1, G.num_ws, G.w_dim):
        raise InputError(f"{where}: ws of shape {list(ws.shape)}, but the model takes [1, {G.num_ws}, {G.w_dim}]")
    return ws.detach().to("cpu", torch.float32)


def path_latents(path: CameraPath, G: Any, current_ws: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """ws [1, num_ws, w_dim] (CPU, float32) for each frame, in order.

    Between keyframes i and i + 1 the latent is the linear blend ``(1 - a) ws_i + a ws_(i+1)`` in W with ``a`` the
    spline's parameter in that segment (``PathView.weight``); a seed keyframe's ws are its z mapped and truncated,
    so its own psi holds at the keyframe. Why W and not a slerp of z: ws given by an optimiser have no z, a path
    may mix both, and W is the space StyleGAN trains to be the perceptually linear one (its path length
    regularisation); truncation is linear in w too, so blending truncated ws equals truncating the blend.
    Keyframes without a latent take ``current_ws`` [1, num_ws, w_dim]. Frames whose weight is 0 or whose two
    keyframes give equal ws yield the same tensor object again, so a plane cache keyed on ws hits.
    """
    views = path_views(path, G.config)
    cache: dict[int, torch.Tensor] = {}

    def ws_of(i: int) -> torch.Tensor:
        if i not in cache:
            cache[i] = keyframe_ws(path.keyframes[i], G, current_ws, i)
        return cache[i]

    for i in range(len(path.keyframes)):  # every keyframe's latent checked before the first frame
        ws_of(i)
    for view in views:
        a, b = ws_of(view.index0), ws_of(view.index1)
        if view.weight <= 0.0 or a is b or torch.equal(a, b):
            yield a
        elif view.weight >= 1.0:
            yield b
        else:
            yield torch.lerp(a, b, view.weight)


# ----------------------------------------------------------------------------------------------------------------
# Our JSON


def _encode_ws(ws: torch.Tensor) -> dict[str, Any]:
    data = ws.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes()
    return {"shape": list(ws.shape), "dtype": "float32", "data": base64.b64encode(data).decode("ascii")}


def _decode_ws(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, dict) or set(value) != {"shape", "dtype", "data"}:
        raise InputError(f"{name} must be an object with shape, dtype and data")
    shape = value["shape"]
    if (not isinstance(shape, list) or len(shape) != 3 or shape[0] != 1
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 2**20 for s in shape)):
        raise InputError(f"{name}.shape must be [1, num_ws, w_dim], got {shape!r}")
    if value["dtype"] != "float32":
        raise InputError(f"{name}.dtype must be float32, got {value['dtype']!r}")
    if not isinstance(value["data"], str):
        raise InputError(f"{name}.data must be base64 text")
    try:
        raw = base64.b64decode(value["data"].encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise InputError(f"{name}.data is not valid base64") from None
    count = shape[0] * shape[1] * shape[2]
    if len(raw) != 4 * count:
        raise InputError(f"{name}.data holds {len(raw) // 4} values, shape {shape} needs {count}")
    array = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    if not np.isfinite(array).all():
        raise InputError(f"{name} holds NaN or infinite values")
    return torch.from_numpy(array.copy())


def path_to_dict(path: CameraPath) -> dict[str, Any]:
    """Our JSON document of a path (what :func:`save_path` writes)."""
    keyframes = []
    for k in path.keyframes:
        item: dict[str, Any] = {"yaw": k.yaw, "pitch": k.pitch, "radius": k.radius, "fov": k.fov,
                                "duration": k.duration}
        if k.seed is not None:
            item.update(seed=k.seed, psi=k.psi, cutoff=k.cutoff)
        elif k.ws is not None:
            item["ws"] = _encode_ws(k.ws)
        keyframes.append(item)
    return {"format": FORMAT, "version": VERSION, "fps": path.fps, "constant_speed": path.constant_speed,
            "loop": path.loop, "keyframes": keyframes}


_KEYFRAME_FIELDS = {"yaw", "pitch", "radius", "fov", "duration", "seed", "psi", "cutoff", "ws"}


def path_from_dict(data: Any) -> CameraPath:
    """A path from our JSON document; InputError naming the first bad field."""
    if not isinstance(data, dict):
        raise InputError("a camera path must be a JSON object")
    if data.get("format") != FORMAT:
        raise InputError(f"format must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != VERSION:
        raise InputError(f"version {data.get('version')!r} is not supported (this toolkit reads version {VERSION})")
    unknown = set(data) - {"format", "version", "fps", "constant_speed", "loop", "keyframes"}
    if unknown:
        raise InputError(f"unknown field {sorted(unknown)[0]!r}")
    items = data.get("keyframes")
    if not isinstance(items, list):
        raise InputError("keyframes must be a list")
    if len(items) > MAX_KEYFRAMES:
        raise InputError(f"keyframes: at most {MAX_KEYFRAMES}, got {len(items)}")
    keyframes = []
    for i, item in enumerate(items):
        name = f"keyframes[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{name} must be an object")
        unknown = set(item) - _KEYFRAME_FIELDS
        if unknown:
            raise InputError(f"{name}: unknown field {sorted(unknown)[0]!r}")
        for key in ("yaw", "pitch"):
            if key not in item:
                raise InputError(f"{name}.{key} is missing")
        kwargs = {k: v for k, v in item.items() if k != "ws"}
        if item.get("ws") is not None:
            kwargs["ws"] = _decode_ws(f"{name}.ws", item["ws"])
        if kwargs.get("psi") is None:
            kwargs.pop("psi", None)
        if kwargs.get("duration") is None:
            kwargs.pop("duration", None)
        try:
            keyframes.append(Keyframe(**kwargs))
        except InputError as e:
            raise InputError(f"{name}.{e}") from None
    return CameraPath(tuple(keyframes), fps=data.get("fps", 30), constant_speed=data.get("constant_speed", False),
                      loop=data.get("loop", False))


def save_path(path: CameraPath, file: str | os.PathLike[str]) -> Path:
    """Write ``path`` as our JSON (``"format": "eg3d-camera-path", "version": 1``), atomically. A path too large for
    :func:`load_path` to read back (more than ``MAX_FILE_BYTES``: many keyframes with large ws) is an InputError and
    writes nothing."""
    text = json.dumps(path_to_dict(path), allow_nan=False, indent=1) + "\n"
    if len(text) > MAX_FILE_BYTES:
        raise InputError(f"the camera path takes {len(text)} bytes as JSON, more than a path file may hold "
                         f"({MAX_FILE_BYTES}): fewer keyframes with their own ws")
    return write_bytes(file, text.encode("utf-8"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(file: str | os.PathLike[str], what: str = "camera path") -> Any:
    """A JSON file of at most ``MAX_FILE_BYTES``; InputError for a missing, oversized or malformed file."""
    file = Path(file)
    if not file.is_file():
        raise InputError(f"{file}: no such {what} file")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{file}: {size} bytes, more than a {what} may hold ({MAX_FILE_BYTES})")
    try:
        with open(file, "rb") as f:
            text = f.read(MAX_FILE_BYTES + 1).decode("utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"{file}: not a JSON {what} ({' '.join(str(e).split())})") from None


def load_path(file: str | os.PathLike[str]) -> CameraPath:
    """Read our JSON path; every field is validated (InputError: ``FILE: keyframes[2].pitch must be ...``)."""
    data = read_json(file)
    try:
        return path_from_dict(data)
    except InputError as e:
        raise InputError(f"{file}: {e}") from None


# ----------------------------------------------------------------------------------------------------------------
# nerfstudio's camera_path.json

# OpenCV camera axes (x right, y down, z forward) -> OpenGL ones (x right, y up, z backward): flip y and z.
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def orbit_angles(position: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, radius) of a camera at ``position`` [3]: the inverse of ``cameras.lookat_pose``, whose cameras
    sit on a sphere around the world origin (and look at the pivot): pitch = -pi/2 * height / radius, yaw 0 on
    +z."""
    d = np.asarray(position, dtype=np.float64)
    r = float(np.linalg.norm(d))
    if r <= 0:
        raise InputError("the camera sits on the pivot")
    pitch = -math.pi / 2 * float(np.clip(d[1] / r, -1.0, 1.0))
    yaw = float(_wrap(math.pi / 2 - math.atan2(d[2], d[0])))
    return yaw, pitch, r


def _view_matrices(views: list[PathView], defaults: cameras.CameraDefaults) -> tuple[np.ndarray, list[float]]:
    """OpenGL cam2world [N, 4, 4] and true vertical FOVs (degrees) of views."""
    c = torch.cat([view_camera(v, defaults) for v in views])
    pose, k = cameras.split_camera_vector(c)
    gl = pose.double().numpy() @ OPENCV_TO_OPENGL
    fovs = [math.degrees(2 * math.atan(0.5 / float(f))) for f in k[:, 1, 1]]
    return gl, fovs


def to_nerfstudio(path: CameraPath, config: GeneratorConfig, resolution: int) -> dict[str, Any]:
    """nerfstudio's ``camera_path.json`` for a path rendered at ``resolution`` x ``resolution``.

    As nerfstudio's viewer writes it: ``keyframes`` (``matrix``: the keyframe's cam2world, row-major 4x4, ``fov``,
    ``aspect``, ``override_transition_enabled`` / ``override_transition_sec``: the keyframe's duration),
    ``camera_path`` (one entry per frame: ``camera_to_world`` row-major 4x4, ``fov``, ``aspect``; what
    ``ns-render camera-path`` renders), ``render_height`` / ``render_width``, ``fps``, ``seconds``, ``is_cycle``,
    ``smoothness_value``, ``camera_type`` ``perspective``, ``default_fov``, ``default_transition_sec``.
    ``seconds`` is the frame count over ``fps`` (``ns-render`` plays ``len(camera_path) / seconds`` frames a
    second), so an open path, which shows its last keyframe as a frame of its own, reads one frame longer than
    ``total_seconds``.
    Matrices are in OpenGL camera axes (x right, y up, looking down -z) in our world (y up, units of the model's
    scene); ``fov`` is the true vertical angle of view in degrees (:func:`true_vertical_fov`). Latents have no
    place in nerfstudio's format and are not written.
    """
    _integer("resolution", resolution, 1, 16384)
    if not path.keyframes:
        raise InputError("the camera path has no keyframes")
    defaults = cameras.camera_defaults(config)
    key_views = [PathView(0.0, k.yaw, k.pitch, k.radius, k.fov, i, i, 0.0) for i, k in enumerate(path.keyframes)]
    key_gl, key_fov = _view_matrices(key_views, defaults)
    frame_gl, frame_fov = _view_matrices(path.views(path.frame_times(), defaults), defaults)
    default_fov = true_vertical_fov(defaults.fov)
    return {
        "default_fov": default_fov,
        "default_transition_sec": path.keyframes[0].duration,
        "keyframes": [{"matrix": m.reshape(-1).tolist(), "fov": f, "aspect": 1.0, "override_transition_enabled": True,
                       "override_transition_sec": k.duration}
                      for m, f, k in zip(key_gl, key_fov, path.keyframes, strict=True)],
        "camera_type": "perspective",
        "render_height": resolution,
        "render_width": resolution,
        "fps": path.fps,
        "seconds": path.num_frames / path.fps,
        "is_cycle": path.loop,
        "smoothness_value": 0.5,
        "camera_path": [{"camera_to_world": m.reshape(-1).tolist(), "fov": f, "aspect": 1.0}
                        for m, f in zip(frame_gl, frame_fov, strict=True)],
    }


def _matrix(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, list) or len(value) != 16:
        raise InputError(f"{name} must be a list of 16 numbers (a row-major 4x4 matrix)")
    m = np.array([_number(f"{name}[{i}]", v) for i, v in enumerate(value)]).reshape(4, 4)
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(f"{name}: the last row of a camera-to-world matrix must be 0 0 0 1")
    rot = m[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise InputError(f"{name}: the rotation is not orthonormal (nerfstudio writes rigid camera-to-world matrices)")
    return m


def from_nerfstudio(data: Any, config: GeneratorConfig, max_deviation_deg: float | None = 5.0,
                    frames: bool = False) -> CameraPath:
    """A path from nerfstudio's ``camera_path.json`` (a parsed dict), in the model's world.

    Its ``keyframes`` become ours (durations from ``override_transition_sec`` or ``default_transition_sec``, else
    ``seconds`` shared out): an editable path, which our spline interpolates a little differently from nerfstudio's.
    ``frames`` (or a file without keyframes) takes every ``camera_path`` entry as a keyframe instead, 1 / fps apart:
    the frames nerfstudio renders, exactly.
    Each camera becomes an orbit camera (yaw, pitch, radius: its position, as ``cameras.lookat_pose`` places
    them) looking at the model's pivot, with the FOV of its
    vertical angle; EG3D's cameras always look at the pivot without roll, so a camera looking more than
    ``max_deviation_deg`` away from the pivot is an InputError (None: keep the positions, whatever the
    orientation). ``is_cycle`` sets ``loop``; the frame rate is ``fps`` (rounded, default 30).
    """
    if not isinstance(data, dict):
        raise InputError("a nerfstudio camera path must be a JSON object")
    defaults = cameras.camera_defaults(config)
    fps = data.get("fps", 30)
    fps = round(_number("fps", fps, *FPS))
    loop = data.get("is_cycle", False)
    _boolean("is_cycle", loop)
    camera_type = data.get("camera_type", "perspective")
    if camera_type != "perspective":
        raise InputError(f"camera_type {camera_type!r} is not supported (EG3D renders perspective cameras)")
    keyframes = data.get("keyframes")
    if isinstance(keyframes, list) and keyframes and not frames:
        entries, key, source = keyframes, "matrix", "keyframes"
        default_sec = data.get("default_transition_sec")
        seconds = data.get("seconds")
        n_seg = len(keyframes) if loop else len(keyframes) - 1
        if default_sec is None:
            default_sec = float(seconds) / max(n_seg, 1) if isinstance(seconds, (int, float)) and seconds else 2.0
        default_sec = _number("default_transition_sec", default_sec, *DURATION)
    else:
        entries, key, source = data.get("camera_path"), "camera_to_world", "camera_path"
        if not isinstance(entries, list) or not entries:
            raise InputError("the file has neither keyframes nor camera_path entries")
        default_sec = 1.0 / fps
    if len(entries) > MAX_KEYFRAMES:
        raise InputError(f"{source}: at most {MAX_KEYFRAMES} cameras, got {len(entries)}")
    out = []
    for i, entry in enumerate(entries):
        name = f"{source}[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{name} must be an object")
        m = _matrix(f"{name}.{key}", entry.get(key))
        cv = m @ OPENCV_TO_OPENGL  # OpenGL camera axes -> OpenCV (the flip is its own inverse)
        yaw, pitch, radius = orbit_angles(cv[:3, 3])
        if max_deviation_deg is not None:
            to_pivot = np.asarray(defaults.pivot) - cv[:3, 3]
            cos = float(np.dot(cv[:3, 2], to_pivot) / np.linalg.norm(to_pivot))
            off = math.degrees(math.acos(min(1.0, max(-1.0, cos))))
            if off > max_deviation_deg:
                raise InputError(f"{name}: the camera looks {off:.1f} degrees away from the model's pivot; EG3D "
                                 f"cameras orbit the pivot (allow it with a larger deviation)")
        fov = entry.get("fov")
        fov = None if fov is None else fov_from_true_vertical(_number(f"{name}.fov", fov, 0.01, 179.0))
        duration = default_sec
        if source == "keyframes" and entry.get("override_transition_enabled") and \
                entry.get("override_transition_sec") is not None:
            duration = _number(f"{name}.override_transition_sec", entry["override_transition_sec"], *DURATION)
        try:
            out.append(Keyframe(yaw=yaw, pitch=pitch, radius=radius, fov=fov, duration=duration))
        except InputError as e:
            raise InputError(f"{name}: {e}") from None
    return CameraPath(tuple(out), fps=fps, loop=loop)


__all__ = ["FORMAT", "FOV", "VERSION", "CameraPath", "Keyframe", "PathView", "from_nerfstudio", "keyframe_ws",
           "load_path", "orbit_angles", "path_cameras", "path_from_dict", "path_latents", "path_to_dict",
           "path_views", "read_json", "save_path", "to_nerfstudio", "true_vertical_fov", "fov_from_true_vertical",
           "view_camera"]
