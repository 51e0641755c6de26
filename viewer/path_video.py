"""The camera path's MP4, rendered on its own thread (``eg3d_core.apps.video.render_path_video``) so that the UI and
the preview stay live; progress and the result come back as ``VideoProgress`` / ``VideoFinished`` events, and
``cancel()`` stops it before the next frame (no file is left behind)."""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import torch

import eg3d_core
from eg3d_core.apps.video import render_path_video
from eg3d_core.camera_path import CameraPath
from eg3d_core.errors import EG3DError
from eg3d_core.latents import LatentSource
from eg3d_core.settings import RenderSettings

from .jobs import JobThread, one_line, throttled
from .worker import Event, VideoFinished, VideoProgress


@dataclass(frozen=True)
class PathVideoJob:
    generator: eg3d_core.Generator
    path: CameraPath
    out_file: str
    settings: RenderSettings
    latent: LatentSource | torch.Tensor | None  # for keyframes without a latent of their own


class PathVideoWorker(JobThread):
    def __init__(self, events: queue.Queue[Event]) -> None:
        super().__init__("eg3d-path-video", events)

    def handle(self, job: PathVideoJob) -> None:
        self.events.put(self._render(job))

    def _render(self, job: PathVideoJob) -> VideoFinished:
        progress = throttled(lambda done, total: self.events.put(VideoProgress(done, total)))
        t0 = time.perf_counter()
        try:
            frames = render_path_video(job.generator, job.path, job.out_file, job.settings, job.latent,
                                       progress=progress, should_stop=self.cancelled)
        except EG3DError as e:
            return VideoFinished(str(e), error=True)
        except Exception as e:  # e.g. out of memory: one line, the viewer keeps running
            return VideoFinished(one_line(e), error=True)
        if frames is None:
            return VideoFinished("video cancelled (no file written)")
        return VideoFinished(f"saved {job.out_file}: {frames} frames at {job.path.fps} fps "
                             f"({time.perf_counter() - t0:.1f} s)")
