"""Cameras in the original EG3D conventions.

* World: +y up. Cameras sit on a sphere of radius ``radius`` around the world origin and look at a pivot.
* Camera frame: OpenCV (x right, y down, z forward); poses are 4x4 cam2world matrices.
* Angles: ``yaw`` (h) and ``pitch`` (v) are the original sampler's angles; (pi/2, pi/2) is frontal
  (camera on +z). v is not the polar angle: phi = arccos(1 - 2 v / pi).
* Intrinsics are normalised by the image size (principal point 0.5, 0.5).
* The 25-number camera vector is the row-major 4x4 pose followed by the row-major 3x3 intrinsics.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import GeneratorConfig
from .errors import CheckpointError, InputError

FRONTAL = math.pi / 2
# The original gen_videos orbit and visualizer write pi as 3.14; kept so that their poses match.
SCRIPT_PI = 3.14
FFHQ_FOCAL = 4.2647  # focal written into every FFHQ/AFHQ dataset label (2985.29 / 700)
SHAPENET_FOCAL = 1.7074  # gen_videos' ShapeNet focal (= intrinsics_from_fov(45))
# MMagic's FFHQ/AFHQ cameras give fov 18.837; its focal rule 1 / (tan(fov / 2) * 1.414) (with math.pi) -> 4.26339.
OBJECT_VIEW = (math.radians(45.0), math.radians(-15.0))  # three-quarter view from slightly above (yaw, pitch)
MMAGIC_FACE_FOCAL = 1.0 / (math.tan(18.837 * math.pi / 360.0) * 1.414)


def _as_batch(x: float | Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


def lookat_pose(
    yaw: float | Sequence[float] | torch.Tensor,
    pitch: float | Sequence[float] | torch.Tensor,
    radius: float = 2.7,
    lookat: Sequence[float] = (0.0, 0.0, 0.0),
    up: Sequence[float] = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """Cam2world poses looking at ``lookat`` from the sampler angles.

    yaw, pitch: scalars or [N]. Returns float32 [N, 4, 4].
    """
    h, v = np.broadcast_arrays(_as_batch(yaw), _as_batch(pitch))
    v = np.clip(v, 1e-5, math.pi - 1e-5)
    phi = np.arccos(1 - 2 * v / math.pi)
    origin = radius * np.stack(
        [np.sin(phi) * np.cos(math.pi - h), np.cos(phi), np.sin(phi) * np.sin(math.pi - h)], axis=-1
    )
    forward = np.asarray(lookat, dtype=np.float64)[None] - origin
    return cam2world_from_forward(forward, origin, up)


def cam2world_from_forward(forward: np.ndarray, origin: np.ndarray, up: Sequence[float] = (0.0, 1.0, 0.0)) -> torch.Tensor:
    """Poses with the camera z axis along ``forward`` and no roll. forward, origin: [N, 3] -> [N, 4, 4]."""
    def normalize(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    forward = normalize(np.asarray(forward, dtype=np.float64))
    up0 = np.broadcast_to(np.asarray(up, dtype=np.float64), forward.shape)
    right = -normalize(np.cross(up0, forward))
    cam_up = normalize(np.cross(forward, right))
    pose = np.tile(np.eye(4), (forward.shape[0], 1, 1))
    pose[:, :3, 0], pose[:, :3, 1], pose[:, :3, 2] = right, cam_up, forward
    pose[:, :3, 3] = origin
    return torch.from_numpy(pose).float()


def intrinsics_from_focal(focal: float) -> torch.Tensor:
    """Normalised intrinsics [3, 3] with principal point (0.5, 0.5)."""
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float32)


def focal_from_fov(fov_deg: float) -> float:
    """The original's FOV -> focal rule (with its 3.14159 and 1.414 constants): 18.837 -> 4.26339."""
    return 1.0 / (math.tan(fov_deg * 3.14159 / 360) * 1.414)


def fov_from_focal(focal: float) -> float:
    """Inverse of ``focal_from_fov``."""
    return math.atan(1.0 / (focal * 1.414)) * 360 / 3.14159


def intrinsics_from_fov(fov_deg: float) -> torch.Tensor:
    return intrinsics_from_focal(focal_from_fov(fov_deg))


def camera_vector(pose: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """pose [N, 4, 4], intrinsics [3, 3] or [N, 3, 3] -> the 25-number camera vectors [N, 25]."""
    if pose.ndim == 2:
        pose = pose[None]
    k = intrinsics.expand(pose.shape[0], 3, 3) if intrinsics.ndim == 2 else intrinsics
    return torch.cat([pose.reshape(-1, 16), k.reshape(-1, 9)], dim=1).float()


def split_camera_vector(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c [N, 25] -> (cam2world [N, 4, 4], intrinsics [N, 3, 3])."""
    if c.ndim != 2 or c.shape[1] != 25:
        raise InputError(f"camera vectors must have shape [N, 25], got {list(c.shape)}")
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3)


@dataclass(frozen=True)
class CameraDefaults:
    """Where the scripts and viewers put the camera for a model: orbit radius, pivot and focal."""

    radius: float
    pivot: tuple[float, float, float]
    focal: float
    view_yaw: float = 0.0
    view_pitch: float = 0.0

    @property
    def view(self) -> tuple[float, float]:
        """The (yaw, pitch) offsets (radians) front ends open on: a view that shows the object."""
        return self.view_yaw, self.view_pitch

    @property
    def fov(self) -> float:
        return fov_from_focal(self.focal)


def camera_defaults(config: GeneratorConfig) -> CameraDefaults:
    """Defaults for a model: its stored average radius and pivot; ShapeNet-like models (white background,
    zeroed pose conditioning) use the ShapeNet focal, the others the FFHQ one, as gen_videos does.

    The opening view: objects (ShapeNet-like models) are shown from a three-quarter view slightly from above, where
    a car reads as a car (head-on it is a featureless blob); faces frontally."""
    r = config.rendering
    if r.c_gen_conditioning_zero and r.white_back:
        return CameraDefaults(radius=r.avg_camera_radius, pivot=tuple(r.avg_camera_pivot), focal=SHAPENET_FOCAL,
                              view_yaw=OBJECT_VIEW[0], view_pitch=OBJECT_VIEW[1])
    return CameraDefaults(radius=r.avg_camera_radius, pivot=tuple(r.avg_camera_pivot), focal=FFHQ_FOCAL)


def camera(
    defaults: CameraDefaults,
    yaw: float | Sequence[float] = 0.0,
    pitch: float | Sequence[float] = 0.0,
    radius: float | None = None,
    focal: float | None = None,
    pivot: Sequence[float] | None = None,
) -> torch.Tensor:
    """Camera vectors [N, 25] for yaw/pitch *offsets* (radians) from the frontal view."""
    pose = lookat_pose(
        FRONTAL + _as_batch(yaw), FRONTAL + _as_batch(pitch),
        radius=defaults.radius if radius is None else radius,
        lookat=defaults.pivot if pivot is None else pivot,
    )
    return camera_vector(pose, intrinsics_from_focal(defaults.focal if focal is None else focal))


def conditioning(defaults: CameraDefaults, batch: int = 1) -> torch.Tensor:
    """The frontal conditioning camera all original scripts feed to the mapping network: [batch, 25]."""
    return camera(defaults).expand(batch, 25).clone()


def orbit(num_frames: int, yaw_amplitude: float = 0.35, pitch_amplitude: float = 0.25,
          pitch_offset: float = -0.05) -> np.ndarray:
    """The gen_videos orbit as (yaw, pitch) offsets from frontal: [num_frames, 2] (float64)."""
    t = np.arange(num_frames) / max(num_frames, 1)
    yaw = SCRIPT_PI / 2 + yaw_amplitude * np.sin(2 * SCRIPT_PI * t) - FRONTAL
    pitch = SCRIPT_PI / 2 + pitch_offset + pitch_amplitude * np.cos(2 * SCRIPT_PI * t) - FRONTAL
    return np.stack([yaw, pitch], axis=1)


def turntable(num_frames: int, pitch: float = -0.2) -> np.ndarray:
    """A full 360 degree turn at a fixed pitch offset: [num_frames, 2] (yaw, pitch) offsets."""
    yaw = 2 * math.pi * np.arange(num_frames) / max(num_frames, 1)
    return np.stack([yaw, np.full(num_frames, pitch)], axis=1)


# ----------------------------------------------------------------------------------------------------------------
# Camera distributions (MMagic's camera samplers): the MMagic demo's orbits and FID50k-Camera's random cameras


@dataclass(frozen=True)
class CameraDistribution:
    """An MMagic camera: the orbit's centre and amplitudes (radians), placement and normalised focal.

    ``kind`` (``gaussian``/``uniform``) only decides which random draws MMagic makes while building cameras.
    """

    kind: str
    horizontal_mean: float
    horizontal_std: float
    vertical_mean: float
    vertical_std: float
    radius: float
    look_at: tuple[float, float, float]
    up: tuple[float, float, float]
    focal: float

    def cameras(self, yaw: np.ndarray, pitch: np.ndarray) -> torch.Tensor:
        """Camera vectors [N, 25] at sampler angles (yaw, v)."""
        pose = lookat_pose(yaw, pitch, self.radius, self.look_at, self.up)
        return camera_vector(pose, intrinsics_from_focal(self.focal))

    def draw(self, rs: np.random.RandomState) -> tuple[float, float]:
        """One random (yaw, v) from this distribution, drawn from ``rs`` (yaw first): mean + std * N(0, 1) for
        ``gaussian``, mean + std * U(-1, 1) for ``uniform``; v clamped to [1e-5, pi - 1e-5] as MMagic does."""
        if self.kind == "gaussian":
            h = self.horizontal_mean + self.horizontal_std * rs.randn()
            v = self.vertical_mean + self.vertical_std * rs.randn()
        else:
            h = self.horizontal_mean + self.horizontal_std * (2 * rs.rand() - 1)
            v = self.vertical_mean + self.vertical_std * (2 * rs.rand() - 1)
        return float(h), float(np.clip(v, 1e-5, math.pi - 1e-5))

    def mean(self) -> torch.Tensor:
        """MMagic's ``cond_forward`` camera (std 0): [1, 25]."""
        return self.cameras(np.array([self.horizontal_mean]), np.array([self.vertical_mean]))

    def orbit(self, num_images: int) -> torch.Tensor:
        """MMagic's closed elliptical orbit: [num_images, 25]; frame 0 is at the lowest point, not frontal."""
        t = 2 * math.pi * np.arange(num_images) / num_images
        return self.cameras(self.horizontal_mean + self.horizontal_std * np.sin(t),
                            self.vertical_mean + self.vertical_std * np.cos(t))


def camera_distribution(config: GeneratorConfig, mmagic_camera: dict[str, Any] | None = None) -> CameraDistribution:
    """A model's camera distribution: from an MMagic config's ``camera`` section (``parse_mmagic_camera``) when
    there is one.

    Otherwise from the model: face-like models get MMagic's FFHQ/AFHQ camera (Gaussian, yaw 3.14/2 +- 0.35,
    v 3.14/2 - 0.05 +- 0.25, fov 18.837) around the model's own average radius and pivot; ShapeNet-like models
    (zeroed conditioning, white background) swing round the car from slightly above (yaw pi/2 +- pi,
    v pi/2 - 0.25 +- 0.15) with the model's focal. (MMagic's ShapeNet orbit runs pole to pole around a z-up world,
    made for its own converted ShapeNet setting.)
    """
    defaults = camera_defaults(config)
    if mmagic_camera:
        cam = mmagic_camera
        for key in ("horizontal_mean", "vertical_mean"):
            if cam.get(key) is None:
                raise CheckpointError(f"the config's camera has no {key}")
        kind = "uniform" if str(cam.get("type") or "").lower().startswith("uniform") else "gaussian"
        focal = cam.get("normalized_focal") or defaults.focal
        return CameraDistribution(kind, float(cam["horizontal_mean"]), float(cam["horizontal_std"]),
                                  float(cam["vertical_mean"]), float(cam["vertical_std"]), float(cam["radius"]),
                                  tuple(float(v) for v in cam["look_at"]), tuple(float(v) for v in cam["up"]),
                                  float(focal))
    r = config.rendering
    if r.c_gen_conditioning_zero and r.white_back:
        return CameraDistribution("uniform", math.pi / 2, math.pi, math.pi / 2 - 0.25, 0.15, defaults.radius,
                                  defaults.pivot, (0.0, 1.0, 0.0), defaults.focal)
    return CameraDistribution("gaussian", SCRIPT_PI / 2, 0.35, SCRIPT_PI / 2 - 0.05, 0.25, defaults.radius,
                              defaults.pivot, (0.0, 1.0, 0.0), MMAGIC_FACE_FOCAL)
