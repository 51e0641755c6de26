"""Still images and shapes per latent, like the original ``gen_samples.py``.

Differences from the original script, on purpose:

* backbone noise is ``const`` by default (gen_samples passes none and so gets random noise: the same seed
  gives a slightly different image on every run); ``noise_mode="random"`` restores that;
* the focal is the model's usual one (``cameras.camera_defaults``: 4.2647 for faces, 1.7074 for ShapeNet-like
  models); gen_samples' ``--fov-deg`` is an integer option that silently renders with fov 18 (f = 4.46517);
* the volume renderer is deterministic (no jitter) unless ``RenderSettings(deterministic=False)``;
* meshes are in world units with optional vertex colours (``eg3d_core.mesh``); volumes (``.mrc``/``.npy``) hold
  exactly the array gen_samples writes (x flipped, borders set to -1000), so ChimeraX level 10 works as before.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import cameras
from .. import mesh as M
from ..errors import InputError
from ..fileio import atomic_file
from ..generator import Generator
from ..mesh import color_fn, density_fn, generator_mesh
from ..settings import RenderSettings
from ..visualize import SEED_LIMIT

# gen_samples' three views: (yaw, pitch) offsets from frontal.
DEFAULT_YAWS = (0.4, 0.0, -0.4)
DEFAULT_PITCHES = (-0.2,)
MESH_FORMATS = ("ply", "obj", "glb")
VOLUME_FORMATS = ("mrc", "npy")

_SEED_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,4-6"`` -> [0, 1, 4, 5, 6] (the original's syntax; ranges include both ends)."""
    seeds: list[int] = []
    for item in text.split(","):
        m = _SEED_ITEM.match(item)
        if not m:
            raise InputError(f"invalid seed list {text!r}: expected numbers and ranges like 0,1,4-6")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise InputError(f"invalid seed range {item.strip()!r}: the end is smaller than the start")
        if hi >= SEED_LIMIT:
            raise InputError(f"seed {hi} is out of range (seeds are < 2**32)")
        if hi - lo >= 1_000_000:
            raise InputError(f"seed range {item.strip()!r} is too long")
        seeds.extend(range(lo, hi + 1))
    return seeds


def render_outputs(G: Generator, planes: torch.Tensor, ws: torch.Tensor, c: torch.Tensor, settings: RenderSettings,
                   image_mode: str = "image") -> dict[str, torch.Tensor]:
    """Render cached planes [N, 3, C, H, W] of ws [N, num_ws, w_dim] from cameras c [N, 25]; the super-resolution
    runs only for the final ``image``."""
    with torch.no_grad():
        if image_mode == "image":
            return G.render_planes(planes, ws, c, **settings.synthesis_kwargs(G.config))
        features, depth = G.render(planes, c, **settings.render_kwargs(G.config))
    return {"image_raw": features[:, :3], "image_depth": depth}


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write uint8 [H, W, 3] (or [H, W]) as PNG via a temporary sibling + rename: never a half-written file."""
    from PIL import Image

    path = Path(path)
    with atomic_file(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path


def render_views(G: Generator, ws: torch.Tensor, yaws: Sequence[float] = DEFAULT_YAWS,
                 pitches: Sequence[float] = DEFAULT_PITCHES, settings: RenderSettings | None = None,
                 focal: float | None = None, image_mode: str = "image",
                 planes: torch.Tensor | None = None) -> np.ndarray:
    """One latent ws [1, num_ws, w_dim] seen from every (pitch, yaw) offset -> uint8 [rows*H, cols*W, 3]:
    one row per pitch, one column per yaw (gen_samples' default: a single row of three views).

    ``planes`` [1, 3, C, H, W]: ws's tri-planes under the settings' noise mode and precision when already computed
    (``latents.PlaneCache``); computed here otherwise.
    """
    from .video import frame_image, layout_grid

    settings = settings or RenderSettings()
    yaw_grid, pitch_grid = np.meshgrid(np.asarray(yaws, dtype=np.float64), np.asarray(pitches, dtype=np.float64))
    c = cameras.camera(cameras.camera_defaults(G.config), yaw=yaw_grid.ravel(), pitch=pitch_grid.ravel(),
                       focal=focal).to(ws.device)
    if planes is None:
        with torch.no_grad():
            planes = G.planes(ws, settings.noise_mode, settings.precision)
    n = c.shape[0]
    out = render_outputs(G, planes.expand(n, *planes.shape[1:]), ws.expand(n, -1, -1), c, settings, image_mode)
    return layout_grid(frame_image(out, image_mode), len(yaws), len(pitches))


def _volume_array(G: Generator, planes: torch.Tensor, resolution: int,
                  progress: M.ProgressFn | None) -> np.ndarray:
    """Dense raw-sigma grid [ix, iy, iz] over the model's box (a volume needs every voxel exact)."""
    return M.density_grid(density_fn(G, planes), resolution, G.config.rendering.box_warp, progress=progress,
                          device=planes.device)


def export_shape(G: Generator, ws: torch.Tensor, stem: str | os.PathLike[str], resolution: int = 256,
                 level: float = M.ORIGINAL_LEVEL, mesh_format: str | None = "ply", volume_format: str | None = None,
                 colors: bool = True, dense: bool = False, largest_component: bool = False, smooth_iterations: int = 0,
                 progress: M.ProgressFn | None = None, planes: torch.Tensor | None = None) -> list[Path]:
    """Mesh and/or density volume of one latent ws [1, num_ws, w_dim]; files ``{stem}.{format}``.

    ``planes``: the tri-planes of ws already computed (``G.planes(ws)``: noise mode const, fp32), which saves running
    the backbone again; None computes them.

    The mesh is the iso-surface at ``level`` of the raw density (``shapes.generator_mesh``; coarse-to-fine unless
    ``dense``). When a volume is asked for too, the dense grid is computed once and serves both. Raises
    NoSurfaceError (one line, with the density range seen) when the level yields no surface; then nothing is written.
    """
    if mesh_format is None and volume_format is None:
        raise InputError("nothing to export: give a mesh format or a volume format")
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise InputError(f"mesh format must be one of {', '.join(MESH_FORMATS)}, got {mesh_format!r}")
    if volume_format is not None and volume_format not in VOLUME_FORMATS:
        raise InputError(f"volume format must be one of {', '.join(VOLUME_FORMATS)}, got {volume_format!r}")
    stem = Path(stem)
    written: list[Path] = []
    mesh: M.Mesh | None = None
    volume_out: np.ndarray | None = None
    if volume_format is None:
        assert mesh_format is not None
        mesh = generator_mesh(G, ws, resolution, level, colors=colors, coarse_to_fine=not dense, progress=progress,
                              largest_component=largest_component, smooth_iterations=smooth_iterations,
                              planes=planes)
    else:
        if planes is None:
            with torch.no_grad():
                planes = G.planes(ws)
        volume = _volume_array(G, planes, resolution, progress)
        volume_out = M.to_original_volume_convention(volume)
        if mesh_format is not None:
            M.require_surface(float(volume.min()), float(volume.max()), level)
            # Same padding as extract_mesh: the border layers sit far below the level, so the mesh is closed.
            M.pad_volume_borders(volume, M.border_pad(resolution), M.pad_value(level))
            mesh = M.volume_to_mesh(volume, G.config.rendering.box_warp, level)
            if largest_component:
                mesh = M.keep_largest_component(mesh)
            mesh = M.smooth_mesh(mesh, smooth_iterations)
            if colors:
                mesh = M.colorize(mesh, color_fn(G, planes), device=planes.device)
    # Written only after everything was computed, so a failure leaves no partial set of files.
    if mesh is not None:
        path = stem.with_name(f"{stem.name}.{mesh_format}")
        M.save_mesh(mesh, path)
        written.append(path)
    if volume_out is not None:
        path = stem.with_name(f"{stem.name}.{volume_format}")
        M.save_volume(volume_out, path)
        written.append(path)
    return written


def seed_name(seed: int) -> str:
    """File stem of a seed's outputs, as gen_samples names them."""
    return f"seed{seed:04d}"


__all__ = ["DEFAULT_PITCHES", "DEFAULT_YAWS", "MESH_FORMATS", "VOLUME_FORMATS", "export_shape", "parse_seeds",
           "render_outputs", "render_views", "save_png", "seed_name"]
