"""Frame times of the viewer's render path (``viewer.renderer``; no GL): previews from cached tri-planes while the
camera moves, the full-quality frame at rest, and a latent change (mapping + backbone).

    python benchmarks/bench_viewer.py                     # FFHQ-512 architecture (random weights) + demo model
    python benchmarks/bench_viewer.py --models demo --repeats 10

Prints a markdown table (median over the repeats; the camera moves between repeats as in a drag). The "auto" rows
run the viewer's adaptive preview resolution for a few frames and report where it settles for the target FPS.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are 3-6x slower on a shared CPU

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eg3d_core  # noqa: E402
from eg3d_core.runtime import reuse_freed_memory  # noqa: E402
from eg3d_core.settings import RenderSettings  # noqa: E402
from eg3d_viewer import actions  # noqa: E402
from eg3d_viewer.model_info import ModelInfo  # noqa: E402
from eg3d_viewer.renderer import ViewerRenderer  # noqa: E402
from eg3d_viewer.requests import Quality, RenderRequest, Scene, adapt_resolution, full_quality, scene_of  # noqa: E402
from eg3d_viewer.state import AppState  # noqa: E402

DEMO = ROOT / "assets" / "demo" / "model.safetensors"
TINY = ROOT / "tests" / "fixtures" / "tiny_cars128" / "network-snapshot.pkl"


def load(name: str) -> tuple[str, eg3d_core.Generator]:
    """``ffhq`` (random weights), ``demo`` (the bundled model, else the tiny fixture) or a checkpoint path."""
    if name == "ffhq":
        torch.manual_seed(0)
        return "FFHQ-512 (random weights)", eg3d_core.Generator(eg3d_core.PRESETS["ffhq512-128"])
    if name != "demo":
        return name, eg3d_core.load_generator(name)
    if DEMO.is_file():
        return "demo model", eg3d_core.load_generator("demo")
    return "tiny cars fixture (demo model missing)", eg3d_core.load_generator(TINY)


def time_frames(R: ViewerRenderer, scene: Scene, quality: Quality, repeats: int) -> tuple[float, str]:
    """Median wall ms per frame (render + super-resolution + conversion) with the planes cached and the camera
    moving by a small step, and the stage split of the median frame."""
    out = []
    for i in range(repeats + 1):  # +1: the first call warms up allocations and fills the plane cache
        cam = replace(scene.camera, yaw=scene.camera.yaw + 0.01 * i)
        t0 = time.perf_counter()
        result = R.render(RenderRequest(replace(scene, camera=cam), quality, cancellable=False, serial=i))
        if i:
            out.append(((time.perf_counter() - t0) * 1e3, result.timings))
    ms, t = sorted(out, key=lambda x: x[0])[len(out) // 2]
    split = f"render {t['render']:.0f}" + (f" + SR {t['superres']:.0f}" if quality.settings.superres else "")
    return ms, split


def settle_auto(R: ViewerRenderer, scene: Scene, base: Quality, top: int, target_fps: float,
                frames: int) -> tuple[int, float]:
    """Run the viewer's adaptive preview resolution (up to ``top``) for ``frames`` frames, as the app does while the
    camera moves; returns (resolution reached, median ms of the last three frames)."""
    res, times = base.settings.neural_rendering_resolution, []
    for i in range(frames):
        q = replace(base, settings=replace(base.settings, neural_rendering_resolution=res))
        cam = replace(scene.camera, yaw=0.01 * i)
        t0 = time.perf_counter()
        R.render(RenderRequest(replace(scene, camera=cam), q, cancellable=False, serial=i))
        times.append((time.perf_counter() - t0) * 1e3)
        if i < frames - 3:  # the last three frames are timed at the final resolution
            res = adapt_resolution(res, times[-1], 1e3 / target_fps, lo=min(32, top), hi=top)
    return res, statistics.median(times[-3:])


def preview(resolution: int, samples: int, importance: int, plane_scale: int) -> Quality:
    """A fp32 preview without super-resolution."""
    return Quality(RenderSettings(neural_rendering_resolution=resolution, depth_resolution=samples,
                                  depth_resolution_importance=importance, superres=False), preview=True,
                   plane_scale=plane_scale)


def bench(name: str, repeats: int, full_repeats: int, target_fps: float) -> list[tuple[str, str, str, float]]:
    label, G = load(name)
    info = ModelInfo.of(G, label)
    state = AppState()
    actions.apply_model(state, info)
    R = ViewerRenderer(G)
    scene = scene_of(state, info)
    rows: list[tuple[str, str, str, float]] = []
    # Latent change: mapping + backbone (the plane cache is cleared for each repeat).
    times = []
    for i in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        R.latent(replace(scene.latent, seed=1000 + i))
        times.append((time.perf_counter() - t0) * 1e3)
    rows.append((label, "latent change", f"mapping + backbone ({info.num_ws} ws)", statistics.median(times)))
    r = state.render
    nrr, ds, di, k = info.neural_rendering_resolution, info.depth_resolution, info.depth_resolution_importance, \
        r.preview_plane_scale
    default = (r.preview_resolution, r.preview_samples, r.preview_importance, k)
    # The default preview, each of its savings undone in turn, and a cheaper one.
    previews = [default, (r.preview_resolution, r.preview_samples, r.preview_importance, 1),
                (r.preview_resolution, ds // 2, 0, k), (r.preview_resolution, r.preview_samples, min(8, di), k),
                (max(32, nrr // 4), r.preview_samples, 0, k)]
    with torch.no_grad():
        for res, s, imp, scale in dict.fromkeys(previews):
            q = preview(res, s, imp, scale)
            kind = "preview (default)" if (res, s, imp, scale) == default else "preview"
            planes = f", planes/{scale}" if scale > 1 else ", full planes"
            ms, split = time_frames(R, scene, q, repeats)
            rows.append((label, kind, f"{res}px, {s}+{imp} samples{planes}, no SR ({split})", ms))
        base = preview(*default)
        res, ms = settle_auto(R, scene, base, r.full_resolution, target_fps, frames=max(8, 2 * repeats))
        rows.append((label, f"preview (auto, target {target_fps:.0f} FPS)", f"settles at {res}px, "
                     f"{base.settings.depth_resolution}+{base.settings.depth_resolution_importance} samples", ms))
        full = full_quality(state.render).settings
        ms, split = time_frames(R, scene, full_quality(state.render), full_repeats)
        rows.append((label, "full (at rest)", f"{full.neural_rendering_resolution}px, {full.depth_resolution}+"
                     f"{full.depth_resolution_importance} samples + SR ({split})", ms))
    R.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["ffhq", "demo"],
                   help="ffhq (FFHQ-512 architecture, random weights), demo, or checkpoint paths")
    p.add_argument("--repeats", type=int, default=5, help="preview frames timed per setting")
    p.add_argument("--full-repeats", type=int, default=3, help="full-quality frames timed (median; slow for FFHQ on a CPU)")
    p.add_argument("--target-fps", type=float, default=20.0, help="target of the adaptive preview resolution")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = p.parse_args()
    reuse_freed_memory()  # as launch_viewer.py does
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.models:
        rows += bench(name, args.repeats, args.full_repeats, args.target_fps)
    print("\n| model | frame | settings | ms | FPS |\n|---|---|---|---:|---:|")
    for label, kind, settings, ms in rows:
        print(f"| {label} | {kind} | {settings} | {ms:.0f} | {1e3 / ms:.1f} |")


if __name__ == "__main__":
    main()
