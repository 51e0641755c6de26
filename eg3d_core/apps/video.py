"""Videos: MP4 writing, frame grids, and the two video builders of the original ``gen_videos.py``.

* :func:`latent_interpolation_frames` — a grid of seeds, each cell interpolating its keyframe latents (cubic,
  wrapping around) while the camera follows the gen_videos orbit. Every frame has new latents, so every frame
  runs the backbone.
* :func:`orbit_frames` — one fixed latent per cell seen from the orbit: the tri-planes are computed once and
  each frame only renders (much faster; this is what ``--num-keyframes 1`` or a single seed gives).
* :func:`path_frames` / :func:`render_path_video` — a keyframed camera path (``eg3d_core.camera_path``): its
  cameras, FOV and blended latents, frame by frame (``eg3d video --path``, the viewer's path export).

Frames are ``uint8 [H, W, 3]`` numpy arrays and are produced lazily, so :func:`write_video` can stream them
to ffmpeg without keeping the whole video in memory.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from .. import cameras
from ..camera_path import CameraPath, path_cameras, path_latents
from ..errors import InputError, OutputError
from ..fileio import atomic_file
from ..generator import Generator
from ..latents import LatentSource, PlaneCache, map_seeds
from ..settings import RenderSettings
from ..visualize import to_uint8
from .samples import render_outputs

IMAGE_MODES = ("image", "image_raw", "image_depth")
# gen_videos conditions on yaw = pitch = 3.14 / 2 (pi written as 3.14): this offset from the frontal view.
CONDITIONING_OFFSET = cameras.SCRIPT_PI / 2 - cameras.FRONTAL


# ----------------------------------------------------------------------------------------------------------------
# Writing


def _check_frame(frame: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame {index}: expected a uint8 [H, W, 3] array, got {frame.dtype} {list(frame.shape)}")
    if shape is not None and frame.shape != shape:
        raise InputError(f"frame {index}: size {list(frame.shape)} differs from the first frame's {list(shape)}")
    return frame


def _encoder_command(tmp: Path, shape: tuple[int, ...], fps: int, bitrate: str, macro_block_size: int) -> list[str]:
    """imageio-ffmpeg's ``write_frames`` command (so imageio's videos, and MMagic's): raw RGB on stdin to libx264
    yuv420p at ``bitrate``, scaled up to multiples of ``macro_block_size`` when the size is not one."""
    import imageio_ffmpeg

    h, w = shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}",
           "-pix_fmt", "rgb24", "-r", str(fps), "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
           "-b:v", str(bitrate)]
    if macro_block_size > 1 and (w % macro_block_size or h % macro_block_size):
        cmd += ["-vf", f"scale={-(-w // macro_block_size) * macro_block_size}:{-(-h // macro_block_size) * macro_block_size}"]
    return [*cmd, "-v", "error", str(tmp)]


def _first_error(log: IO[bytes]) -> str:
    """ffmpeg's first error line (the cause; later ones are consequences) without its ``[muxer @ 0x...]`` prefix,
    e.g. 'Could not write header (incorrect codec parameters ?): No space left on device'."""
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return re.sub(r"^\[[^]]*\]\s*", "", lines[0]) if lines else "no message"


def _check_readable(tmp: Path, path: Path, count: int) -> None:
    """Decode the finished file: it must open as a video and hold ``count`` frames (ffmpeg can exit 0 over a file
    it could not finish, e.g. when a file system drops data without an error)."""
    import imageio_ffmpeg

    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp))
    except RuntimeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise OutputError(f"cannot write {path}: the encoded video does not read back ({lines[-1].strip()})") from None
    if frames != count:
        raise OutputError(f"cannot write {path}: the encoded video holds {frames} of {count} frames")


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: int = 60, bitrate: str = "10M",
                *, macro_block_size: int = 16) -> int:
    """Encode uint8 [H, W, 3] frames with ffmpeg/libx264 (imageio-ffmpeg's binary and command), atomically.
    Returns the frame count.

    The file appears only once complete and checked: frames go to a temporary sibling with the same extension
    (ffmpeg picks the container from it); ffmpeg must exit 0 and the file must decode to as many frames as were
    given before it is renamed into place. Otherwise (a full disk, a killed encoder, any error or interrupt) it is
    removed, ffmpeg is stopped, nothing is created, and an ``OutputError`` gives ffmpeg's reason in one line.
    Like imageio's defaults (and so MMagic's videos), sizes that are not multiples of ``macro_block_size`` (16)
    are resized up; ``macro_block_size=1`` keeps the exact size (yuv420p then needs even sizes).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    count, shape, encoder = 0, None, None
    with atomic_file(path if path.suffix else path.with_suffix(".mp4")) as tmp, tempfile.TemporaryFile() as log:
        try:
            for frame in frames:
                frame = _check_frame(frame, count, shape)
                if encoder is None:
                    shape = frame.shape
                    encoder = subprocess.Popen(_encoder_command(tmp, shape, fps, bitrate, macro_block_size),
                                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
                try:
                    encoder.stdin.write(np.ascontiguousarray(frame).data)
                except BrokenPipeError:  # ffmpeg has stopped: its exit status and message say why
                    break
                count += 1
            if encoder is None:
                raise InputError(f"cannot write {path}: no frames")
            with contextlib.suppress(BrokenPipeError):
                encoder.stdin.close()
            status = encoder.wait()
        except BaseException:
            if encoder is not None:
                encoder.kill()
                encoder.wait()
            raise
        if status < 0:
            raise OutputError(f"cannot write {path}: ffmpeg was stopped ({signal.strsignal(-status) or -status})")
        if status != 0:
            raise OutputError(f"cannot write {path}: ffmpeg failed ({_first_error(log)})")
        _check_readable(tmp, path, count)
    return count


# ----------------------------------------------------------------------------------------------------------------
# Grids


def layout_grid(images: np.ndarray, grid_w: int, grid_h: int) -> np.ndarray:
    """[grid_h * grid_w, H, W, C] -> one [grid_h * H, grid_w * W, C] image, row-major, no padding (gen_videos)."""
    n, h, w, c = images.shape
    if n != grid_w * grid_h:
        raise InputError(f"{n} images do not fill a {grid_w}x{grid_h} grid")
    return images.reshape(grid_h, grid_w, h, w, c).transpose(0, 2, 1, 3, 4).reshape(grid_h * h, grid_w * w, c)


def make_grid(images: np.ndarray, nrow: int, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """torchvision's ``make_grid`` for [N, H, W, C] arrays: ``nrow`` images per row, ``padding`` pixels around
    and between them. A single image is returned unpadded (as torchvision does)."""
    n, h, w, c = images.shape
    if n == 1:
        return images[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    out = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, dtype=images.dtype)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + padding) + padding, x * (w + padding) + padding
        out[top : top + h, left : left + w] = images[k]
    return out


def calculate_grid_size(num: int, aspect_ratio: float = 1.0) -> int:
    """MMagic's images-per-row for a batch (despite MMagic calling it ``nrow``): the column count whose grid,
    of ``aspect_ratio``-wide images, is closest to square without being wider than tall.
    E.g. 4 -> 2, 6 -> 3, 16 -> 4; with aspect 2: 4 -> 2, 9 -> 3."""
    ncol, nrow = 1, num
    delta = nrow * aspect_ratio - ncol
    best_nrow, best_delta = nrow, delta
    while delta > 0:
        ncol += 1
        nrow = -(-num // ncol)
        delta = nrow * aspect_ratio - ncol
        if 0 <= delta < best_delta:
            best_nrow, best_delta = nrow, delta
    return best_nrow


# ----------------------------------------------------------------------------------------------------------------
# Frame rendering


def frame_image(out: dict[str, torch.Tensor], image_mode: str) -> np.ndarray:
    """Generator outputs of a batch -> uint8 [N, H, W, 3] the way gen_videos shows them.

    ``image_depth`` is negated and min-max normalised per image (near = bright), then shown as grey.
    """
    if image_mode not in IMAGE_MODES:
        raise InputError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, got {image_mode!r}")
    img = out[image_mode]
    if image_mode == "image_depth":
        d = -img.float()
        flat = d.reshape(d.shape[0], -1)
        lo = flat.min(dim=1).values[:, None, None, None]
        hi = flat.max(dim=1).values[:, None, None, None]
        img = ((d - lo) / (hi - lo).clamp_min(1e-8) * 2 - 1).expand(-1, 3, -1, -1)
    return to_uint8(img)


def video_cameras(G: Generator, num_frames: int, focal: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The gen_videos cameras: (conditioning [1, 25] at (3.14/2, 3.14/2), orbit [num_frames, 25]).

    Both use the model's average radius and pivot; the original writes pi as 3.14 here, kept for equal poses.
    """
    defaults = cameras.camera_defaults(G.config)
    cond = cameras.camera(defaults, yaw=CONDITIONING_OFFSET, pitch=CONDITIONING_OFFSET, focal=focal)
    path = cameras.orbit(num_frames)
    return cond, cameras.camera(defaults, yaw=path[:, 0], pitch=path[:, 1], focal=focal)


def video_latent(seed: int, psi: float = 1.0, cutoff: int | None = None, focal: float | None = None) -> LatentSource:
    """A seed mapped with the gen_videos conditioning camera (the first of :func:`video_cameras`)."""
    return LatentSource(seed=seed, psi=psi, cutoff=cutoff, cond_yaw=CONDITIONING_OFFSET, cond_pitch=CONDITIONING_OFFSET,
                        cond_focal=focal)


@dataclass(frozen=True)
class LatentGrid:
    """Keyframe latents of a video grid: ws [grid_h, grid_w, num_keyframes, num_ws, w_dim] and their seeds."""

    ws: torch.Tensor
    seeds: np.ndarray  # [grid_h, grid_w, num_keyframes]

    @property
    def grid(self) -> tuple[int, int]:
        return self.ws.shape[1], self.ws.shape[0]

    @property
    def num_keyframes(self) -> int:
        return self.ws.shape[2]


def keyframe_latents(G: Generator, seeds: list[int], grid: tuple[int, int] = (1, 1), num_keyframes: int | None = None,
                     truncation_psi: float = 1.0, truncation_cutoff: int | None = None, shuffle_seed: int | None = None,
                     conditioning: torch.Tensor | None = None, device: str | torch.device | None = None) -> LatentGrid:
    """gen_videos' keyframes: seeds are repeated to fill ``num_keyframes * W * H`` slots (in order, optionally
    shuffled with ``RandomState(shuffle_seed)``), mapped in one pass with the frontal conditioning camera
    (``latents.map_seeds``; cutoff None truncates every w, 0 none), and laid out as cell-major [H, W, K]
    (slot index = (y * W + x) * K + k)."""
    grid_w, grid_h = grid
    if grid_w < 1 or grid_h < 1:
        raise InputError(f"grid must be at least 1x1, got {grid_w}x{grid_h}")
    if not seeds:
        raise InputError("no seeds given")
    if num_keyframes is None:
        if len(seeds) % (grid_w * grid_h) != 0:
            raise InputError(f"the number of seeds ({len(seeds)}) must be divisible by the grid size {grid_w}x{grid_h}")
        num_keyframes = len(seeds) // (grid_w * grid_h)
    if num_keyframes < 1:
        raise InputError(f"num_keyframes must be >= 1, got {num_keyframes}")
    total = num_keyframes * grid_w * grid_h
    all_seeds = np.array([seeds[i % len(seeds)] for i in range(total)], dtype=np.int64)
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(all_seeds)
    if conditioning is None:
        conditioning = video_cameras(G, 1)[0]
    ws = map_seeds(G, all_seeds.tolist(), conditioning, truncation_psi, truncation_cutoff, device)
    return LatentGrid(ws.reshape(grid_h, grid_w, num_keyframes, *ws.shape[1:]),
                      all_seeds.reshape(grid_h, grid_w, num_keyframes))


def _render(G: Generator, cache: PlaneCache, latent: LatentSource, c: torch.Tensor, settings: RenderSettings,
            image_mode: str) -> dict[str, torch.Tensor]:
    entry, _ = cache.latent(latent, settings)  # frames whose latents did not change only re-render
    return render_outputs(G, entry.planes, entry.ws, c, settings, image_mode)


def latent_interpolation_frames(G: Generator, latents: LatentGrid, w_frames: int = 120, image_mode: str = "image",
                                settings: RenderSettings | None = None, kind: str = "cubic", wraps: int = 2,
                                focal: float | None = None) -> Iterator[np.ndarray]:
    """gen_videos with ``--interpolate``: ``num_keyframes * w_frames`` frames of the latent grid.

    Each cell's keyframes are tiled ``2 * wraps + 1`` times so that the (cubic) spline through them closes
    smoothly; frame t shows latents at keyframe position ``t / w_frames`` and the orbit camera at t / T. The
    conditioning only enters through the keyframe mapping (the original's ``entangle='camera'``).
    """
    from scipy.interpolate import interp1d

    if w_frames < 1:
        raise InputError(f"w_frames must be >= 1, got {w_frames}")
    settings = settings or RenderSettings()
    grid_w, grid_h = latents.grid
    k = latents.num_keyframes
    num_frames = k * w_frames
    device = latents.ws.device
    cams = video_cameras(G, num_frames, focal)[1].to(device)
    ws_np = latents.ws.detach().cpu().numpy().reshape(grid_h * grid_w, k, *latents.ws.shape[3:])
    x = np.arange(-k * wraps, k * (wraps + 1))
    if k == 1:
        # One keyframe: every frame shows it, and the cached tri-planes serve the whole video.
        ws = latents.ws.reshape(grid_h * grid_w, *latents.ws.shape[3:])
        cache, latent = PlaneCache(G, size=1), LatentSource.from_ws(ws)
        for t in range(num_frames):
            out = _render(G, cache, latent, cams[t : t + 1].expand(ws.shape[0], 25), settings, image_mode)
            yield layout_grid(frame_image(out, image_mode), grid_w, grid_h)
        return
    splines = [interp1d(x, np.tile(cell, [wraps * 2 + 1, 1, 1]), kind=kind, axis=0) for cell in ws_np]
    for t in range(num_frames):
        # ws change every frame: no cache could hit, so the backbone runs directly.
        ws = torch.from_numpy(np.stack([s(t / w_frames) for s in splines]).astype(np.float32)).to(device)
        with torch.no_grad():
            planes = G.planes(ws, settings.noise_mode, settings.precision)
        out = render_outputs(G, planes, ws, cams[t : t + 1].expand(ws.shape[0], 25), settings, image_mode)
        yield layout_grid(frame_image(out, image_mode), grid_w, grid_h)


def orbit_frames(G: Generator, ws: torch.Tensor, num_frames: int, grid: tuple[int, int] = (1, 1),
                 image_mode: str = "image", settings: RenderSettings | None = None,
                 focal: float | None = None) -> Iterator[np.ndarray]:
    """Camera-only video: fixed latents ws [grid_w * grid_h, num_ws, w_dim] on the gen_videos orbit.

    The tri-planes are computed once; each frame costs rendering and super-resolution only.
    """
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    settings = settings or RenderSettings()
    cams = video_cameras(G, num_frames, focal)[1].to(ws.device)
    cache, latent = PlaneCache(G, size=1), LatentSource.from_ws(ws)
    for t in range(num_frames):
        out = _render(G, cache, latent, cams[t : t + 1].expand(ws.shape[0], 25), settings, image_mode)
        yield layout_grid(frame_image(out, image_mode), *grid)


def path_frames(G: Generator, path: CameraPath, settings: RenderSettings | None = None,
                latent: LatentSource | torch.Tensor | None = None, image_mode: str = "image") -> Iterator[np.ndarray]:
    """The frames of a camera path, uint8 [H, W, 3] each: the path's cameras (``camera_path.path_cameras``) and
    latents (``camera_path.path_latents``: blended in W; keyframes without a latent show ``latent``, a
    ``LatentSource`` or ws [1, num_ws, w_dim]).

    Frames whose latent did not change reuse the tri-planes (a two-entry cache keyed on the ws), so a camera-only
    path runs the backbone once per keyframe latent.
    """
    settings = settings or RenderSettings()
    if image_mode not in IMAGE_MODES:
        raise InputError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, got {image_mode!r}")
    current = latent.ws(G).cpu() if isinstance(latent, LatentSource) else latent
    cams = path_cameras(path, G.config)
    latents = path_latents(path, G, current)
    cache = PlaneCache(G, size=2)
    last: tuple[torch.Tensor, LatentSource] | None = None
    device = next(G.parameters()).device
    for t, ws in enumerate(latents):
        if last is None or ws is not last[0]:  # path_latents repeats the same tensor while the latent holds
            last = (ws, LatentSource.from_ws(ws))
        out = _render(G, cache, last[1], cams[t : t + 1].to(device), settings, image_mode)
        yield frame_image(out, image_mode)[0]


class _Stopped(Exception):
    """Raised inside the frame stream when ``should_stop()`` says so; ``write_video`` then removes its file."""


def render_path_video(G: Generator, path: CameraPath, out_file: str | os.PathLike[str],
                      settings: RenderSettings | None = None, latent: LatentSource | torch.Tensor | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None, image_mode: str = "image",
                      bitrate: str = "10M") -> int | None:
    """Render a camera path to an MP4 at the path's frame rate, atomically (``write_video``).

    ``progress(done, total)`` is called after each frame (and with 0 first); ``should_stop()`` is asked before each
    frame: when it says True the encoder is stopped, no file is left (not even a partial one) and None is
    returned. Otherwise returns the number of frames written. Safe to call from a worker thread (nothing here
    touches global state; the generator is only read). Errors: ``InputError`` (a path without keyframes or
    latent, ws of the wrong shape), ``OutputError`` (the file cannot be written).
    """
    total = path.num_frames
    if total == 0:
        raise InputError("the camera path has no keyframes")
    frames = path_frames(G, path, settings, latent, image_mode)

    def stream() -> Iterator[np.ndarray]:
        if progress is not None:
            progress(0, total)
        for done in range(total):
            if should_stop is not None and should_stop():
                raise _Stopped
            frame = next(frames)
            yield frame
            if progress is not None:
                progress(done + 1, total)

    try:
        return write_video(stream(), out_file, fps=path.fps, bitrate=bitrate)
    except _Stopped:
        return None


__all__ = ["IMAGE_MODES", "LatentGrid", "calculate_grid_size", "frame_image", "keyframe_latents",
           "latent_interpolation_frames", "layout_grid", "make_grid", "orbit_frames", "path_frames",
           "render_path_video", "video_cameras", "video_latent", "write_video"]
