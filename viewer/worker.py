"""Background threads: the render worker (frames, model loading, latent directions) and the export worker.

The UI thread never runs the generator. It puts render requests into a newest-wins ``RequestSlot`` and jobs into
queues, and polls ``events`` once per frame. Model loading happens on the render worker so a new model replaces the
old one between two frames; a failed load leaves the old one in place. Exports (PNG, mesh) have their own thread
so a minutes-long mesh extraction does not stop the preview.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import eg3d_core
from eg3d_core.errors import EG3DError
from eg3d_core.latents import save_ws
from eg3d_core.mesh import generator_mesh, save_mesh
from eg3d_core.runtime import spread_work

from . import directions as dirs
from .invert_worker import InvertEvent
from .jobs import JobThread, lower_thread_priority, one_line, throttled
from .model_info import ModelInfo
from .renderer import Cancelled, RenderResult, ViewerRenderer, compose_ws
from .requests import LatentSpec, RenderRequest
from .scheduler import RequestSlot

# --------------------------------------------------------------------------------------------------------------------
# Events (worker -> UI)


@dataclass(frozen=True)
class FrameReady:
    result: RenderResult


@dataclass(frozen=True)
class FrameCancelled:
    request: RenderRequest


@dataclass(frozen=True)
class RenderFailed:
    message: str


@dataclass(frozen=True)
class ModelLoaded:
    generator: eg3d_core.Generator
    info: ModelInfo


@dataclass(frozen=True)
class ModelFailed:
    message: str


@dataclass(frozen=True)
class DirectionsReady:
    directions: dirs.Directions
    from_cache: bool
    samples: int


@dataclass(frozen=True)
class ExportProgress:
    fraction: float


@dataclass(frozen=True)
class ExportDone:
    message: str


@dataclass(frozen=True)
class ExportFailed:
    message: str


@dataclass(frozen=True)
class LatentSaved:
    message: str
    error: bool = False


@dataclass(frozen=True)
class VideoProgress:
    """A camera path's MP4 (``viewer.path_video``): frames done of total."""

    done: int
    total: int


@dataclass(frozen=True)
class VideoFinished:
    message: str
    error: bool = False  # a cancelled render is not an error


Event = (FrameReady | FrameCancelled | RenderFailed | ModelLoaded | ModelFailed | DirectionsReady | ExportProgress
         | ExportDone | ExportFailed | LatentSaved | VideoProgress | VideoFinished | InvertEvent)


# --------------------------------------------------------------------------------------------------------------------
# Render worker


class RenderWorker(threading.Thread):
    def __init__(self, events: queue.Queue[Event], device: str = "cpu", cache_dir: str | os.PathLike | None = None,
                 num_directions: int = 10, direction_samples: int = 4000) -> None:
        super().__init__(name="eg3d-render", daemon=True)
        self.events = events
        self.device = device
        self.cache_dir = cache_dir
        self.num_directions = num_directions
        self.direction_samples = direction_samples
        self.slot = RequestSlot()
        self._jobs: queue.Queue[str] = queue.Queue()
        self._renderer: ViewerRenderer | None = None
        self._closing = threading.Event()

    # called from the UI thread ------------------------------------------------------------------------------------
    def submit(self, request: RenderRequest) -> None:
        self.slot.put(request)

    def load(self, source: str) -> None:
        """Load a checkpoint in the background; ``ModelLoaded`` or ``ModelFailed`` follows."""
        self._jobs.put(source)
        self.slot.interrupt()

    def close(self, timeout: float = 5.0) -> None:
        self._closing.set()
        self.slot.close()
        self.join(timeout)

    # worker thread ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        # Before any torch work here, so that this thread's OpenMP team inherits the lower priority: on a machine
        # with few cores the UI keeps its frame rate while frames render.
        lower_thread_priority()
        torch.set_grad_enabled(False)
        # The viewer's one render thread: its frames may use helper threads on both cores, like the main thread's.
        with spread_work():
            self._serve()
        if self._renderer is not None:
            self._renderer.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                self._load(self._jobs.get_nowait())
                continue
            except queue.Empty:
                pass
            request = self.slot.take(timeout=0.05)
            if request is None:
                continue
            try:
                if self._renderer is not None:
                    result = self._renderer.render(request, self.slot.cancelled,
                                                   lambda partial: self.events.put(FrameReady(partial)))
                    self.events.put(FrameReady(result))
            except Cancelled:
                self.events.put(FrameCancelled(request))
            except Exception as e:  # a bad setting must not kill the worker: report it and keep serving
                self.events.put(RenderFailed(one_line(e)))
            finally:
                self.slot.done()

    def _load(self, source: str) -> None:
        try:
            G = eg3d_core.load_generator(source or None, device=self.device)
        except eg3d_core.CheckpointError as e:
            self.events.put(ModelFailed(str(e)))
            return
        except Exception as e:  # e.g. out of memory: still keep the previous model
            self.events.put(ModelFailed(f"{source}: {one_line(e)}"))
            return
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = ViewerRenderer(G)
        self.events.put(ModelLoaded(G, ModelInfo.of(G, getattr(G, "source", source))))
        try:
            d, cached = dirs.load_or_compute(G, self.cache_dir, self.direction_samples, self.num_directions)
        except Exception as e:
            self.events.put(RenderFailed(f"latent directions: {one_line(e)}"))
            return
        self._renderer.set_directions(d)
        self.events.put(DirectionsReady(d, cached, self.direction_samples))


# --------------------------------------------------------------------------------------------------------------------
# Export worker


@dataclass(frozen=True)
class SaveFrameJob:
    result: RenderResult
    directory: str
    stem: str


@dataclass(frozen=True)
class MeshJob:
    generator: eg3d_core.Generator
    directions: dirs.Directions | None
    latent: LatentSpec
    resolution: int
    path: str
    colors: bool


@dataclass(frozen=True)
class SaveLatentJob:
    generator: eg3d_core.Generator
    directions: dirs.Directions | None
    latent: LatentSpec
    path: str


def unique_path(directory: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``directory/stem+suffix``, with ``-2``, ``-3`` ... added so that nothing is overwritten."""
    d = Path(directory)
    path, n = d / f"{stem}{suffix}", 2
    while path.exists():
        path, n = d / f"{stem}-{n}{suffix}", n + 1
    return path


def save_frame(job: SaveFrameJob) -> list[Path]:
    """Write the frame's image (final, or raw for a preview), raw render, colour-mapped depth and depth values."""
    r = job.result
    Path(job.directory).mkdir(parents=True, exist_ok=True)
    image_path = unique_path(job.directory, job.stem, "_image.png")
    stem = image_path.name[: -len("_image.png")]
    paths = [image_path, Path(job.directory) / f"{stem}_raw.png", Path(job.directory) / f"{stem}_depth.png",
             Path(job.directory) / f"{stem}_depth.npy"]
    Image.fromarray(r.image if r.image is not None else r.raw).save(paths[0])
    Image.fromarray(r.raw).save(paths[1])
    Image.fromarray(r.depth).save(paths[2])
    np.save(paths[3], r.depth_values)
    return paths


class ExportWorker(JobThread):
    def __init__(self, events: queue.Queue[Event]) -> None:
        super().__init__("eg3d-export", events)

    def handle(self, job: SaveFrameJob | MeshJob | SaveLatentJob) -> None:
        try:
            if isinstance(job, SaveFrameJob):
                paths = save_frame(job)
                self.events.put(ExportDone(f"saved {paths[0]} (+ raw, depth .png/.npy)"))
            elif isinstance(job, SaveLatentJob):
                Path(job.path).parent.mkdir(parents=True, exist_ok=True)
                path = save_ws(compose_ws(job.generator, job.latent, job.directions), job.path)
                self.events.put(LatentSaved(f"saved the latent to {path}"))
            else:
                self._mesh(job)
        except Exception as e:
            # generator_mesh's "no surface at level ..." and the writers' path errors carry a message for the
            # user; anything else is shown by its type and first line.
            message = str(e) if isinstance(e, (ValueError, EG3DError)) else one_line(e)
            self.events.put(LatentSaved(message, error=True) if isinstance(job, SaveLatentJob)
                            else ExportFailed(message))

    def _mesh(self, job: MeshJob) -> None:
        progress = throttled(lambda done, total: self.events.put(ExportProgress(done / max(total, 1))))
        ws = compose_ws(job.generator, job.latent, job.directions)
        noise = "const" if job.latent.noise_mode == "random" else job.latent.noise_mode
        t0 = time.perf_counter()
        mesh = generator_mesh(job.generator, ws, resolution=job.resolution, colors=job.colors, noise_mode=noise,
                              progress=progress)
        Path(job.path).parent.mkdir(parents=True, exist_ok=True)
        save_mesh(mesh, job.path)
        self.events.put(ExportDone(f"saved {job.path}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces "
                                   f"({time.perf_counter() - t0:.1f} s)"))
