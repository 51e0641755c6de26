"""A view's camera in the conventions other tools use, written next to a mesh so that mesh and render line up.

``<stem>.camera.json`` (:func:`camera_record`, ``"format": "eg3d-camera", "version": 1``) holds one view of a model
(yaw / pitch offsets, radius, the toolkit's FOV) as:

* ``opencv``: ``cam2world`` / ``world2cam`` 4x4 (camera axes x right, y down, looking down +z: our own
  convention), ``K`` 3x3 and ``fx fy cx cy`` in pixels for ``width`` x ``height``, with OpenCV's pixel centres at
  integer coordinates (the image centre is (W - 1) / 2, (H - 1) / 2);
* ``opengl``: ``cam2world`` with camera axes x right, y up, looking down -z (= OpenCV's with the y and z columns
  negated: ``cam2world_opencv @ diag(1, -1, -1, 1)``); nerfstudio and three.js use it;
* ``blender``: a camera object's ``matrix_world`` (Blender cameras also look down -z with y up) and its lens:
  ``lens`` (mm) on a ``sensor_width`` = ``sensor_height`` mm sensor with ``sensor_fit`` ``VERTICAL``, the render
  size, ``clip_start`` / ``clip_end`` (the model's ray interval). ``matrix_world`` is for a mesh imported with
  its Y-up axes turned to Blender's Z-up (the default of Blender's glTF and OBJ importers: (x, y, z) ->
  (x, -z, y)); ``matrix_world_y_up`` is for a mesh whose coordinates were kept as they are (Blender's PLY importer
  by default).

World coordinates are the mesh's: EG3D's world (y up, +z towards the frontal camera) in the model's scene units,
which is what ``eg3d mesh`` writes (``mesh.surface.Mesh``: world units). The rendered depth (``image_depth``) is
the distance from the camera centre along each pixel's ray, not the z coordinate.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import cameras
from .config import GeneratorConfig
from .errors import InputError
from .fileio import write_json

FORMAT = "eg3d-camera"
VERSION = 1
SENSOR_MM = 36.0
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: flip y and z (its own inverse)
Y_UP_TO_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # (x, y, z) -> (x, -z, y)


def _rows(m: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in m]


def camera_record(config: GeneratorConfig, yaw: float | None = None, pitch: float | None = None,
                  radius: float | None = None, fov: float | None = None, resolution: int | None = None,
                  mesh: str | None = None) -> dict[str, Any]:
    """The camera JSON document of one view (module docstring).

    yaw / pitch: radians from frontal (None: the model's opening view, ``cameras.camera_defaults(config).view``);
    radius, fov (the toolkit's degrees): None for the model's defaults; resolution: the image side the pixel
    intrinsics are for (None: the model's final image size); mesh: the mesh file's name, recorded for reference.
    """
    defaults = cameras.camera_defaults(config)
    if (yaw is None) != (pitch is None):
        raise InputError("give both yaw and pitch, or neither (the opening view)")
    if yaw is None or pitch is None:
        yaw, pitch = defaults.view
    res = config.img_resolution if resolution is None else resolution
    if isinstance(res, bool) or not isinstance(res, int) or not 1 <= res <= 16384:
        raise InputError(f"resolution must be an integer in [1, 16384], got {res!r}")
    focal = defaults.focal if fov is None else cameras.focal_from_fov(fov)
    c = cameras.camera(defaults, yaw=yaw, pitch=pitch, radius=radius, focal=focal)
    pose = c[0, :16].double().numpy().reshape(4, 4)
    # Re-orthonormalise in float64 (the camera vector is float32) so the matrices are rigid to double precision.
    u, _, vt = np.linalg.svd(pose[:3, :3])
    pose[:3, :3] = u @ vt
    fx = fy = float(c[0, 16]) * res
    cx = cy = res / 2 - 0.5
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    gl = pose @ OPENCV_TO_OPENGL
    vfov = math.degrees(2 * math.atan(0.5 / float(c[0, 16])))
    r = config.rendering
    return {
        "format": FORMAT,
        "version": VERSION,
        "mesh": mesh,
        "world": "EG3D world = the mesh's coordinates: y up, +z towards the frontal camera, model scene units",
        "view": {"yaw": float(yaw), "pitch": float(pitch),
                 "radius": float(defaults.radius if radius is None else radius),
                 "fov": float(defaults.fov if fov is None else fov), "pivot": [float(v) for v in defaults.pivot]},
        "width": res,
        "height": res,
        "vertical_fov_deg": vfov,
        "depth": "rendered depth is the distance along each pixel's ray from the camera centre, not z",
        "opencv": {"axes": "x right, y down, looking down +z; pixel centres at integer coordinates",
                   "cam2world": _rows(pose), "world2cam": _rows(np.linalg.inv(pose)), "K": _rows(k),
                   "fx": fx, "fy": fy, "cx": cx, "cy": cy},
        "opengl": {"axes": "x right, y up, looking down -z (cam2world_opencv @ diag(1, -1, -1, 1))",
                   "cam2world": _rows(gl)},
        "blender": {"axes": "camera looks down -z, y up; matrix_world for a mesh imported Y-up -> Z-up "
                            "(glTF / OBJ importer defaults), matrix_world_y_up for coordinates kept as they are",
                    "matrix_world": _rows(Y_UP_TO_BLENDER @ gl), "matrix_world_y_up": _rows(gl),
                    "lens": float(c[0, 16]) * SENSOR_MM, "sensor_fit": "VERTICAL", "sensor_width": SENSOR_MM,
                    "sensor_height": SENSOR_MM, "resolution_x": res, "resolution_y": res,
                    "clip_start": float(r.ray_start), "clip_end": float(r.ray_end)},
    }


def save_camera(record: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a :func:`camera_record` document, atomically."""
    return write_json(record, path, indent=1)


def mesh_camera_path(mesh_file: str | os.PathLike[str]) -> Path:
    """Where the camera of ``DIR/stem.ply`` goes: ``DIR/stem.camera.json``."""
    mesh_file = Path(mesh_file)
    return mesh_file.with_name(f"{mesh_file.stem}.camera.json")


__all__ = ["FORMAT", "OPENCV_TO_OPENGL", "VERSION", "Y_UP_TO_BLENDER", "camera_record", "mesh_camera_path",
           "save_camera"]
