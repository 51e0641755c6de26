"""Held-out evaluation of ``eg3d_core.inversion`` on the procedural toy cars (issue 17).

    python benchmarks/bench_inversion.py [--cars 12] [--threads 1] [--pti-steps 0] [--ablation] [--json out.json]
    python benchmarks/bench_inversion.py --speed [--model ffhq512-128] [--backends ref,grad] [--repeats 5]

Car i is seed 200000 + i (``visualize.seed_to_z``, as ``scripts/evaluate_demo_model.py`` draws its 100000 + i; the
demo model's training never drew either), its ground truth ``toycars.render(params_from_latent(z))``. One picture per
car, at 128 px from a random camera: yaw offset uniform in +-100 deg of frontal, pitch (the sampler's v) uniform in
``toycars.PITCH_RANGE``. Novel views: the same pitch, yaw +-40 and +-80 deg from the picture's camera (for a method,
from the camera it estimated, so an error in the camera counts).

Rows:

* ``ceiling``: the demo model rendering the car's true latent (``G.mapping(z, frontal conditioning)``) at the true
  cameras: what a perfect inversion into this model could reach.
* ``floor``: the average w at the frontal camera (no inversion).
* ``inversion`` (and the ablations / PTI): ``invert`` with the settings named.

Metrics: PSNR / SSIM of the final image against the ground truth (input view; mean over the 4 novel views), the
camera error (angle between the estimated and the true camera position seen from the car, degrees), depth MAE on car
pixels (ground-truth coverage > 0.999 at the neural rendering resolution; input view and novel views), seconds per
picture.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core import PRESETS, Generator, cameras  # noqa: E402
from eg3d_core.checkpoints import load_generator  # noqa: E402
from eg3d_core.inversion import (  # noqa: E402
    InversionSettings,
    camera_from_offsets,
    full_circle,
    invert,
    pivotal_tuning,
    psnr,
    ssim,
    w_statistics,
)
from eg3d_core.kernels import dispatch  # noqa: E402
from eg3d_core.training import toycars as tc  # noqa: E402
from eg3d_core.visualize import seed_to_z  # noqa: E402

FIRST_SEED = 200_000
NOVEL = (-80.0, -40.0, 40.0, 80.0)
VARIANTS = {
    "inversion": {},
    "no prior": {"prior_weight": 0.0},
    "no silhouette/opacity": {"silhouette_weight": 0.0, "opacity_weight": 0.0},
    "no regularisers": {"prior_weight": 0.0, "silhouette_weight": 0.0, "opacity_weight": 0.0},
}


def held_out(n: int, z_dim: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """z [n, z_dim], yaw and pitch offsets (radians) [n] of the pictures."""
    z = seed_to_z(list(range(FIRST_SEED, FIRST_SEED + n)), z_dim)
    rs = np.random.RandomState(FIRST_SEED)
    yaw = np.radians(rs.uniform(-100.0, 100.0, n))
    pitch = rs.uniform(*tc.PITCH_RANGE, n) - cameras.FRONTAL
    return z, yaw, pitch


def views(defaults: cameras.CameraDefaults, yaw: float, pitch: float) -> torch.Tensor:
    """The input camera then the novel ones: [1 + len(NOVEL), 25]."""
    yaws = [yaw] + [yaw + math.radians(d) for d in NOVEL]
    return cameras.camera(defaults, yaws, [pitch] * len(yaws))


def angle_between(c1: torch.Tensor, c2: torch.Tensor) -> float:
    """Degrees between two cameras' positions seen from the origin."""
    a, b = c1[0, [3, 7, 11]].double(), c2[0, [3, 7, 11]].double()
    cos = float((a @ b) / (a.norm() * b.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


@torch.no_grad()
def score(G, ws: torch.Tensor, cams: torch.Tensor, truth: dict[str, torch.Tensor]) -> dict[str, float]:  # noqa: ANN001
    out = G.synthesis(ws.expand(len(cams), -1, -1), cams)
    p, s = psnr(out["image"], truth["image"]), ssim(out["image"], truth["image"])
    hit = truth["mask"] > 0.999
    err = (out["image_depth"] - truth["depth"]).abs()
    depth = [float(err[i][hit[i]].mean()) if bool(hit[i].any()) else float("nan") for i in range(len(cams))]
    return {"psnr_input": float(p[0]), "ssim_input": float(s[0]), "psnr_novel": float(p[1:].mean()),
            "ssim_novel": float(s[1:].mean()), "depth_input": depth[0], "depth_novel": float(np.nanmean(depth[1:]))}


def run(G, n: int, variants: dict[str, InversionSettings], log=print) -> dict[str, dict[str, float]]:  # noqa: ANN001
    defaults = cameras.camera_defaults(G.config)
    r = G.config.rendering
    z, yaws, pitches = held_out(n, G.z_dim)
    cond = cameras.conditioning(defaults)
    w_mean = w_statistics(G).mean[None, None].expand(1, G.num_ws, -1)
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in ("ceiling", "floor", *variants)}
    for i in range(n):
        params = tc.params_from_latent(z[i:i + 1])
        true_cams = views(defaults, yaws[i], pitches[i])
        gt = tc.render(params.expand(len(true_cams), -1), true_cams, G.img_resolution)
        gt_raw = tc.render(params.expand(len(true_cams), -1), true_cams, r.neural_rendering_resolution)
        truth = {"image": gt["image"], "depth": gt_raw["depth"], "mask": gt_raw["mask"]}
        with torch.no_grad():
            ws_true = G.mapping(z[i:i + 1], cond)
        rows["ceiling"].append({**score(G, ws_true, true_cams, truth), "camera_error": 0.0, "seconds": 0.0})
        floor_cams = views(defaults, 0.0, 0.0)
        rows["floor"].append({**score(G, w_mean, floor_cams, truth),
                              "camera_error": angle_between(floor_cams[:1], true_cams[:1]), "seconds": 0.0})
        picture = tc.to_uint8(gt["image"][:1])[0]
        base = None
        for name, settings in variants.items():
            t0 = time.perf_counter()
            if settings.pti_steps and base is not None:  # tune the first variant's inversion: its time + PTI's
                res = pivotal_tuning(G, picture, base, settings)
                seconds = time.perf_counter() - t0 + rows[next(iter(variants))][-1]["seconds"]
            else:
                res = invert(G, picture, settings)
                seconds = time.perf_counter() - t0
            base = base or res
            est = views(defaults, math.radians(res.yaw), math.radians(res.pitch))
            Gr = res.generator or G
            rows[name].append({**score(Gr, res.ws, est, truth), "camera_error": angle_between(est[:1], true_cams[:1]),
                               "seconds": seconds})
            log(f"car {i} {name}: true yaw/pitch {math.degrees(yaws[i]):.1f}/{math.degrees(pitches[i]):.1f}, "
                f"found {res.yaw:.1f}/{res.pitch:.1f}, " + ", ".join(f"{k} {v:.3f}" for k, v in rows[name][-1].items()))
    out: dict[str, dict[str, float]] = {}
    for name, rs in rows.items():
        keys = rs[0].keys()
        out[name] = {k: float(np.nanmean([r[k] for r in rs])) for k in keys}
        errors = [r["camera_error"] for r in rs]
        out[name]["camera_error_median"] = float(np.median(errors))
        out[name]["camera_error_max"] = float(np.max(errors))
    return out


def _one_step(G, inv, res: int, n1: int, n2: int, sr: bool, backend: str) -> float:  # noqa: ANN001
    """Seconds of one gradient step as ``_Inverter.refine`` takes it (forward + loss + backward to w and the camera)."""
    u = torch.zeros(1, G.w_dim, requires_grad=True)
    angles = torch.zeros(2, requires_grad=True)
    t0 = time.perf_counter()
    with dispatch.use(backend):
        ws = inv.ws_of(u)
        c = camera_from_offsets(inv.defaults, angles[:1], angles[1:])
        feats, _, opacity = inv.render_raw(G, ws, c, res, n1, n2)
        image = G.super_resolve(feats, ws) if sr else feats[:, :3]
        loss = inv.image_loss(image, feats[:, :3] if sr else None, opacity) + 0.02 * u.square().mean()
    loss.backward()
    return time.perf_counter() - t0


def step_speed(G, repeats: int = 5, backends: tuple[str, ...] = ("grad",), issue_baseline: bool = False,  # noqa: ANN001
               slow: float = 10.0, slow_repeats: int = 2, log=print) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Median seconds of one gradient step (forward + backward to w and the camera) at the model's own rendering
    settings and at the inversion's fine and coarse stages, per backend (``"ref"``: the reference code, ``"grad"``:
    the gradient backend ``invert`` uses). The backends alternate within each repeat, so load drifts hit both; a
    first untimed step warms each setting up unless it takes over ``slow`` seconds, and then ``slow_repeats`` timed
    steps follow instead of ``repeats``. ``issue_baseline`` adds issue 17's baseline: the model's samples at neural
    rendering 64, through the super-resolution."""
    from eg3d_core.inversion import _Inverter

    s = InversionSettings()
    r = G.config.rendering
    inv = _Inverter(G, torch.zeros(1, 3, G.img_resolution, G.img_resolution), s, None, None)
    own = (r.neural_rendering_resolution, r.depth_resolution, r.depth_resolution_importance, True)
    fine = (r.neural_rendering_resolution, s.fine_samples, s.fine_samples, True)
    coarse = (s.coarse_resolution, s.coarse_samples, s.coarse_samples, False)
    configs = {f"model's own (nrr {own[0]}, {own[1]} + {own[2]} samples, SR)": own}
    if issue_baseline:
        configs[f"issue baseline (nrr 64, {own[1]} + {own[2]}, SR)"] = (64, own[1], own[2], True)
    configs[f"fine stage (nrr {fine[0]}, {fine[1]} + {fine[2]}, SR)"] = fine
    configs[f"coarse stage (nrr {coarse[0]}, {coarse[1]} + {coarse[2]}, raw only)"] = coarse
    out: dict[str, dict[str, float]] = {}
    for name, cfg in configs.items():
        times: dict[str, list[float]] = {b: [] for b in backends}
        first = {b: _one_step(G, inv, *cfg, b) for b in backends}
        n = repeats if max(first.values()) <= slow else slow_repeats
        if max(first.values()) > slow:  # too slow to spend a step on warming up: the first counts
            for b in backends:
                times[b].append(first[b])
            n -= 1
        for _ in range(n):
            for b in backends:
                times[b].append(_one_step(G, inv, *cfg, b))
        out[name] = {b: float(np.median(t)) for b, t in times.items()}
        log(f"{name}: " + ", ".join(f"{b} {[round(x, 2) for x in t]}" for b, t in times.items())
            + f" (load {os.getloadavg()[0]:.1f})")
    return out


def search_speed(G) -> float:  # noqa: ANN001
    """Seconds of the camera search's scoring pass (``_Inverter.camera_search``: every grid camera, each
    ``search_latents`` latent, default backend, no gradients) with the default settings."""
    from eg3d_core.inversion import _Inverter

    inv = _Inverter(G, torch.zeros(1, 3, G.img_resolution, G.img_resolution), InversionSettings(), None, None)
    t0 = time.perf_counter()
    inv.camera_search()
    return time.perf_counter() - t0


def inversion_estimate(search: float, coarse: float, fine: float, full_circle: bool) -> float:
    """Seconds per picture of ``invert`` with the default settings (no previews, as ``eg3d invert``): the measured
    search, then the camera stage's steps (candidates, the front/back twin where the model's cameras go all the way
    round, finalists) and the coarse steps at the coarse stage's step time, and the fine steps at the fine stage's
    (the mapping samples for W's statistics and the final render add about a second)."""
    s = InversionSettings()
    return search + (s.camera_steps(full_circle) + s.coarse_steps) * coarse + s.fine_steps * fine


def table(results: dict[str, dict[str, float]]) -> str:
    head = ("| | PSNR input | SSIM input | PSNR novel | SSIM novel | camera error median / mean / max (deg) "
            "| depth MAE input / novel | s / picture |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['psnr_input']:.2f} | {m['ssim_input']:.3f} | {m['psnr_novel']:.2f} | "
                     f"{m['ssim_novel']:.3f} | {m['camera_error_median']:.1f} / {m['camera_error']:.1f} / "
                     f"{m['camera_error_max']:.1f} | {m['depth_input']:.3f} / {m['depth_novel']:.3f} | "
                     f"{m['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="a checkpoint, 'demo', or a preset (e.g. ffhq512-128: random "
                    "weights, for speed)")
    ap.add_argument("--cars", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="refinement steps (default: InversionSettings')")
    ap.add_argument("--pti-steps", type=int, default=0, help="also run the inversion with this many PTI steps")
    ap.add_argument("--ablation", action="store_true", help="also run without each regulariser")
    ap.add_argument("--variants", default=None, help="comma-separated ablation variants (default: all)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="InversionSettings fields for every variant, e.g. lr_pti=0.001 w_plus_steps=40")
    ap.add_argument("--speed", action="store_true", help="only time one gradient step at each stage's settings")
    ap.add_argument("--backends", default="grad", help="with --speed: comma-separated backends, e.g. ref,grad")
    ap.add_argument("--repeats", type=int, default=5, help="with --speed: timed steps per setting (slow ones: 2)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model in PRESETS:  # the architecture with random weights (seeded), as bench_generator builds it
        torch.manual_seed(0)
        G = Generator(PRESETS[args.model]).eval()
    else:
        G = load_generator(args.model)
    if args.speed:
        backends = tuple(args.backends.split(","))
        speed = step_speed(G, repeats=args.repeats, backends=backends, issue_baseline=args.model in PRESETS)
        search = search_speed(G)
        names = list(speed)
        own = speed[names[0]][backends[0]]
        print(f"| settings | {' | '.join(backends)} | {' | '.join(f'{b} vs own ({backends[0]})' for b in backends)} |"
              + (f" {backends[-1]} vs {backends[0]} |" if len(backends) > 1 else ""))
        for name, t in speed.items():
            print(f"| {name} | {' | '.join(f'{t[b]:.2f} s' for b in backends)} | "
                  f"{' | '.join(f'{own / t[b]:.2f}x' for b in backends)} |"
                  + (f" {t[backends[0]] / t[backends[-1]]:.2f}x |" if len(backends) > 1 else ""))
        coarse, fine = speed[names[-1]], speed[names[-2]]
        estimate = {b: inversion_estimate(search, coarse[b], fine[b], full_circle(G)) for b in backends}
        print(f"camera search (default backend): {search:.1f} s; estimated s / picture: "
              + ", ".join(f"{b} {v:.0f}" for b, v in estimate.items()))
        print(f"load average {os.getloadavg()}")
        report = {"speed": speed, "search": search, "estimate": estimate, "load_average": os.getloadavg()}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        return report
    fields = {f.name: f.type for f in dataclasses.fields(InversionSettings)}
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            ap.error(f"unknown setting {name!r}")
        if value.lower() in ("true", "false"):
            overrides[name] = value.lower() == "true"
        else:
            overrides[name] = float(value) if "." in value or "e" in value else int(value)
    base = InversionSettings(preview_every=0, **overrides)
    if args.steps:
        base = base.with_steps(args.steps)
    variants = {"inversion": base}
    if args.ablation:
        names = args.variants.split(",") if args.variants else [k for k, v in VARIANTS.items() if v]
        variants.update({k: replace(base, **VARIANTS[k]) for k in names})
    if args.pti_steps:
        variants[f"inversion + PTI {args.pti_steps}"] = replace(base, pti_steps=args.pti_steps)
    t0 = time.perf_counter()
    results = run(G, args.cars, variants)
    report = {"cars": args.cars, "settings": overrides, "first_seed": FIRST_SEED, "threads": args.threads, "results": results,
              "wall_seconds": time.perf_counter() - t0, "load_average": os.getloadavg()}
    print(table(results))
    print(f"load average {os.getloadavg()}, wall {report['wall_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
