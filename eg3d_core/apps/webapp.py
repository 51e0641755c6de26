"""The web demo's logic, apart from its UI: input validation, a tri-plane cache, renders, orbit videos and meshes.

``app_gradio.py`` only lays out widgets and turns the library's errors (:class:`~eg3d_core.errors.EG3DError`) into
``gr.Error``; everything that can be tested without a browser or a server lives here.

Inputs arrive as raw JSON values (the Gradio events run with ``preprocess=False``), so a script calling the API with
``seed="abc"`` or ``resolution=10**6`` reaches :func:`parse_render` and gets a one-line :class:`InputError` naming the
parameter and its allowed range (``eg3d_core.errors.InputError``), instead of a component's internal exception.
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from .. import cameras, visualize
from ..errors import InputError, NoSurfaceError
from ..generator import Generator
from ..latents import LatentSource, PlaneCache
from ..mesh import Mesh, generator_mesh, save_mesh
from ..presets import PRESETS
from ..runtime import spread_work
from ..settings import PRECISIONS, RenderSettings
from .video import write_video

OUTPUTS = ("image", "raw", "depth", "all")
PATHS = ("orbit", "turntable")
MESH_FORMATS = (".glb", ".ply", ".obj")
SEED_MAX = 2**32 - 1

ProgressFn = Callable[[float, str], None]
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------------------------
# Limits and parsing


@dataclass(frozen=True)
class Limits:
    """Accepted ranges of every request parameter, for one model (the UI sliders use the same bounds).

    The caps keep one request within seconds to a couple of minutes on a 2-core CPU: the neural rendering resolution
    is what the volume renderer costs (quadratic), the mesh resolution what marching cubes costs (cubic).
    """

    psi: tuple[float, float] = (-1.0, 2.0)
    cutoff: tuple[int, int] = (0, 14)
    yaw: tuple[float, float] = (-180.0, 180.0)
    pitch: tuple[float, float] = (-85.0, 85.0)  # +-90 would look straight down the up axis (degenerate pose)
    fov: tuple[float, float] = (5.0, 120.0)
    resolution: tuple[int, int] = (16, 128)
    frames: tuple[int, int] = (2, 240)
    fps: tuple[int, int] = (1, 60)
    mesh_resolution: tuple[int, int] = (32, 256)
    level: tuple[float, float] = (-1000.0, 1000.0)


def limits_for(G: Generator) -> Limits:
    """Limits for G: the truncation cutoff goes up to ``num_ws``; the neural rendering resolution to twice the model's
    own (at least 64), at most 256 -- beyond that a render takes tens of seconds on a CPU for no visible gain."""
    r = G.config.rendering.neural_rendering_resolution
    return Limits(cutoff=(0, G.num_ws), resolution=(16, min(256, max(64, 2 * r))))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_int(name: str, value: Any, bounds: tuple[int, int]) -> int:
    """An integer in ``bounds`` (inclusive) from an int, an integral float or a numeric string."""
    lo, hi = bounds
    error = InputError(f"{name} must be an integer in [{lo}, {hi}], got {_describe(value)}")
    if isinstance(value, bool):  # True is an int to Python, but never a meaningful seed or size
        raise error
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise error from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise error
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise error
    return value


def parse_float(name: str, value: Any, bounds: tuple[float, float]) -> float:
    """A finite float in ``bounds`` (inclusive) from a number or a numeric string."""
    lo, hi = bounds
    error = InputError(f"{name} must be a number in [{lo:g}, {hi:g}], got {_describe(value)}")
    if isinstance(value, bool):
        raise error
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise error from None
    if not isinstance(value, int | float) or not math.isfinite(value) or not lo <= value <= hi:
        raise error
    return float(value)


def parse_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {_describe(value)}")
    return value


@dataclass(frozen=True)
class RenderRequest:
    """A validated render request, as the web page sends it. Angles in degrees (offsets from the frontal view), FOV
    in degrees. It translates into the library's vocabulary: ``latent`` (a ``LatentSource``) and ``settings`` (a
    ``RenderSettings``).

    ``cutoff`` None truncates every w; ``resolution`` None means the model's own neural rendering resolution.
    """

    seed: int
    psi: float = 0.7
    yaw: float = 0.0
    pitch: float = 0.0
    fov: float | None = None
    output: str = "image"
    cutoff: int | None = None
    precision: str = "fp32"
    resolution: int | None = None

    @property
    def latent(self) -> LatentSource:
        return LatentSource(seed=self.seed, psi=self.psi, cutoff=self.cutoff)

    @property
    def settings(self) -> RenderSettings:
        return RenderSettings(neural_rendering_resolution=self.resolution, precision=self.precision)


def parse_render(limits: Limits, seed: Any, psi: Any = 0.7, yaw: Any = 0.0, pitch: Any = 0.0, fov: Any = None,
                 output: Any = "image", cutoff: Any = None, precision: Any = "fp32",
                 resolution: Any = None) -> RenderRequest:
    """Validate raw request values (numbers, numeric strings, None for the optional ones) -> RenderRequest."""
    return RenderRequest(
        seed=parse_int("seed", seed, (0, SEED_MAX)),
        psi=parse_float("psi", psi, limits.psi),
        yaw=parse_float("yaw", yaw, limits.yaw),
        pitch=parse_float("pitch", pitch, limits.pitch),
        fov=None if fov is None else parse_float("fov", fov, limits.fov),
        output=parse_choice("output", output, OUTPUTS),
        cutoff=None if cutoff is None else parse_int("cutoff", cutoff, limits.cutoff),
        precision=parse_choice("precision", precision, PRECISIONS),
        resolution=None if resolution is None else parse_int("resolution", resolution, limits.resolution),
    )


# ----------------------------------------------------------------------------------------------------------------------
# Pictures


def _resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST))


def compose(out: dict[str, torch.Tensor], output: str) -> tuple[np.ndarray, np.ndarray]:
    """Generator outputs of one view -> (picture for ``output``, colour-mapped depth), uint8 HWC.

    "image": the super-resolved image [S, S]; "raw": the volume-rendered image [r, r] (before super-resolution);
    "depth": the colour-mapped depth [r, r]; "all": image | raw | depth side by side, each at S [S, 3S].
    """
    image = visualize.to_uint8(out["image"][0])
    raw = visualize.to_uint8(out["image_raw"][0])
    depth = visualize.depth_to_color(out["image_depth"][0])
    if output == "image":
        picture = image
    elif output == "raw":
        picture = raw
    elif output == "depth":
        picture = depth
    else:
        size = image.shape[0]
        picture = np.concatenate([image, _resize_nearest(raw, size), _resize_nearest(depth, size)], axis=1)
    return picture, depth


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: repeat the last row/column of an odd-sized frame."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


# ----------------------------------------------------------------------------------------------------------------------
# Output files


class OutputDir:
    """A private temporary folder for videos and meshes: one sub-folder per job, only the newest ``keep`` kept.

    The front end copies every returned file into its own cache before serving it, so a job's folder is only needed
    until its response has been sent; keeping a few is a margin for jobs finishing at the same time. The whole folder
    is removed at exit.
    """

    def __init__(self, keep: int = 8, prefix: str = "eg3d-webapp-") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self._lock = threading.Lock()
        atexit.register(self.cleanup)

    def new_job(self, kind: str) -> Path:
        with self._lock:
            jobs = sorted(self.root.glob("*-*"), key=lambda p: p.stat().st_mtime)
            for old in jobs[: max(0, len(jobs) - self.keep + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.root))

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# Threads


class ModelThreads:
    """One long-lived thread per kind of job ("render", "heavy"); every model computation runs on one of them.

    Why: a web server runs each request on whichever thread of its pool is free, and glibc gives every thread that
    allocates its own malloc arena, which keeps the freed tensor memory of that request. With torch's large, short-lived
    activations the server then grows to several times its working set. Pinning the work to two threads keeps two
    arenas. The server's own concurrency limits (one job per kind at a time) make these queues short.
    """

    def __init__(self, kinds: tuple[str, ...] = ("render", "heavy"), spread: tuple[str, ...] = ("render",)) -> None:
        self._pools = {k: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"eg3d-{k}") for k in kinds}
        self._spread = spread

    def run(self, kind: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the thread of ``kind`` and wait for it. Context variables go along, so that a progress
        callback bound to the caller's request still reports to it. Jobs of the ``spread`` kinds (quick renders,
        one at a time) may use helper threads on all cores (``runtime.spread_work``), as the desktop viewer's do."""
        context = contextvars.copy_context()
        return self._pools[kind].submit(context.run, self._call, kind in self._spread, fn, *args, **kwargs).result()

    @staticmethod
    def _call(spread: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with spread_work() if spread else contextlib.nullcontext():
            return fn(*args, **kwargs)

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------------------------------------------------
# The model


def preset_name(G: Generator) -> str:
    """The released preset G's config equals, else a description of the nearest one."""
    for name, cfg in PRESETS.items():
        if cfg == G.config:
            return name
    same = [name for name, cfg in PRESETS.items()
            if cfg.sr_module == G.config.sr_module and cfg.img_resolution == G.config.img_resolution]
    return f"custom, {same[0]}-like" if same else "custom"


@dataclass(frozen=True)
class RenderResult:
    picture: np.ndarray  # uint8 HWC, what ``output`` asked for
    depth: np.ndarray  # uint8 HWC, colour-mapped depth at the neural rendering resolution
    seconds: float
    cached: bool  # the tri-planes came from the cache (a camera-only change)


@dataclass(frozen=True)
class MeshResult:
    files: dict[str, Path]  # extension -> file
    vertices: int
    faces: int
    seconds: float


class DemoModel:
    """A loaded generator plus what the demo needs around it. Thread-safe: requests may run concurrently.

    The tri-planes (the expensive backbone output) are cached per latent and precision in a small LRU
    (``latents.PlaneCache``), so a camera, FOV or output change only re-runs the renderer and super-resolution.
    """

    def __init__(self, G: Generator, cache_size: int = 8, output_dir: OutputDir | None = None) -> None:
        self.G = G
        self.defaults = cameras.camera_defaults(G.config)
        self.limits = limits_for(G)
        self.device = next(G.parameters()).device
        self.output_dir = output_dir or OutputDir()
        self.cache = PlaneCache(G, max(1, cache_size))

    # -- description -----------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        cfg = self.G.config
        return {
            "preset": preset_name(self.G),
            "source": getattr(self.G, "source", "?"),
            "image_resolution": self.G.img_resolution,
            "neural_rendering_resolution": cfg.rendering.neural_rendering_resolution,
            "sr_module": cfg.sr_module,
            "triplane": f"3×{cfg.triplane_channels}×{cfg.triplane_resolution}²",
            "z_dim": self.G.z_dim,
            "num_ws": self.G.num_ws,
            "default_fov": round(self.defaults.fov, 2),
            "device": str(self.device),
        }

    # -- latents ---------------------------------------------------------------------------------------------------

    def latent(self, latent: LatentSource, settings: RenderSettings) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(ws [1, num_ws, w_dim], planes [1, 3, C, H, W], from the cache) of a latent."""
        entry, cached = self.cache.latent(latent, settings)
        return entry.ws, entry.planes, cached

    def _camera(self, req: RenderRequest, yaw_rad: float, pitch_rad: float) -> torch.Tensor:
        focal = None if req.fov is None else cameras.focal_from_fov(req.fov)
        return cameras.camera(self.defaults, yaw=yaw_rad, pitch=pitch_rad, focal=focal).to(self.device)

    def _render_view(self, req: RenderRequest, ws: torch.Tensor, planes: torch.Tensor, yaw_rad: float,
                     pitch_rad: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.G.render_planes(planes, ws, self._camera(req, yaw_rad, pitch_rad),
                                        **req.settings.synthesis_kwargs(self.G.config))

    # -- requests --------------------------------------------------------------------------------------------------

    def render(self, req: RenderRequest) -> RenderResult:
        t0 = time.perf_counter()
        ws, planes, cached = self.latent(req.latent, req.settings)
        out = self._render_view(req, ws, planes, math.radians(req.yaw), math.radians(req.pitch))
        picture, depth = compose(out, req.output)
        return RenderResult(picture, depth, time.perf_counter() - t0, cached)

    def frames(self, req: RenderRequest, num_frames: int, path: str = "orbit",
               progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
        """Frames (uint8 HWC, even-sized) of a camera path around the request's view.

        "orbit": the original gen_videos wobble (about +-20 deg yaw, +-14 deg pitch); "turntable": a full turn at the
        request's pitch. Both start from the request's yaw/pitch.
        """
        offsets = cameras.orbit(num_frames) if path == "orbit" else cameras.turntable(num_frames, pitch=0.0)
        ws, planes, _ = self.latent(req.latent, req.settings)
        for i, (yaw, pitch) in enumerate(offsets):
            out = self._render_view(req, ws, planes, math.radians(req.yaw) + float(yaw),
                                    math.radians(req.pitch) + float(pitch))
            if progress is not None:
                progress(i / num_frames, f"frame {i + 1}/{num_frames}")
            yield _even(compose(out, req.output)[0])

    def video(self, req: RenderRequest, num_frames: int, fps: int, path: str = "orbit",
              progress: ProgressFn | None = None) -> Path:
        """Write an orbit video (MP4, H.264) of the request's view; returns its path."""
        file = self.output_dir.new_job("video") / f"seed{req.seed}_{path}.mp4"
        write_video(self.frames(req, num_frames, path, progress), file, fps=fps, macro_block_size=1)
        return file

    def mesh(self, seed: int, psi: float, cutoff: int | None, resolution: int, level: float,
             progress: ProgressFn | None = None) -> MeshResult:
        """Extract the iso-surface at ``level`` and save it as .glb/.ply/.obj with vertex colours.

        Raises NoSurfaceError when the density never crosses ``level`` (the message gives the range seen).
        """
        t0 = time.perf_counter()
        ws, _, _ = self.latent(LatentSource(seed=seed, psi=psi, cutoff=cutoff), RenderSettings())

        def on_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(0.9 * done / max(total, 1), "extracting the surface")

        try:
            mesh: Mesh = generator_mesh(self.G, ws, resolution=resolution, level=level, colors=True,
                                        coarse_to_fine=True, progress=on_progress)
        except NoSurfaceError as e:
            raise NoSurfaceError(f"{e}; pick a level inside that range") from None
        if progress is not None:
            progress(0.95, "saving")
        job = self.output_dir.new_job("mesh")
        files = {ext: job / f"seed{seed}{ext}" for ext in MESH_FORMATS}
        for file in files.values():
            save_mesh(mesh, file)
        return MeshResult(files, len(mesh.vertices), len(mesh.faces), time.perf_counter() - t0)
