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
import functools
import math
import re
import shutil
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from .. import cameras, visualize
from ..errors import EG3DError, InputError, NoSurfaceError
from ..generator import Generator
from ..inversion import MIN_SIDE, InversionSettings, StageProgress, full_circle, load_picture, model_background
from ..latents import LatentSource, PlaneCache
from ..mesh import Mesh, generator_mesh, save_mesh
from ..presets import PRESETS
from ..runtime import spread_work
from ..settings import PRECISIONS, RenderSettings
from .invert import invert_one
from .video import write_video

OUTPUTS = ("image", "raw", "depth", "all")
PATHS = ("orbit", "turntable")
MESH_FORMATS = (".glb", ".ply", ".obj")
SEED_MAX = visualize.SEED_LIMIT - 1  # the largest seed

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
    invert_steps: tuple[int, int] = (1, 200)
    invert_pitch: tuple[float, float] = (-80.0, 80.0)  # the inversion's own bound on a given pitch


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


def clamp(value: Any, bounds: tuple[float, float]) -> Any:
    """A finite number clamped to ``bounds`` (what a slider does with a value typed beyond its range); anything else
    as it is, for the parser to judge."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(max(value, bounds[0]), bounds[1])
    return value


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
    given: LatentSource | None = None  # a latent from elsewhere (an inversion's ws) instead of seed / psi / cutoff

    @property
    def latent(self) -> LatentSource:
        if self.given is not None:
            return self.given
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


@dataclass(frozen=True)
class InvertRequest:
    """A validated "your picture -> 3D" request: the uploaded picture's path, the picture's camera (degrees from
    frontal; None: estimated by the inversion's camera search), refinement steps, and the orbit video's size."""

    picture: Path
    yaw: float | None = None
    pitch: float | None = None
    steps: int = 60
    frames: int = 36
    fps: int = 24


# Uploaded pictures: the most pixels the web demo decodes (a 10 MiB PNG could otherwise hold 64 megapixels, 1 GiB as
# float RGBA), checked from the header before anything is decoded.
WEB_MAX_PIXELS = 16_000_000


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def upload_path(value: Any) -> Path:
    """The local path of an uploaded file, as Gradio hands it to a handler that does not preprocess (a FileData dict,
    already checked to lie in Gradio's upload folder) or a plain path string."""
    if isinstance(value, dict):
        value = value.get("path")
    if _blank(value) or not isinstance(value, str | Path):
        raise InputError("upload a picture first (PNG, JPEG or WebP; a crop like the model's training pictures)")
    return Path(value)


def check_upload(path: Path) -> None:
    """Refuse what is not a picture PIL can read, or one too small or too large, from its header: nothing decoded."""
    from PIL import UnidentifiedImageError

    name = "the uploaded file"
    try:
        with Image.open(path) as img:
            w, h = img.size
    except UnidentifiedImageError:
        raise InputError(f"{name} is not a picture (PNG, JPEG, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{name} is not a readable picture ({' '.join(str(e).split())[:80] or type(e).__name__})"
                         ) from None
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{name}: {w}x{h} px is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if w * h > WEB_MAX_PIXELS:
        raise InputError(f"{name}: {w}x{h} px is too large (at most {WEB_MAX_PIXELS // 1_000_000} megapixels)")


def parse_invert(limits: Limits, picture: Any, yaw: Any = None, pitch: Any = None, steps: Any = 60,
                 frames: Any = 36, fps: Any = 24) -> InvertRequest:
    """Validate raw request values -> InvertRequest. Blank yaw and pitch (None or "") ask for the camera search; one
    of them alone is refused. The picture is checked from its header (see ``check_upload``)."""
    if _blank(yaw) != _blank(pitch):
        raise InputError("give both yaw and pitch of the picture's camera, or leave both blank to estimate them")
    req = InvertRequest(
        picture=upload_path(picture),
        yaw=None if _blank(yaw) else parse_float("yaw", yaw, limits.yaw),
        pitch=None if _blank(pitch) else parse_float("pitch", pitch, limits.invert_pitch),
        steps=parse_int("steps", steps, limits.invert_steps),
        frames=parse_int("frames", frames, limits.frames),
        fps=parse_int("fps", fps, limits.fps),
    )
    check_upload(req.picture)
    return req


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
    The depth is coloured over the pixels that show something (``image_mask``: the rays' opacity), near = warm, and
    fades to white where a ray meets nothing.
    """
    image = visualize.to_uint8(out["image"][0])
    raw = visualize.to_uint8(out["image_raw"][0])
    depth = visualize.depth_to_color(out["image_depth"][0], out["image_mask"][0])
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


def depth_range(out: dict[str, torch.Tensor]) -> tuple[float, float] | None:
    """(near, far) distance from the camera (world units) over the pixels that show something, as the depth picture
    colours it; None when no ray meets anything."""
    mask = out["image_mask"][0]
    if not bool((mask >= visualize.OPACITY_SHOWN).any()):
        return None
    near, far = visualize.depth_range(out["image_depth"][0], mask)
    return float(near.squeeze()), float(far.squeeze())


TILE_NAMES = ("image", "raw render", "depth")


def label_tiles(picture: np.ndarray, names: tuple[str, ...] = TILE_NAMES, band: int | None = None) -> np.ndarray:
    """A picture of ``len(names)`` equal tiles side by side (``output="all"``) with each tile's name written in a
    white band above it, for people (the API returns the bare tiles)."""
    from PIL import ImageDraw, ImageFont

    h, w = picture.shape[:2]
    tile = w // len(names)
    band = band or max(14, tile // 7)
    canvas = Image.new("RGB", (w, h + band), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(9, int(band * 0.7)))
    for i, name in enumerate(names):
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        draw.text((i * tile + (tile - (right - left)) / 2 - left, (band - (bottom - top)) / 2 - top), name,
                  fill=(40, 40, 40), font=font)
    return np.asarray(canvas)


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
# Admission and the model threads


class BusyError(EG3DError):
    """The server has no room for a request now (a per-client share or the total queue is full): retry later."""


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the browser session (one per page load; a raw API call that names none gets a fresh one
    each time, so only ``ip`` bounds such a caller) and the peer's IP address."""

    session: str
    ip: str


@dataclass(frozen=True)
class Quota:
    """How much of one lane a caller may hold, counting its jobs queued or running.

    Costs are in units of one render at the model's own neural rendering resolution (``video_cost``, ``mesh_cost``).
    """

    per_session: int
    per_ip: int
    total: int
    cost_per_ip: float = math.inf
    cost_total: float = math.inf

    def __post_init__(self) -> None:
        if not 1 <= self.per_session <= self.per_ip <= self.total:
            raise ValueError(f"quota needs 1 <= per_session <= per_ip <= total, got {self}")
        if not 0 < self.cost_per_ip <= self.cost_total:
            raise ValueError(f"quota needs 0 < cost_per_ip <= cost_total, got {self}")


# Defaults of the web demo. Renders: a browser session has a few in flight (live updates keep only the latest of a
# burst); 24 lets a script send a burst. Heavy jobs: one running and one waiting per session, three per address; one
# address may hold a quarter of the queued work, whose total is four maximum-size videos at twice the model's
# resolution (240 frames x 4 units).
RENDER_QUOTA = Quota(per_session=24, per_ip=48, total=96)
HEAVY_QUOTA = Quota(per_session=2, per_ip=3, total=12, cost_per_ip=1920.0, cost_total=3840.0)


@dataclass(eq=False)
class _Job:
    caller: Caller
    cost: float
    future: Future
    call: Callable[[], Any]
    released: bool = False


class Lane:
    """One long-lived thread running one kind of job ("render", "heavy"), with admission control in front of it.

    Admission (``submit``): a job is refused at once with a one-line :class:`BusyError` when its caller's session or
    address already holds its share of the lane (jobs queued or running, ``Quota``), when the lane holds ``total``
    jobs, or when the estimated cost of the address's or everyone's queued work would pass its cap. An admitted job
    holds its share until it ends: done, failed, or cancelled while waiting (``Future.cancel``; an asyncio caller
    cancelled while awaiting ``asyncio.wrap_future`` cancels it too). Waiting jobs are kept in one queue per address
    and run round robin over the addresses, so one address's backlog delays another's job by at most one job.

    Why one thread per kind: a web server runs requests on whichever thread is free, and glibc gives every thread that
    allocates its own malloc arena, which keeps the freed tensor memory of that request; with torch's large,
    short-lived activations the server would grow to several times its working set. Two lanes keep two arenas. And a
    camera render never waits behind a video or a mesh: they run on another lane.
    """

    def __init__(self, name: str, quota: Quota, spread: bool = False) -> None:
        self.name = name
        self.quota = quota
        self._spread = spread
        self._cv = threading.Condition()
        self._waiting: dict[str, deque[_Job]] = {}  # address -> its jobs; dict order = round-robin order
        self._sessions: Counter[str] = Counter()
        self._ips: Counter[str] = Counter()
        self._ip_cost: Counter[str] = Counter()
        self._jobs = 0
        self._cost = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"eg3d-{name}", daemon=True)
        self._thread.start()

    def submit(self, caller: Caller, cost: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Admit ``fn(*args, **kwargs)`` or raise BusyError; the future holds its result. Context variables go along,
        so that a progress callback bound to the caller's request still reports to it."""
        context = contextvars.copy_context()
        job = _Job(caller, cost, Future(), functools.partial(context.run, self._call, fn, *args, **kwargs))
        with self._cv:
            self._admit(caller, cost)
            self._sessions[caller.session] += 1
            self._ips[caller.ip] += 1
            self._ip_cost[caller.ip] += cost
            self._jobs += 1
            self._cost += cost
            self._waiting.setdefault(caller.ip, deque()).append(job)
            self._cv.notify()
        job.future.add_done_callback(lambda f: self._release(job) if f.cancelled() else None)
        return job.future

    def run(self, caller: Caller, cost: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``submit`` and wait for the result (its exception is raised here)."""
        return self.submit(caller, cost, fn, *args, **kwargs).result()

    def load(self, caller: Caller | None = None) -> tuple[int, float]:
        """(jobs, cost) queued or running: everyone's, or one caller's address's."""
        with self._cv:
            if caller is None:
                return self._jobs, self._cost
            return self._ips[caller.ip], self._ip_cost[caller.ip]

    def close(self) -> None:
        """Refuse new jobs, cancel the waiting ones; the running one finishes."""
        with self._cv:
            self._closed = True
            waiting = [job for queue in self._waiting.values() for job in queue]
            self._cv.notify_all()
        for job in waiting:
            job.future.cancel()

    def _admit(self, caller: Caller, cost: float) -> None:
        q, kind = self.quota, self.name
        if self._closed:
            raise BusyError("the server is shutting down")
        if cost > q.cost_per_ip:
            raise InputError(f"this {kind} job is too large for this server ({cost:.0f} units of work, at most "
                             f"{q.cost_per_ip:.0f}): ask for fewer frames or a lower resolution")
        if self._sessions[caller.session] >= q.per_session:
            raise BusyError(f"busy: this session already has {q.per_session} {kind} job(s) queued or running; retry "
                            "when one has finished")
        if self._ips[caller.ip] >= q.per_ip or self._ip_cost[caller.ip] + cost > q.cost_per_ip:
            raise BusyError(f"busy: your address already has its share of the {kind} queue "
                            f"({self._ips[caller.ip]} job(s) queued or running); retry when one has finished")
        if self._jobs >= q.total or self._cost + cost > q.cost_total:
            raise BusyError(f"busy: the server's {kind} queue is full ({self._jobs} job(s) queued or running); retry "
                            "in a minute")

    def _release(self, job: _Job) -> None:
        with self._cv:
            if job.released:
                return
            job.released = True
            queue = self._waiting.get(job.caller.ip)
            if queue is not None and job in queue:
                queue.remove(job)
                if not queue:
                    del self._waiting[job.caller.ip]
            for counter, key, amount in ((self._sessions, job.caller.session, 1), (self._ips, job.caller.ip, 1),
                                         (self._ip_cost, job.caller.ip, job.cost)):
                counter[key] -= amount
                if counter[key] <= 1e-9:
                    del counter[key]
            self._jobs -= 1
            self._cost = max(0.0, self._cost - job.cost)

    def _next(self) -> _Job | None:
        with self._cv:
            while not self._waiting and not self._closed:
                self._cv.wait()
            if not self._waiting:
                return None
            ip = next(iter(self._waiting))
            queue = self._waiting.pop(ip)
            job = queue.popleft()
            if queue:
                self._waiting[ip] = queue  # to the back of the round
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            if not job.future.set_running_or_notify_cancel():
                continue  # cancelled while waiting: released by its callback
            try:
                result = job.call()
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                self._release(job)  # before the caller wakes up, so that it may submit again at once
                job.future.set_exception(e)
            else:
                self._release(job)
                job.future.set_result(result)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with spread_work() if self._spread else contextlib.nullcontext():
            return fn(*args, **kwargs)


def video_cost(G: Generator, req: RenderRequest, frames: int) -> float:
    """A video's estimated work: frames x neural rendering pixels, in renders at the model's own resolution."""
    own = G.config.rendering.neural_rendering_resolution
    return frames * ((req.resolution or own) / own) ** 2


def mesh_cost(G: Generator, resolution: int) -> float:
    """A mesh's estimated work: the resolution^3 density points of a dense grid (coarse-to-fine evaluates fewer), in
    renders at the model's own resolution (its pixels x depth samples per ray)."""
    r = G.config.rendering
    points = r.neural_rendering_resolution**2 * (r.depth_resolution + r.depth_resolution_importance)
    return resolution**3 / points


# The vertical field of view (radians) of the web page's mesh preview (gradio's Model3D: Babylon's default camera).
PREVIEW_FOV = 0.8


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def preview_colors(colors: np.ndarray) -> np.ndarray:
    """uint8 sRGB vertex colours -> the colours to put into the page's preview .glb so that the page shows ``colors``.

    The preview (gradio's Model3D, the Babylon.js viewer) tone-maps what it draws with Khronos' PBR Neutral operator,
    which takes 0.04 off every linear colour (less off the darkest) and compresses the brightest: unlit vertex colours
    come out darker than they are (sRGB 30 -> 10, 128 -> 116). This applies the operator's inverse; colours it cannot
    reach (near white) are clipped. The downloads keep the colours as they are.
    """
    x = _srgb_to_linear(np.asarray(colors, dtype=np.float64)[..., :3] / 255.0)
    start, d = 0.8 - 0.04, 0.24  # the operator's compression start and its 1 - start
    peak = x.max(axis=-1, keepdims=True)
    bright = peak >= start
    if bright.any():  # undo the compression: the output's peak is the compressed peak, the desaturation mixes to it
        new_peak = np.minimum(peak, 1 - 1e-4)
        old_peak = d * d / (1 - new_peak) - d + start
        g = 1 - 1 / (0.15 * (old_peak - new_peak) + 1)
        unmixed = (x - new_peak * g) / (1 - g)
        x = np.where(bright, unmixed * old_peak / np.maximum(new_peak, 1e-6), x)
    low = x.min(axis=-1, keepdims=True)
    offset = np.where(low >= 0.04, 0.04, 0.4 * np.sqrt(np.clip(low, 0.0, None)) - low)
    out = np.rint(_srgb_encode(x + offset) * 255).astype(np.uint8)
    # Where clipping made the inverse miss (bright saturated colours), keep whichever shows closer to the colour.
    target = np.asarray(colors, dtype=np.int64)[..., :3]
    miss = np.abs(neutral_tone_map(out).astype(np.int64) - target).max(axis=-1)
    plain = np.abs(neutral_tone_map(target).astype(np.int64) - target).max(axis=-1)
    return np.where((plain < miss)[..., None], target.astype(np.uint8), out)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def neutral_tone_map(colors: np.ndarray) -> np.ndarray:
    """Khronos PBR Neutral tone mapping of uint8 sRGB colours, as the preview shows them (uint8 sRGB): the forward
    operator ``preview_colors`` inverts (for tests and measurements)."""
    x = _srgb_to_linear(np.asarray(colors, dtype=np.float64)[..., :3] / 255.0)
    low = x.min(axis=-1, keepdims=True)
    x = x - np.where(low < 0.08, low - 6.25 * low * low, 0.04)
    start, d = 0.8 - 0.04, 0.24
    peak = x.max(axis=-1, keepdims=True)
    new_peak = 1 - d * d / (peak + d - start)
    g = 1 - 1 / (0.15 * (peak - new_peak) + 1)
    compressed = x * new_peak / np.maximum(peak, 1e-6) * (1 - g) + new_peak * g
    return np.rint(_srgb_encode(np.where(peak >= start, compressed, x)) * 255).astype(np.uint8)
# Mesh of an inversion's result: a small grid at the original's level (cheap next to the inversion itself).
INVERT_MESH_RESOLUTION = 64
INVERT_MESH_LEVEL = 10.0
# A gradient step (forward and backward through the reference kernels) costs about as much as this many renders at
# the same resolution and depth samples (measured on a CPU with the demo model).
GRAD_STEP_COST = 10.0


def inversion_settings(steps: int, base: InversionSettings | None = None) -> InversionSettings:
    """The web demo's inversion: ``base`` (default InversionSettings()) with ``steps`` refinement steps, no PTI (the
    result is a latent of the served model) and no previews."""
    return replace(base or InversionSettings(), pti_steps=0, w_plus_steps=0, preview_every=0).with_steps(steps)


def invert_cost(G: Generator, settings: InversionSettings, search: bool, frames: int) -> float:
    """An inversion's estimated work, in renders at the model's own resolution: the camera search (grid cells x
    latents, at the coarse resolution), its candidates' and the coarse steps (coarse resolution and samples), the fine
    steps (the model's resolution), then the orbit video's frames and the small mesh."""
    r = G.config.rendering
    own, samples = r.neural_rendering_resolution, r.depth_resolution + r.depth_resolution_importance
    coarse = (settings.coarse_resolution / own) ** 2 * min(1.0, 2 * settings.coarse_samples / samples)
    fine = min(1.0, 2 * settings.fine_samples / samples) if settings.fine_samples else 1.0
    work = GRAD_STEP_COST * (settings.coarse_steps * coarse + settings.fine_steps * fine)
    if search:
        cells = math.ceil(360 / settings.search_yaw_step) * math.ceil(90 / settings.search_pitch_step)
        work += cells * settings.search_latents * coarse
        work += GRAD_STEP_COST * settings.camera_steps(full_circle(G)) * coarse
    return work + frames + mesh_cost(G, INVERT_MESH_RESOLUTION)


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
    depth_range: tuple[float, float] | None = None  # (near, far) the depth colours span; None: nothing in view


@dataclass(frozen=True)
class InvertResult:
    picture: np.ndarray  # uint8 HWC: the input (as the inversion saw it) | the fit, side by side
    video: Path  # MP4: an orbit around the picture's camera
    mesh: dict[str, Path] | None  # extension -> file; None when the result has no surface at the level
    npz: Path  # ws, c, yaw, pitch (+ psnr, losses, timings), as ``eg3d invert`` writes it
    yaw: float  # the picture's camera, degrees from frontal
    pitch: float
    psnr: float
    seconds: float
    preview: Path | None = None  # the mesh as a .glb for the page's viewer (see MeshResult.preview); None: no mesh


@dataclass(frozen=True)
class MeshResult:
    files: dict[str, Path]  # extension -> file
    preview: Path  # a .glb for the page's viewer (colours made to show as they are: see preview_colors)
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

    def default_view(self) -> tuple[float, float]:
        """The (yaw, pitch) in whole degrees the demo opens on (``CameraDefaults.view``: three-quarter from above for
        objects, frontal for faces)."""
        yaw, pitch = self.defaults.view
        return float(round(math.degrees(yaw))), float(round(math.degrees(pitch)))

    def preview_camera(self, viewer_fov: float = PREVIEW_FOV, view: tuple[float, float] | None = None
                       ) -> tuple[float, float, float]:
        """The default view (or ``view``: yaw, pitch in radians from frontal) as a 3D viewer's orbit camera around the
        world's +y axis, so that a mesh preview opens where the picture was rendered from: (alpha, beta, radius),
        alpha the azimuth from +x towards +z and beta the angle from +y in degrees (gradio's Model3D
        ``camera_position``), radius in world units, moved so that the object fills the viewer's vertical field of
        view ``viewer_fov`` (radians) as it fills the picture."""
        pose = cameras.camera(self.defaults, *(view or self.defaults.view))[0, :16].reshape(4, 4)
        x, y, z = (float(t) for t in pose[:3, 3])
        radius = math.sqrt(x * x + y * y + z * z)
        scale = (0.5 / self.defaults.focal) / math.tan(viewer_fov / 2)  # the picture's half height over the viewer's
        return math.degrees(math.atan2(z, x)), math.degrees(math.acos(y / radius)), radius * scale

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
        return RenderResult(picture, depth, time.perf_counter() - t0, cached, depth_range(out))

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
              progress: ProgressFn | None = None, folder: Path | None = None, stem: str | None = None) -> Path:
        """Write an orbit video (MP4, H.264) of the request's view; returns its path (in ``folder``, default a new
        job folder)."""
        file = (folder or self.output_dir.new_job("video")) / f"{stem or f'seed{req.seed}'}_{path}.mp4"
        write_video(self.frames(req, num_frames, path, progress), file, fps=fps, macro_block_size=1)
        return file

    def mesh(self, seed: int, psi: float, cutoff: int | None, resolution: int, level: float,
             progress: ProgressFn | None = None) -> MeshResult:
        """Extract the iso-surface at ``level`` and save it as .glb/.ply/.obj with vertex colours.

        Raises NoSurfaceError when the density never crosses ``level`` (the message gives the range seen).
        """
        return self.mesh_of(LatentSource(seed=seed, psi=psi, cutoff=cutoff), resolution, level, progress,
                            stem=f"seed{seed}")

    def mesh_of(self, latent: LatentSource, resolution: int, level: float, progress: ProgressFn | None = None,
                folder: Path | None = None, stem: str = "mesh") -> MeshResult:
        """``mesh`` of any latent, written as ``folder/stem.{glb,ply,obj}`` (default folder: a new job folder)."""
        t0 = time.perf_counter()
        ws, planes, _ = self.latent(latent, RenderSettings())  # const noise, fp32: the planes the mesh needs

        def on_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(0.9 * done / max(total, 1), "extracting the surface")

        try:
            mesh: Mesh = generator_mesh(self.G, ws, resolution=resolution, level=level, colors=True,
                                        coarse_to_fine=True, progress=on_progress, planes=planes)
        except NoSurfaceError as e:
            raise NoSurfaceError(f"{e}; pick a level inside that range") from None
        if progress is not None:
            progress(0.95, "saving")
        job = folder or self.output_dir.new_job("mesh")
        files = {ext: job / f"{stem}{ext}" for ext in MESH_FORMATS}
        for file in files.values():
            save_mesh(mesh, file)
        preview = job / f"{stem}_preview.glb"
        colors = None if mesh.colors is None else preview_colors(mesh.colors)
        save_mesh(Mesh(vertices=mesh.vertices, faces=mesh.faces, colors=colors), preview)
        return MeshResult(files, preview, len(mesh.vertices), len(mesh.faces), time.perf_counter() - t0)

    def invert(self, req: InvertRequest, progress: ProgressFn | None = None,
               base: InversionSettings | None = None) -> InvertResult:
        """Invert the request's picture (``eg3d invert``'s work: ``apps.invert.invert_one``), then an orbit video and,
        when the result has a surface at the original level, a small coloured mesh of the found latent. Every file goes
        into one new job folder. ``base``: the inversion settings before the request's steps (tests make them cheap).
        """
        t0 = time.perf_counter()
        settings = inversion_settings(req.steps, base)
        job = self.output_dir.new_job("invert")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", req.picture.stem)[:40].strip("_") or "picture"
        fraction = StageProgress(settings, req.yaw is None, full_circle(self.G))  # the fit: 75% of the bar

        def on_step(stage: str, step: int, total: int, preview: np.ndarray | None) -> None:
            if progress is not None:
                progress(0.75 * fraction(stage, step, total), f"fitting: {stage} {step}/{total}")

        result, written = invert_one(self.G, req.picture, job / f"{stem}.npz", settings, req.yaw, req.pitch,
                                     on_step)
        assert result.fit is not None
        fit = visualize.to_uint8(result.fit[0])
        size = fit.shape[0]
        target = load_picture(req.picture, size, model_background(self.G))
        picture = np.concatenate([visualize.to_uint8(target[0]), fit], axis=1)

        latent = LatentSource.from_ws(result.ws.to(self.device), name=stem)
        view = RenderRequest(seed=0, yaw=result.yaw, pitch=result.pitch, given=latent)

        def scaled(lo: float, hi: float) -> ProgressFn | None:
            if progress is None:
                return None
            return lambda f, desc: progress(lo + (hi - lo) * f, desc)

        video = self.video(view, req.frames, req.fps, "orbit", scaled(0.75, 0.9), folder=job, stem=stem)
        try:
            meshed: MeshResult | None = self.mesh_of(latent, INVERT_MESH_RESOLUTION, INVERT_MESH_LEVEL,
                                                     scaled(0.9, 1.0), folder=job, stem=stem)
        except NoSurfaceError:
            meshed = None
        return InvertResult(picture, video, None if meshed is None else meshed.files, written[0], result.yaw,
                            result.pitch, result.psnr, time.perf_counter() - t0,
                            None if meshed is None else meshed.preview)
