"""The ``eg3d`` command: ``demo``, ``samples``, ``video``, ``mesh``, ``path``, ``convert``, ``dataset`` and ``fid``.

Argument parsing and progress bars only; the work is done by library functions (``mmagic_demo``, ``samples``,
``video``, ``convert``, ``datasets``). Without ``--model``/``--network``/``--model-ckpt`` the bundled demo model
is used. User errors (``EG3DError``: bad checkpoints, bad input, unwritable outputs; and ``OSError`` from the
system) end with one ``error: ...`` line on stderr and exit code 1, never a traceback; any other exception is a bug
and keeps its traceback. An output folder this run created is removed again when the run fails with nothing in it.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .. import budget
from ..camera_path import DURATION as PATH_DURATION
from ..camera_path import FOV as PATH_FOV
from ..camera_path import RADIUS as PATH_RADIUS
from ..errors import EG3DError, InputError, OutputError
from ..mesh.grid import RESOLUTION as MESH_RESOLUTION
from ..runtime import reuse_freed_memory
from ..settings import (
    FOCAL,
    NEURAL_RENDERING_RESOLUTION,
    NOISE_MODES,
    PITCH,
    PRECISIONS,
    SAMPLE_MULT,
    TRUNCATION_PSI,
    YAW,
)
from ..visualize import SEED_LIMIT

T = TypeVar("T")

DEFAULT_SEEDS = "0-3"
# Ranges of the options that are the command line's own (the rendering ones are the library's: settings, mesh.grid).
SEED_MAX = SEED_LIMIT - 1  # the largest seed
LEVEL = (-1e4, 1e4)  # iso level on the raw density: far beyond any model's range (the volumes' borders are -1000)
SMOOTH = (0, 100)  # Taubin iterations
FRAMES = (1, 10_000)  # frames per keyframe, keyframes, MMagic demo frames
FPS = (1, 240)
BITRATE = (1e4, 1e9)  # 10 kbit/s .. 1 Gbit/s
GRID_SIDE = 16  # video grid cells per side
BATCH = (1, 64)  # images rendered at once (MMagic demo latents, FID batch)
CUTOFF = (0, 1000)  # truncated ws: beyond a model's count means all of them
FID_SAMPLES = (2, 1_000_000)
THREADS = (1, 1024)
MAX_PATH_KEYFRAMES = 1000
REDUCED_HELP = ("fp32, or reduced: float16 autocast on CUDA, bfloat16 on CPUs with native bfloat16, else float32 "
                "with faster, slightly less exact convolutions")


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine (use --device cpu)")
    if not (name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise InputError(f"unknown device {name!r} (use cpu, cuda or cuda:N)")
    return name


def _outdir(args: argparse.Namespace, path: str | os.PathLike[str]) -> Path:
    """Create the output folder and make sure files can be written there (one-line error otherwise).

    The folders this creates are noted in ``args.created_dirs`` (deepest first), so that ``main`` can remove them
    again if the command fails before writing anything into them.
    """
    out = Path(path)
    args.created_dirs.extend(p for p in (out, *out.parents) if not p.exists())
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise OutputError(f"cannot write to {out}: {e.strerror or e}") from None
    return out


def _remove_empty(folders: Iterable[Path]) -> None:
    """Remove the folders (deepest first) that are still empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def _bar(args: argparse.Namespace, iterable: Iterable[T], desc: str, total: int | None = None,
         unit: str = "it") -> Iterable[T]:
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=args.quiet, dynamic_ncols=True)


class _Progress:
    """A ``progress(done, total)`` callback (mesh extraction) drawn as a tqdm bar whose total may grow."""

    def __init__(self, args: argparse.Namespace, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, total=0, unit="pt", unit_scale=True, disable=args.quiet, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"note: {text}", file=sys.stderr)


def _for_latent(latent: Any, e: InputError) -> InputError:
    """The same error (same type, e.g. NoSurfaceError) with the latent it happened for (``seed N`` or the ws file)
    in front of the message, unless it starts with it already."""
    name = latent.name if latent.seed is None else f"seed {latent.seed}"
    return e if str(e).startswith(f"{name}:") else type(e)(f"{name}: {e}")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _number(bounds: tuple[float, float]) -> Callable[[str], float]:
    """An argparse type: a finite float in ``bounds`` (inclusive)."""
    lo, hi = bounds

    def parse(text: str) -> float:
        value = _float(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected a number in [{lo:g}, {hi:g}], got {text}")
        return value

    return parse


def _numbers(bounds: tuple[float, float], most: int = 16) -> Callable[[str], list[float]]:
    """An argparse type: 1 to ``most`` comma-separated finite floats in ``bounds``."""
    lo, hi = bounds

    def parse(text: str) -> list[float]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected at least one number")
        if len(items) > most:
            raise argparse.ArgumentTypeError(f"expected at most {most} numbers, got {len(items)}")
        values = []
        for item in items:
            try:
                value = _float(item)
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers, got {item!r} in "
                                                 f"{text!r}") from None
            if not lo <= value <= hi:
                raise argparse.ArgumentTypeError(f"expected numbers in [{lo:.4g}, {hi:.4g}], got {item}")
            values.append(value)
        return values

    return parse


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {value}")
        return value

    return parse


def _grid(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WxH like 2x2, got {text!r}")
    w, h = int(parts[0]), int(parts[1])
    if max(w, h) > GRID_SIDE:
        raise argparse.ArgumentTypeError(f"expected at most {GRID_SIDE} cells a side, got {w}x{h}")
    return w, h


def _bitrate(text: str) -> str:
    """ffmpeg's ``-b:v``: bits per second, with an optional k or M suffix, within ``BITRATE``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    lo, hi = BITRATE
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()] if m else None
    if value is None or not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"expected a bitrate from {lo / 1e3:g}k to {hi / 1e6:g}M like 10M or 800k, "
                                         f"got {text!r}")
    return text.strip()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false or 1/0, got {text!r}")


_seed = _int_in(0, SEED_MAX)
_frames = _int_in(*FRAMES)
_batch = _int_in(*BATCH)
_focal = _number(FOCAL)
_mesh_resolution = _int_in(*MESH_RESOLUTION)
FOCAL_HELP = f"normalised focal in [{FOCAL[0]:g}, {FOCAL[1]:g}] (default: the model's usual one)"


def _seeds(text: str) -> list[int]:
    from .samples import parse_seeds

    try:
        return parse_seeds(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    """argparse reporting a bad command line like every other bad input: one ``error: ...`` line (naming the
    option), exit status 1."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {' '.join(message.split())}\n")


def _require_render(args: argparse.Namespace, config: Any, settings: Any, batch: int = 1) -> None:
    """Refuse a render that would not fit in memory, naming the options that size it."""
    sized = [f"--nrr {args.nrr}"] if args.nrr is not None else []
    if getattr(args, "sample_mult", 1) != 1:
        sized.append(f"--sample-mult {args.sample_mult}")
    what = " ".join(sized) or "rendering"
    if batch > 1:
        what += f" ({batch} images at once)"
    budget.require_memory(budget.render_bytes(config, settings, batch), what, args.device)


def _require_mesh(args: argparse.Namespace, option: str, resolution: int, dense: bool) -> None:
    """Refuse a mesh / volume grid that would not fit in memory."""
    what = f"{option} {resolution}" + (" (a dense grid)" if dense else "")
    budget.require_memory(budget.mesh_bytes(resolution, dense), what, args.device)


def _load(args: argparse.Namespace, source: str | None, config: str | None) -> Any:
    """Load the model named on the command line (the demo model when none), printing notes."""
    from .convert import load_model

    loaded = load_model(source or "demo", config, args.device)
    for text in loaded.notes:
        _note(args, text)
    return loaded


def _model_for_latent(args: argparse.Namespace) -> str | None:
    """The model for ``--latent X.npz``: ``--model`` when given, else the pivotal-tuned generator ``eg3d invert --pti``
    saved beside the file (the folder X/ in our saved format), said in one line on stderr, else None (the demo)."""
    from ..checkpoints.saved import WEIGHTS_FILE

    if args.model is not None or getattr(args, "latent", None) is None:
        return args.model
    latent = Path(args.latent)
    tuned = latent.with_suffix("")
    if tuned != latent and (tuned / WEIGHTS_FILE).is_file():
        _note(args, f"using the pivotal-tuned model {tuned}/ saved with {latent.name} (--model overrides)")
        return str(tuned)
    return None


def _render_options(args: argparse.Namespace) -> Any:
    """The command line's ``RenderSettings``."""
    from ..settings import RenderSettings

    return RenderSettings(neural_rendering_resolution=args.nrr, sample_mult=args.sample_mult,
                          precision=args.precision, noise_mode=getattr(args, "noise_mode", "const"),
                          sr_precision=args.sr_precision)


def _latents(args: argparse.Namespace, make: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """(file stem, ``LatentSource``) per latent to render: the ws file of ``--latent``, else ``make(seed)`` for each
    of ``--seeds`` (named like gen_samples: seed0003)."""
    from ..latents import LatentSource
    from .samples import seed_name

    if args.latent is not None:
        return [(Path(args.latent).stem, LatentSource.from_file(args.latent))]
    return [(seed_name(seed), make(seed)) for seed in args.seeds]


# ----------------------------------------------------------------------------------------------------------------
# Commands


def cmd_demo(args: argparse.Namespace) -> int:
    from ..cameras import camera_distribution
    from ..checkpoints.mmagic import parse_mmagic_camera
    from .mmagic_demo import DemoSettings, render_demo, write_demo

    if args.model_name.lower() != "eg3d":
        raise InputError(f"only --model-name eg3d is supported, got {args.model_name!r}")
    extra = _extra_parameters(args.extra_parameters)
    num_batches = args.num_batches or extra.get("num_batches", 4)
    settings = DemoSettings(
        interpolation=args.interpolation, num_images=args.num_images, num_batches=num_batches, seed=args.seed,
        vis_mode=args.vis_mode, save_img=args.save_img, save_video=args.save_video, img_suffix=args.img_suffix,
        video_suffix=args.video_suffix, latents=args.latents, render=_render_options(args),
    )
    G = _load(args, args.model_ckpt, args.model_config).G
    _require_render(args, G.config, settings.render, settings.num_batches)
    outdir = _outdir(args, args.result_out_dir)
    mmagic_cam = parse_mmagic_camera(args.model_config) if args.model_config and args.model_config.endswith(".py") else None
    camera = camera_distribution(G.config, mmagic_cam)
    frames = render_demo(G, camera, settings, args.device,
                         progress=lambda it: _bar(args, it, "rendering", settings.num_images, "frame"))
    written = write_demo(frames, settings, outdir, progress=lambda it, desc, n: _bar(args, it, desc, n, "frame"))
    print(f"wrote {_files(len(written))} to {outdir}")
    return 0


def _extra_parameters(items: Sequence[str] | None) -> dict[str, Any]:
    """MMagic's ``--extra-parameters k=v ...``: num_batches (int), sample_model (ema/orig: we hold one set of
    weights, so it changes nothing), add_noise (unused by MMagic's demo too)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--extra-parameters takes key=value pairs, got {item!r}")
        if key == "num_batches":
            if not value.isdigit() or not BATCH[0] <= int(value) <= BATCH[1]:
                raise InputError(f"num_batches must be an integer in [{BATCH[0]}, {BATCH[1]}], got {value!r}")
            out[key] = int(value)
        elif key == "sample_model":
            if value not in ("ema", "orig"):
                raise InputError(f"sample_model must be ema or orig, got {value!r}")
            out[key] = value
        elif key == "add_noise":
            out[key] = value
        else:
            raise InputError(f"unsupported extra parameter {key!r} (EG3D takes num_batches, sample_model, add_noise)")
    return out


def cmd_samples(args: argparse.Namespace) -> int:
    import torch

    from ..latents import LatentSource, PlaneCache
    from .samples import export_shape, render_views, save_png

    G = _load(args, _model_for_latent(args), args.config).G
    latents = _latents(args, lambda seed: LatentSource(seed=seed, psi=args.trunc, cutoff=args.trunc_cutoff))
    settings = _render_options(args)
    mesh_format = args.shape_format if args.shape_format in ("ply", "obj", "glb") else None
    volume_format = args.shape_format if args.shape_format in ("mrc", "npy") else None
    _require_render(args, G.config, settings, len(args.yaws) * len(args.pitches))
    if args.shapes:
        _require_mesh(args, "--shape-res", args.shape_res, dense=volume_format is not None)
    outdir = _outdir(args, args.outdir)
    cache = PlaneCache(G, size=1)
    # The mesh needs const-noise fp32 planes: reuse the rendered ones when they are exactly those.
    reuse_planes = settings.noise_mode == "const" and settings.precision == "fp32"
    count = 0
    unit = "seed" if args.latent is None else "latent"
    for name, latent in _bar(args, latents, f"{unit}s", len(latents), unit):
        entry, _ = cache.latent(latent, settings)
        image = render_views(G, entry.ws, args.yaws, args.pitches, settings, args.focal, args.image_mode,
                             planes=entry.planes)
        save_png(image, outdir / f"{name}.png")
        count += 1
        if args.shapes:
            progress = _Progress(args, f"shape {name}")
            try:
                with torch.no_grad():
                    count += len(export_shape(G, entry.ws, outdir / name, args.shape_res, args.level, mesh_format,
                                              volume_format, colors=not args.no_colors, progress=progress,
                                              planes=entry.planes if reuse_planes else None))
            except InputError as e:
                raise _for_latent(latent, e) from None
            finally:
                progress.close()
    print(f"wrote {_files(count)} to {outdir}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from .video import (
        keyframe_latents,
        latent_interpolation_frames,
        orbit_frames,
        video_cameras,
        video_latent,
        write_video,
    )

    if args.path is not None:
        return _video_path(args)
    if args.fps is None:
        args.fps = 60
    if args.latent is not None and args.grid != (1, 1):
        raise InputError(f"--latent renders one latent: --grid must be 1x1, got {args.grid[0]}x{args.grid[1]}")
    G = _load(args, _model_for_latent(args), args.config).G
    settings = _render_options(args)
    interpolate = args.interpolate and args.latent is None
    _require_render(args, G.config, settings, args.grid[0] * args.grid[1] if interpolate else 1)
    if interpolate:
        latents = keyframe_latents(G, args.seeds, args.grid, args.num_keyframes, args.trunc, args.trunc_cutoff,
                                   args.shuffle_seed, video_cameras(G, 1, args.focal)[0], args.device)
        outdir = _outdir(args, args.outdir)
        total = latents.num_keyframes * args.w_frames
        frames = latent_interpolation_frames(G, latents, args.w_frames, args.image_mode, settings, focal=args.focal)
        jobs = [(outdir / "interpolation.mp4", frames, total)]
    else:
        # One orbit video per seed (named SEED.mp4) or for the --latent file (its stem): a fixed latent, so the
        # tri-planes are computed once.
        sources = _latents(args, lambda seed: video_latent(seed, args.trunc, args.trunc_cutoff, args.focal))
        outdir = _outdir(args, args.outdir)
        jobs = []
        for name, latent in sources:
            stem = name if latent.seed is None else str(latent.seed)
            jobs.append((outdir / f"{stem}.mp4", orbit_frames(G, latent.ws(G), args.w_frames, (1, 1), args.image_mode,
                                                              settings, args.focal), args.w_frames))
    for path, frames, total in jobs:
        n = write_video(_bar(args, frames, path.name, total, "frame"), path, fps=args.fps, bitrate=args.bitrate)
        print(f"wrote {path} ({n} frames)")
    return 0


def _video_path(args: argparse.Namespace) -> int:
    """``eg3d video --path PATH.json``: the path's keyframes -> DIR/<path stem>.mp4."""
    import dataclasses

    from tqdm import tqdm

    from ..camera_path import load_path
    from ..latents import LatentSource
    from .video import render_path_video

    if args.grid != (1, 1):
        raise InputError(f"--path renders one view: --grid must be 1x1, got {args.grid[0]}x{args.grid[1]}")
    if args.focal is not None:
        raise InputError("--focal does not apply to --path: each keyframe carries its FOV")
    path = load_path(args.path)
    if args.fps is not None:
        path = dataclasses.replace(path, fps=args.fps)
    if not path.keyframes:
        raise InputError(f"{args.path}: the camera path has no keyframes")
    G = _load(args, _model_for_latent(args), args.config).G
    settings = _render_options(args)
    _require_render(args, G.config, settings)
    # Keyframes without a latent of their own show --latent, else the first of --seeds.
    latent = (LatentSource.from_file(args.latent) if args.latent is not None
              else LatentSource(seed=args.seeds[0], psi=args.trunc, cutoff=args.trunc_cutoff))
    outdir = _outdir(args, args.outdir)
    out = outdir / f"{Path(args.path).stem}.mp4"
    bar = tqdm(desc=out.name, total=path.num_frames, unit="frame", disable=args.quiet, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        n = render_path_video(G, path, out, settings, latent, progress, image_mode=args.image_mode,
                              bitrate=args.bitrate)
    finally:
        bar.close()
    print(f"wrote {out} ({n} frames, {path.total_seconds:g} s at {path.fps} fps)")
    return 0


def _keyframes(args: argparse.Namespace, config: Any) -> Any:
    """``eg3d path``'s new path: one keyframe per --yaw (with --pitch, one for all or one each) and --seeds (the
    same way), or the model's opening view."""
    from ..camera_path import CameraPath, Keyframe
    from ..cameras import camera_defaults

    yaws, pitches = (([camera_defaults(config).view[0]], [camera_defaults(config).view[1]]) if args.yaw is None
                     else (args.yaw, args.pitch))
    n = max(len(yaws), len(pitches), len(args.seeds or []))
    columns = {"--yaw": yaws, "--pitch": pitches, "--seeds": args.seeds or [None]}
    for name, values in columns.items():
        if len(values) not in (1, n):
            raise InputError(f"{name} gives {len(values)} values for {n} keyframes (give one, or one per keyframe)")
    pick = {name: values * n if len(values) == 1 else values for name, values in columns.items()}
    keyframes = [Keyframe(pick["--yaw"][i], pick["--pitch"][i], radius=args.radius, fov=args.fov,
                          seed=pick["--seeds"][i], psi=args.trunc, cutoff=args.trunc_cutoff, duration=args.duration)
                 for i in range(n)]
    return CameraPath(tuple(keyframes))


def cmd_path(args: argparse.Namespace) -> int:
    """Camera paths between our JSON and nerfstudio's camera_path.json, or a new one from views."""
    import dataclasses

    from ..camera_path import from_nerfstudio, load_path, read_json, save_path, to_nerfstudio
    from ..fileio import write_json

    if args.out is None and args.to_nerfstudio is None:
        raise InputError("nothing to write: give --out PATH.json and/or --to-nerfstudio FILE.json")
    new = {"--yaw": args.yaw, "--pitch": args.pitch, "--fov": args.fov, "--radius": args.radius,
           "--seeds": args.seeds, "--duration": args.duration}
    given = [name for name, value in new.items() if value is not None]
    if given and (args.input is not None or args.from_nerfstudio is not None):
        raise InputError(f"{given[0]} describes a new path: not with --in or --from-nerfstudio")
    if (args.yaw is None) != (args.pitch is None):
        raise InputError("give both --yaw and --pitch, or neither (the model's opening view)")
    if args.duration is None:
        args.duration = 2.0
    config = _load(args, args.model, args.config).G.config
    if args.input is not None:
        path = load_path(args.input)
    elif args.from_nerfstudio is not None:
        try:
            path = from_nerfstudio(read_json(args.from_nerfstudio, "nerfstudio camera path"), config,
                                   None if args.max_deviation < 0 else args.max_deviation, args.nerfstudio_frames)
        except InputError as e:
            raise InputError(f"{args.from_nerfstudio}: {e}") from None
    else:
        path = _keyframes(args, config)
    changes = {"fps": args.fps, "loop": args.loop, "constant_speed": args.constant_speed}
    path = dataclasses.replace(path, **{k: v for k, v in changes.items() if v is not None})
    for target in (args.out, args.to_nerfstudio):
        if target is not None:
            _outdir(args, Path(target).parent)
    summary = f"{len(path.keyframes)} keyframes, {path.num_frames} frames, {path.total_seconds:g} s"
    if args.out is not None:
        save_path(path, args.out)
        print(f"wrote {args.out} ({summary})")
    if args.to_nerfstudio is not None:
        write_json(to_nerfstudio(path, config, args.resolution or config.img_resolution), args.to_nerfstudio, indent=1)
        print(f"wrote {args.to_nerfstudio} (nerfstudio camera_path.json, {summary})")
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    import torch

    from ..latents import LatentSource
    from .samples import export_shape

    mesh_format = None if args.format == "none" else args.format
    if mesh_format is None and args.volume is None:
        raise InputError("--format none needs --volume (nothing to write otherwise)")
    if (args.yaw is not None or args.pitch is not None) and not args.camera:
        raise InputError("--yaw/--pitch choose the --camera view: give --camera too")
    if (args.yaw is None) != (args.pitch is None):
        raise InputError("give both --yaw and --pitch, or neither (the model's opening view)")
    G = _load(args, _model_for_latent(args), args.config).G
    latents = _latents(args, lambda seed: LatentSource(seed=seed, psi=args.trunc, cutoff=args.trunc_cutoff))
    _require_mesh(args, "--resolution", args.resolution, dense=args.dense or args.volume is not None)
    outdir = _outdir(args, args.outdir)
    written: list[Path] = []
    for name, latent in latents:
        progress = _Progress(args, name)
        try:
            with torch.no_grad():
                files = export_shape(G, latent.ws(G), outdir / name, args.resolution, args.level, mesh_format,
                                     args.volume, colors=not args.no_colors, dense=args.dense,
                                     largest_component=args.largest_component, smooth_iterations=args.smooth,
                                     progress=progress)
            if args.camera:
                from ..camera_export import camera_record, mesh_camera_path, save_camera

                mesh_file = files[0] if mesh_format is not None else outdir / name
                record = camera_record(G.config, args.yaw, args.pitch,
                                       mesh=files[0].name if mesh_format is not None else None)
                files.append(save_camera(record, mesh_camera_path(mesh_file)))
            written += files
        except InputError as e:
            raise _for_latent(latent, e) from None
        finally:
            progress.close()
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint, summary

    loaded, to, path = convert_checkpoint(args.src, args.dst, args.to, args.config)
    for text in loaded.notes:
        _note(args, text)
    for line in summary(loaded.G, loaded.format):
        print(line)
    print(f"wrote {path} ({to})")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from .datasets import convert_labels

    src_layout, dst_layout, n = convert_labels(args.in_anno, args.out_anno, args.to)
    print(f"wrote {args.out_anno}: {n} labels ({src_layout} -> {dst_layout})")
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    """FID of a model; under torchrun every rank runs this and rank 0 writes the result."""
    from ..checkpoints.mmagic import parse_mmagic_camera
    from ..fileio import write_json
    from ..metrics.fid import FIDSettings, evaluate_fid
    from ..metrics.sharding import rank_device
    from ..settings import RenderSettings

    settings = FIDSettings(
        num_samples=args.num_samples, camera=args.camera, truncation_psi=args.trunc,
        truncation_cutoff=args.trunc_cutoff, seed=args.seed, batch_size=args.batch_size,
        render=RenderSettings(neural_rendering_resolution=args.nrr, precision=args.precision,
                              noise_mode=args.noise_mode, deterministic=args.deterministic),
        threads=args.threads,
    )
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a .json file path")
    _outdir(args, out.parent)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    quiet = args.quiet or not main_rank
    device = str(rank_device(args.device))  # each rank of a torchrun job loads straight onto its own GPU
    G = _load(argparse.Namespace(**{**vars(args), "quiet": quiet, "device": device}), args.model, args.config).G
    _require_render(argparse.Namespace(**{**vars(args), "device": device}), G.config, settings.render, args.batch_size)
    mmagic_cam = parse_mmagic_camera(args.config) if args.config and args.config.endswith(".py") else None
    run_dir = args.run_dir or out.with_name(out.name + ".parts")
    log = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    result = evaluate_fid(G, args.data, args.inception, settings, labels=args.labels, run_dir=run_dir,
                          cache_dir=None if args.no_cache else args.cache_dir, mmagic_camera=mmagic_cam,
                          keep_shards=args.keep_shards, progress=not quiet, log=log)
    if result.fid is not None:
        write_json(result.record, out, indent=1)
        if result.record["run"]["resumed_samples"]:
            log(f"resumed {result.record['run']['resumed_samples']} samples from {run_dir}")
        print(f"{settings.metric}: {result.fid:.4f} (wrote {out})")
    return 0


def cmd_invert(args: argparse.Namespace) -> int:
    """Pictures -> DIR/<stem>.npz (+ DIR/<stem>/ with --pti); a rerun skips the pictures already done."""
    import math

    from ..inversion import InversionSettings
    from .invert import check_pictures, invert_one, plan

    if (args.yaw is None) != (args.pitch is None):
        raise InputError("give both --yaw and --pitch (degrees from frontal), or neither")
    for name, value, most in (("--yaw", args.yaw, 180.0), ("--pitch", args.pitch, 80.0)):
        if value is not None and not (math.isfinite(value) and abs(value) <= most):
            raise InputError(f"{name} must be a number of degrees in [-{most:g}, {most:g}], got {value}")
    for name, value in (("--steps", args.steps), ("--pti-steps", args.pti_steps)):
        if value is not None and not 1 <= value <= 100_000:
            raise InputError(f"{name} must be an integer in [1, 100000], got {value}")
    settings = InversionSettings(preview_every=0, pti_steps=args.pti_steps if args.pti else 0,
                                 perceptual=args.perceptual)
    if args.steps is not None:
        settings = settings.with_steps(args.steps)
    outdir = _outdir(args, args.outdir)
    todo, skipped = plan(args.images, outdir)
    if skipped:
        _note(args, f"skipping {skipped} picture(s) already inverted in {outdir}")
    check_pictures(todo)
    if not todo:
        return 0
    G = _load(args, args.model, args.config).G
    for picture, out in todo:
        from tqdm import tqdm

        bar = tqdm(desc=picture.name, total=0, unit="step", disable=args.quiet, dynamic_ncols=True)

        def progress(stage: str, step: int, total: int, preview: object, bar: Any = bar) -> None:
            bar.set_postfix_str(stage, refresh=False)
            if step == 1:
                bar.total, bar.n = total, 0
            bar.update(step - bar.n)

        try:
            result, written = invert_one(G, picture, out, settings, args.yaw, args.pitch, progress)
        finally:
            bar.close()
        for path in written:
            print(f"wrote {path} (yaw {result.yaw:.1f}, pitch {result.pitch:.1f}, PSNR {result.psnr:.2f} dB)")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Parser


def _common(device: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    if device:
        p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    return p


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--network", dest="model", metavar="PATH", default=None,
                   help="official .pkl, MMagic .pth or saved model folder (default: the bundled demo model)")
    p.add_argument("--config", metavar="PRESET|FILE", default=None,
                   help="renderer settings for an MMagic .pth: a preset name, our .json config or an MMagic .py config")


def _render_args(p: argparse.ArgumentParser, sample_mult: int = 1) -> None:
    p.add_argument("--nrr", type=_nrr, default=None, metavar="N",
                   help="neural rendering resolution, {} to {} (default: the model's)".format(*NEURAL_RENDERING_RESOLUTION))
    p.add_argument("--sample-mult", type=_int_in(*SAMPLE_MULT), default=sample_mult, metavar="K",
                   help=f"multiply the depth samples per ray by K, up to {SAMPLE_MULT[1]} (default {sample_mult})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help=REDUCED_HELP)
    p.add_argument("--sr-precision", choices=PRECISIONS, default=None,
                   help="the super-resolution's precision (default: --precision's); fp32 with --precision reduced "
                        "avoids the slight blur of fp16 super-resolution")


_nrr = _int_in(*NEURAL_RENDERING_RESOLUTION)


def _truncation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trunc", type=_number(TRUNCATION_PSI), default=1.0, metavar="PSI",
                   help="truncation psi in [{:g}, {:g}] (default 1: none)".format(*TRUNCATION_PSI))
    p.add_argument("--trunc-cutoff", type=_int_in(*CUTOFF), default=None, metavar="N",
                   help="truncate the first N ws (default: all; 0: none)")


def _latent_args(p: argparse.ArgumentParser, default_seeds: str) -> None:
    """--seeds or --latent (a ws file), and the seeds' truncation."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=_seeds, default=_seeds(default_seeds),
                       help=f"e.g. 0,1,4-6 (default {default_seeds})")
    which.add_argument("--latent", metavar="NPZ", default=None,
                       help="render the latent in this .npz file (an array ws [1, num_ws, w_dim], float32) instead "
                       "of seeds; without --model, with the pivotal-tuned model X/ that eg3d invert --pti saved beside "
                       "X.npz when there is one")
    _truncation_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eg3d", description="EG3D tools: MMagic demo, samples, videos, meshes, "
                                     "checkpoint and label conversion, FID.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    common_nodevice = _common(device=False)

    p = sub.add_parser("demo", parents=[common], help="MMagic's EG3D demo: interpolation videos and frames",
                       description="MMagic's mmagic_inference_demo.py for EG3D: renders num-images frames of "
                       "num-batches latents and writes {depth,fake_img,combine}_seed{S}.mp4 and per-frame PNGs. "
                       "'conditioning' interpolates the conditioning camera (MMagic's code renders a static video).")
    p.add_argument("--model-name", default="eg3d", help="only eg3d")
    p.add_argument("--model-config", metavar="PRESET|FILE", default=None,
                   help="preset, our .json config or an MMagic .py config (its camera drives the orbit)")
    p.add_argument("--model-ckpt", metavar="PATH", default=None, help="any supported checkpoint (default: demo model)")
    p.add_argument("--result-out-dir", default="eg3d_output", metavar="DIR", help="output folder (default eg3d_output)")
    p.add_argument("--seed", type=_seed, default=2022, help="random seed (default 2022)")
    p.add_argument("--interpolation", choices=("both", "camera", "conditioning"), default="both")
    p.add_argument("--num-images", type=_frames, default=100, metavar="N", help="frames (default 100)")
    p.add_argument("--num-batches", type=_batch, default=None, metavar="B",
                   help=f"latents per frame, up to {BATCH[1]} (default 4)")
    p.add_argument("--sample-model", choices=("ema", "orig"), default="ema",
                   help="accepted for compatibility; a checkpoint here holds one generator")
    p.add_argument("--vis-mode", type=str.lower, choices=("both", "depth", "img"), default="both")
    p.add_argument("--save-img", type=_bool, default=True, metavar="BOOL")
    p.add_argument("--save-video", type=_bool, default=True, metavar="BOOL")
    p.add_argument("--img-suffix", default=".png")
    p.add_argument("--video-suffix", default=".mp4")
    p.add_argument("--extra-parameters", nargs="+", metavar="KEY=VALUE", help="num_batches=B, sample_model=orig")
    p.add_argument("--latents", choices=("mmagic", "seed"), default="mmagic",
                   help="mmagic: z after MMagic's camera draws (same z as MMagic); seed: z drawn first")
    _render_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("samples", parents=[common], help="images of seeds from several views (gen_samples)",
                       description="One PNG per seed (seedNNNN.png), or for the --latent file (X.npz -> X.png): one "
                       "row per pitch, one column per yaw offset.")
    _model_args(p)
    _latent_args(p, DEFAULT_SEEDS)
    p.add_argument("--yaws", type=_numbers(YAW), default=[0.4, 0.0, -0.4], metavar="LIST",
                   help="yaw offsets from frontal, radians in [-pi, pi] (default 0.4,0,-0.4); a list starting with a "
                   "minus needs '=': --yaws=-0.4,0,0.4")
    p.add_argument("--pitches", type=_numbers(PITCH), default=[-0.2], metavar="LIST",
                   help="pitch offsets, radians in [{:.4g}, {:.4g}]; negative looks from above (default -0.2; "
                   "--pitches=-0.2,0.2)".format(*PITCH))
    p.add_argument("--focal", type=_focal, default=None, help=FOCAL_HELP)
    p.add_argument("--image-mode", choices=("image", "image_raw", "image_depth"), default="image")
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                   help="backbone noise (gen_samples uses random; default const: reproducible)")
    p.add_argument("--shapes", action="store_true", help="also write a shape per seed")
    p.add_argument("--shape-res", type=_mesh_resolution, default=512, metavar="N",
                   help="shape grid resolution, {} to {} (default 512)".format(*MESH_RESOLUTION))
    p.add_argument("--shape-format", choices=("mrc", "npy", "ply", "obj", "glb"), default="mrc",
                   help="mrc/npy: gen_samples' density volume; ply/obj/glb: a mesh in world units (default mrc)")
    p.add_argument("--level", type=_number(LEVEL), default=10.0, help="iso level of meshes (raw density; default 10)")
    p.add_argument("--no-colors", action="store_true", help="meshes without vertex colours")
    p.add_argument("--outdir", required=True, metavar="DIR")
    _render_args(p)
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("video", parents=[common], help="latent interpolation / orbit videos (gen_videos)",
                       description="gen_videos: a WxH grid of seeds, each cell interpolating its keyframes (cubic, "
                       "looping) along the orbit camera -> DIR/interpolation.mp4; --no-interpolate writes one orbit "
                       "video per seed (DIR/SEED.mp4); --latent X.npz one orbit video of that latent (DIR/X.mp4).")
    _model_args(p)
    _latent_args(p, DEFAULT_SEEDS)
    p.add_argument("--shuffle-seed", type=_seed, default=None, help="shuffle the keyframe seeds with this seed")
    p.add_argument("--grid", type=_grid, default=(1, 1), metavar="WxH", help="grid of cells (default 1x1)")
    p.add_argument("--num-keyframes", type=_frames, default=None,
                   help="keyframes per cell (default: number of seeds / cells)")
    p.add_argument("--w-frames", type=_frames, default=120, metavar="N", help="frames per keyframe (default 120)")
    p.add_argument("--image-mode", choices=("image", "image_raw", "image_depth"), default="image")
    p.add_argument("--interpolate", action=argparse.BooleanOptionalAction, default=True,
                   help="one interpolation video (default) or one orbit video per seed")
    p.add_argument("--focal", type=_focal, default=None, help=FOCAL_HELP)
    p.add_argument("--fps", type=_int_in(*FPS), default=None,
                   help="frames per second, {} to {} (default 60; with --path the path's own)".format(*FPS))
    p.add_argument("--path", metavar="JSON", default=None,
                   help="render this camera path (eg3d path / the viewer's keyframes) to DIR/<stem>.mp4; keyframes "
                   "without a latent show --latent, else the first of --seeds")
    p.add_argument("--bitrate", type=_bitrate, default="10M", help="video bitrate like 10M or 800k (default 10M)")
    p.add_argument("--outdir", required=True, metavar="DIR")
    _render_args(p, sample_mult=2)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("mesh", parents=[common], help="meshes / density volumes of seeds",
                       description="Iso-surface of the raw density (level 10 like the original) over the model's box, "
                       "in world units, with vertex colours -> DIR/seedNNNN.{ply,obj,glb} (DIR/X.ply for --latent "
                       "X.npz); --volume also writes the "
                       "density grid as gen_samples does (x flipped, borders -1000).")
    _model_args(p)
    _latent_args(p, "0")
    p.add_argument("--resolution", type=_mesh_resolution, default=256, metavar="N",
                   help="grid points per axis, {} to {} (default 256)".format(*MESH_RESOLUTION))
    p.add_argument("--format", choices=("ply", "obj", "glb", "none"), default="ply")
    p.add_argument("--level", type=_number(LEVEL), default=10.0, help="iso level on the raw density (default 10)")
    p.add_argument("--no-colors", action="store_true", help="no vertex colours")
    p.add_argument("--dense", action="store_true", help="evaluate the full grid (default: coarse-to-fine, same mesh)")
    p.add_argument("--volume", choices=("npy", "mrc"), default=None, help="also write the density volume")
    p.add_argument("--largest-component", action="store_true", help="drop floaters: keep the largest piece")
    p.add_argument("--smooth", type=_int_in(*SMOOTH), default=0, metavar="N",
                   help=f"Taubin smoothing iterations, up to {SMOOTH[1]} (default 0)")
    p.add_argument("--camera", action="store_true",
                   help="also write DIR/<stem>.camera.json: the view's camera in OpenCV, OpenGL and Blender "
                   "conventions, in the mesh's coordinates (README: Interop)")
    p.add_argument("--yaw", type=_number(YAW), default=None, metavar="RAD",
                   help="the --camera view's yaw offset, radians (default: the model's opening view)")
    p.add_argument("--pitch", type=_number(PITCH), default=None, metavar="RAD",
                   help="the --camera view's pitch offset, radians; negative looks from above")
    p.add_argument("--outdir", required=True, metavar="DIR")
    p.set_defaults(func=cmd_mesh)

    p = sub.add_parser("path", parents=[common], help="camera paths: make one, our JSON <-> nerfstudio camera_path.json",
                       description="Reads a camera path (--in, ours; --from-nerfstudio) or makes one (a keyframe per "
                       "--yaw/--pitch pair, default the model's opening view) and writes it as our JSON (--out, for "
                       "eg3d video --path and the viewer) and/or nerfstudio's camera_path.json (--to-nerfstudio: "
                       "OpenGL camera-to-world matrices in the model's world, vertical FOV). The model (default: the "
                       "demo model) gives the radius, pivot and FOV.")
    _model_args(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--in", dest="input", metavar="JSON", default=None, help="our camera path JSON")
    source.add_argument("--from-nerfstudio", metavar="JSON", default=None, help="a nerfstudio camera_path.json")
    p.add_argument("--yaw", type=_numbers(YAW, MAX_PATH_KEYFRAMES), default=None, metavar="LIST",
                   help="new path: keyframe yaw offsets, radians (e.g. --yaw=0.8,0,-0.8)")
    p.add_argument("--pitch", type=_numbers(PITCH, MAX_PATH_KEYFRAMES), default=None, metavar="LIST",
                   help="new path: pitch offsets, radians, one for all or one per keyframe; negative looks from above")
    p.add_argument("--fov", type=_number(PATH_FOV), default=None, metavar="DEG",
                   help="new path: FOV in the viewer's degrees (default: the model's)")
    p.add_argument("--radius", type=_number(PATH_RADIUS), default=None, metavar="R",
                   help="new path: camera distance (default: the model's)")
    p.add_argument("--seeds", type=_seeds, default=None,
                   help="new path: a seed per keyframe (or one for all) with --trunc; default: none, the keyframes "
                   "show whatever latent the video or viewer shows")
    _truncation_args(p)
    p.add_argument("--duration", type=_number(PATH_DURATION), default=None, metavar="S",
                   help="new path: seconds from each keyframe to the next (default 2)")
    p.add_argument("--fps", type=_int_in(*FPS), default=None, help="frames per second (default 30, or the file's)")
    p.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None,
                   help="return to the first keyframe (default: no, or the file's)")
    p.add_argument("--constant-speed", action=argparse.BooleanOptionalAction, default=None,
                   help="move the camera at constant speed (default: no, or the file's)")
    p.add_argument("--out", metavar="JSON", default=None, help="write our camera path JSON here")
    p.add_argument("--to-nerfstudio", metavar="JSON", default=None, help="write nerfstudio's camera_path.json here")
    p.add_argument("--resolution", type=_int_in(1, 16384), default=None, metavar="N",
                   help="render size written to nerfstudio's file (default: the model's image size)")
    p.add_argument("--max-deviation", type=_number((-1.0, 180.0)), default=5.0, metavar="DEG",
                   help="--from-nerfstudio: refuse cameras looking further than this from the model's pivot "
                   "(default 5; -1: accept any, keeping positions)")
    p.add_argument("--nerfstudio-frames", action="store_true",
                   help="--from-nerfstudio: take every camera_path frame as a keyframe (the frames nerfstudio renders) "
                   "instead of its keyframes (editable, interpolated by our spline)")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("convert", parents=[common_nodevice], help="convert checkpoints (pkl/pth -> ours, any -> pth)",
                       description="Official .pkl, MMagic .pth or our folder -> our format (a folder) or an MMagic .pth. "
                       "Prints a summary of the model.")
    p.add_argument("--in", dest="src", required=True, metavar="PATH", help="checkpoint to read ('demo' for the demo model)")
    p.add_argument("--out", dest="dst", required=True, metavar="PATH", help="folder (ours) or .pth file (MMagic)")
    p.add_argument("--to", choices=("native", "mmagic"), default=None, help="default: mmagic for a .pth, else native")
    p.add_argument("--config", metavar="PRESET|FILE", default=None, help="renderer settings for an MMagic .pth input")
    p.set_defaults(func=cmd_convert, device="cpu")

    p = sub.add_parser("dataset", parents=[common_nodevice], help="convert camera-label files (official <-> MMagic)",
                       description="dataset.json {\"labels\": [[name, [25 numbers]], ...]} -> MMagic's {name: [25 "
                       "numbers]} (and back). Every entry is validated; nothing is written if one is bad.")
    p.add_argument("--in-anno", required=True, metavar="JSON")
    p.add_argument("--out-anno", required=True, metavar="JSON")
    p.add_argument("--to", choices=("mmagic", "official"), default=None,
                   help="output layout (default: the other one)")
    p.set_defaults(func=cmd_dataset, device="cpu")

    p = sub.add_parser("fid", parents=[common], help="FID50k / FID50k-Camera against real images (torchrun-ready)",
                       description="Frechet Inception Distance of a generator against a dataset (folder or zip with "
                       "dataset.json) or precomputed statistics (.npz). Sample i uses seed SEED+i. Spread it over "
                       "processes with: torchrun --standalone --nproc-per-node N -m eg3d_core fid ... (same number for any N at "
                       "the same --batch-size and --threads). A killed run resumes from its shards (--run-dir).")
    _model_args(p)
    p.add_argument("--data", required=True, metavar="PATH", help="real images: dataset folder/zip, or statistics .npz")
    p.add_argument("--labels", metavar="JSON", default=None,
                   help="camera labels (dataset.json) for --camera dataset when --data has none (e.g. an .npz)")
    p.add_argument("--inception", metavar="PATH", default=None,
                   help="NVIDIA's TorchScript inception-2015-12-05.pt (default: $EG3D_INCEPTION)")
    p.add_argument("--num-samples", type=_int_in(*FID_SAMPLES), default=50000, metavar="N",
                   help="generated images, {} to {} (default 50000)".format(*FID_SAMPLES))
    p.add_argument("--camera", choices=("dataset", "random"), default="dataset",
                   help="dataset: cameras from the dataset labels (FID50k); random: from the model's camera "
                   "distribution (FID50k-Camera)")
    _truncation_args(p)
    p.add_argument("--seed", type=_seed, default=0, help="first seed (default 0)")
    p.add_argument("--batch-size", type=_batch, default=8, metavar="B", help="images per chunk (default 8)")
    p.add_argument("--threads", type=_int_in(*THREADS), default=1, metavar="T",
                   help="torch threads per process (default 1: run one process per core)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help=REDUCED_HELP)
    p.add_argument("--noise-mode", choices=NOISE_MODES, default="random",
                   help="backbone noise (default random, as the original metrics)")
    p.add_argument("--deterministic", action="store_true", help="no stratified ray jitter (default: jitter, as the original)")
    p.add_argument("--nrr", type=_nrr, default=None, metavar="N",
                   help="neural rendering resolution (default: the model's; other values do not give comparable FIDs)")
    p.add_argument("--out", default="fid.json", metavar="JSON", help="result file (default fid.json)")
    p.add_argument("--run-dir", default=None, metavar="DIR", help="shards for resuming (default: OUT.parts)")
    p.add_argument("--keep-shards", action="store_true", help="keep the shards after success")
    p.add_argument("--cache-dir", default="default", metavar="DIR",
                   help="where real-image statistics are cached (default: the toolkit cache, $EG3D_CACHE_DIR or "
                   "~/.cache/eg3d_toolkit, then fid/)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached real statistics")
    p.set_defaults(func=cmd_fid)

    p = sub.add_parser("invert", parents=[common], help="pictures -> latents (+ camera), optionally pivotal tuning",
                       description="Finds the camera and a latent ws of each picture (any size; RGBA is composited on "
                       "the model's background, grey becomes RGB) and writes DIR/<stem>.npz (ws [1, num_ws, w_dim], c "
                       "[1, 25], yaw/pitch offsets in degrees, losses, timings) for --latent of video / mesh / samples; "
                       "--pti also writes the tuned generator as DIR/<stem>/ (--latent DIR/<stem>.npz uses it unless "
                       "--model is given). A rerun skips pictures whose .npz exists; under torchrun each process takes "
                       "its share (RANK, WORLD_SIZE).")
    _model_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="pictures (png, jpg, ...)")
    p.add_argument("--yaw", type=float, default=None, metavar="DEG",
                   help="the pictures' camera yaw, degrees from frontal (with --pitch; default: estimated)")
    p.add_argument("--pitch", type=float, default=None, metavar="DEG",
                   help="the pictures' camera pitch, degrees from frontal; negative looks from above")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="refinement steps of w and camera (default 140)")
    p.add_argument("--pti", action="store_true", help="also fine-tune a copy of the generator around the latent")
    p.add_argument("--pti-steps", type=int, default=100, metavar="N", help="pivotal tuning steps (default 100)")
    p.add_argument("--perceptual", metavar="PT", default=None,
                   help="a local TorchScript perceptual distance (two images in [-1, 1] -> distance per image)")
    p.add_argument("--outdir", required=True, metavar="DIR")
    p.set_defaults(func=cmd_invert)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every ``finally`` runs: temporary
    outputs are removed and ffmpeg is stopped instead of both being left behind."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break off the cleanup
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()
    func: Callable[[argparse.Namespace], int] = args.func
    args.created_dirs = []
    rc = None
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.device = _device(args.device)
        rc = func(args)
        return rc
    except (EG3DError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        terminated = isinstance(e, _Terminated)
        print(f"error: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if rc != 0:
            _remove_empty(args.created_dirs)


if __name__ == "__main__":
    sys.exit(main())
