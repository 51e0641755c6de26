"""Your picture -> 3D in the viewer: the inversion thread, its events, and latent files.

Inversion takes tens of seconds of gradient steps, so it runs on its own thread (the render worker keeps answering
camera moves with the current latent meanwhile). It reports the picture as the model sees it, then progress with a
preview of the current fit every few steps, and ends with the fitted latent, which the app makes the current one
(``LatentState.custom``) and whose estimated camera it moves to. ``cancel()`` stops it at the next step.
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import eg3d_core
from eg3d_core.errors import EG3DError
from eg3d_core.inversion import (
    InversionCancelled,
    InversionSettings,
    StageProgress,
    full_circle,
    invert,
    load_picture,
    model_background,
)
from eg3d_core.latents import LatentSource, save_ws
from eg3d_core.visualize import to_uint8

from .jobs import JobThread, one_line
from .state import CustomLatent

STEPS = (10, 400)  # refinement steps a user may ask for


@dataclass(frozen=True)
class InvertJob:
    generator: eg3d_core.Generator
    picture: str
    steps: int
    yaw: float | None = None  # degrees, viewer offsets; None: estimated
    pitch: float | None = None


@dataclass(frozen=True)
class InvertTarget:
    """The picture as the model sees it (square, at the model's resolution): uint8 [S, S, 3]."""

    image: np.ndarray


@dataclass(frozen=True)
class InvertProgress:
    stage: str
    fraction: float  # of the whole job, 0..1
    preview: np.ndarray | None  # the current fit, uint8 [S, S, 3], every few steps


@dataclass(frozen=True)
class InvertDone:
    latent: CustomLatent
    yaw: float  # degrees, viewer offsets
    pitch: float
    psnr: float
    seconds: float
    fit: np.ndarray  # uint8 [S, S, 3]


@dataclass(frozen=True)
class InvertFailed:
    message: str
    cancelled: bool = False


InvertEvent = InvertTarget | InvertProgress | InvertDone | InvertFailed


def settings_for(steps: int) -> InversionSettings:
    """The library's default recipe with ``steps`` refinement steps in all."""
    return InversionSettings().with_steps(steps)


def run_job(job: InvertJob, put: Callable[[InvertEvent], None], should_stop: Callable[[], bool]) -> None:
    """Fit ``job.picture``; report through ``put(event)``. Every failure becomes one ``InvertFailed`` line."""
    G = job.generator
    try:
        target = load_picture(job.picture, G.img_resolution, model_background(G))
        put(InvertTarget(to_uint8(target[0])))
        settings = settings_for(job.steps)
        fraction = StageProgress(settings, job.yaw is None, full_circle(G))

        def progress(stage: str, step: int, total: int, preview: np.ndarray | None) -> None:
            put(InvertProgress(stage, fraction(stage, step, total), preview))

        t0 = time.perf_counter()
        result = invert(G, job.picture, settings, yaw=job.yaw, pitch=job.pitch, progress=progress,
                        should_stop=should_stop)
        source = LatentSource.from_ws(result.ws, name=Path(job.picture).stem)
        assert result.fit is not None and source.digest is not None
        put(InvertDone(CustomLatent(source.label, source.digest, result.ws), result.yaw, result.pitch, result.psnr,
                       time.perf_counter() - t0, to_uint8(result.fit[0])))
    except InversionCancelled:
        put(InvertFailed("cancelled", cancelled=True))
    except (EG3DError, OSError) as e:
        put(InvertFailed(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
    except Exception as e:  # e.g. out of memory: the viewer keeps running and says what happened
        put(InvertFailed(one_line(e)))


class InvertWorker(JobThread):
    """One inversion at a time (the app refuses a second while one runs); with autograd, unlike the render threads."""

    grad = True

    def __init__(self, events: queue.Queue) -> None:
        super().__init__("eg3d-invert", events)

    def handle(self, job: InvertJob) -> None:
        run_job(job, self.events.put, self.cancelled)


# --------------------------------------------------------------------------------------------------------------------
# Latent files


def load_latent(G: eg3d_core.Generator, path: str) -> CustomLatent:
    """A ``.npz`` with ``ws`` (``eg3d invert``'s output, or a saved viewer latent) as a custom latent of G; a file
    for another model (num_ws / w_dim) or not a latent file raises ``InputError`` naming the problem."""
    source = LatentSource.from_file(path)
    ws = source.ws(G, device="cpu")
    assert source.digest is not None
    return CustomLatent(source.label, source.digest, ws.clone())


def save_latent(latent: CustomLatent, path: str) -> Path:
    """Write a custom latent's ws as an ``.npz`` that ``load_latent``, ``eg3d video --latent`` and the web demo read."""
    return save_ws(torch.as_tensor(latent.ws), path)
