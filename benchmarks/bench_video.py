"""Video frame rate: camera-only orbit (tri-planes computed once) vs latent interpolation (backbone every frame).

Uses the bundled demo model, or the tiny cars fixture while the demo model is not built. Both videos have the
same number of frames, camera path and renderer settings; only whether the latents change per frame differs.
Frame generation is timed on its own, then the libx264 encoding of the rendered frames.

``--preset NAME`` times a randomly initialised model of a released architecture instead (speed does not depend
on the weights).

Usage:  python benchmarks/bench_video.py [--model PATH | --preset NAME] [--frames 24] [--threads 2] [--nrr N]
                                         [--sample-mult K]
Prints a markdown table; nothing is kept on disk.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are slow on a shared CPU

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

# Runnable as a plain script from anywhere without installing the package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from eg3d_core.apps.convert import load_model  # noqa: E402
from eg3d_core.apps.video import keyframe_latents, latent_interpolation_frames, orbit_frames, write_video  # noqa: E402
from eg3d_core.checkpoints import DEMO_MODEL  # noqa: E402
from eg3d_core.generator import Generator  # noqa: E402
from eg3d_core.presets import PRESETS  # noqa: E402
from eg3d_core.settings import RenderSettings  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "tiny_cars128" / "network-snapshot.pkl"


def timed(frames) -> tuple[list, float]:
    start = time.perf_counter()
    out = list(frames)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: demo model, else the tiny cars fixture)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="random weights, released architecture")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nrr", type=int, default=None, help="neural rendering resolution (default: the model's)")
    parser.add_argument("--sample-mult", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.preset:
        torch.manual_seed(0)
        G, name = Generator(PRESETS[args.preset]).to(args.device), f"{args.preset} (random weights)"
    else:
        source = args.model or ("demo" if (DEMO_MODEL / "model.safetensors").is_file() else str(FIXTURE))
        G = load_model(source, device=args.device).G
        name = "demo" if source == "demo" else Path(source).name
    settings = RenderSettings(neural_rendering_resolution=args.nrr, sample_mult=args.sample_mult)
    r = G.config.rendering
    nrr = args.nrr or r.neural_rendering_resolution
    keyframes = 3
    w_frames = max(1, args.frames // keyframes)
    n = keyframes * w_frames
    latents = keyframe_latents(G, list(range(keyframes)), device=args.device)

    # Warm-up (first-call allocations, thread pools) outside the timings.
    list(orbit_frames(G, latents.ws[0, 0, :1], 1, settings=settings))

    orbit, t_orbit = timed(orbit_frames(G, latents.ws[0, 0, :1], n, settings=settings))
    _, t_interp = timed(latent_interpolation_frames(G, latents, w_frames, settings=settings))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_video(orbit, Path(tmp) / "v.mp4")
        t_encode = time.perf_counter() - start

    setting = (f"{G.img_resolution}px, render {nrr}px, {r.depth_resolution * args.sample_mult}+"
               f"{r.depth_resolution_importance * args.sample_mult} samples")
    print(f"model: {name} ({setting}); {n} frames; {args.threads} threads; device {args.device}; torch "
          f"{torch.__version__}\n")
    print("| video | frames | s/frame | frames/s |")
    print("|---|---:|---:|---:|")
    for label, seconds in (("camera-only orbit (tri-planes cached)", t_orbit),
                           ("latent interpolation (backbone every frame)", t_interp),
                           ("libx264 encoding only (imageio-ffmpeg)", t_encode)):
        print(f"| {label} | {n} | {seconds / n:.3f} | {n / seconds:.2f} |")


if __name__ == "__main__":
    main()
