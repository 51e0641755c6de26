"""Frame times of two git revisions of this project, measured alternately on the same machine.

On a shared VM whole-frame times drift by 10-20 % over minutes, more than most single optimisations gain; runs of two
revisions taken at different times do not compare. This script checks the base revision out into a temporary git
worktree and times it and the working tree in alternating subprocesses (``--rounds`` each), so that both see the same
load. Each subprocess builds the preset's full-size architecture (random weights, seed 0), warms up, and reports the
best of ``--repeats`` calls for a full frame, a cached-planes frame and the backbone.

    python benchmarks/bench_revisions.py BASE_REV [--presets ffhq512-128 shapenetcars128-64] [--rounds 4]
        [--precision fp32|reduced]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("full", "cached", "backbone")

# Run in a subprocess with the revision's root first on sys.path; prints one JSON line.
CHILD = """
import json, os, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import eg3d_core
from eg3d_core import PRESETS, Generator, cameras
from eg3d_core import runtime
if hasattr(runtime, "reuse_freed_memory"):
    runtime.reuse_freed_memory()
preset, repeats, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
G = Generator(PRESETS[preset]).eval()
d = cameras.camera_defaults(G.config)
c = cameras.camera(d, yaw=0.3, pitch=-0.1)
out = {"where": eg3d_core.__file__}
with torch.no_grad():
    ws = G.mapping(torch.randn(1, G.z_dim), cameras.conditioning(d))
    kw = {} if precision == "fp32" else {"precision": precision}
    planes = G.planes(ws, **kw)
    for name, fn in (("full", lambda: G.synthesis(ws, c, **kw)), ("cached", lambda: G.render_planes(planes, ws, c, **kw)),
                     ("backbone", lambda: G.planes(ws, **kw))):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = min(times)
print(json.dumps(out))
"""


def run(root: Path, preset: str, repeats: int, precision: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-c", CHILD, preset, str(repeats), precision], cwd=root, env=env, check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result.pop("where").startswith(str(root)):
        raise SystemExit(f"the revision in {root} did not import its own eg3d_core")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="git revision to compare the working tree with")
    p.add_argument("--presets", nargs="+", default=["ffhq512-128", "shapenetcars128-64"])
    p.add_argument("--rounds", type=int, default=4, help="alternating runs of each revision per preset")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per stage in each run (best is kept)")
    p.add_argument("--precision", choices=("fp32", "reduced"), default="fp32")
    args = p.parse_args()
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="eg3d-base-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            print(f"Median over {args.rounds} alternating runs of each revision (each the best of {args.repeats} "
                  f"calls per stage, precision {args.precision}): base {base} against the working tree.\n")
            print("| preset | stage | base | working tree | speed-up |\n|---|---|---:|---:|---:|")
            for preset in args.presets:
                times: dict[str, list[dict]] = {"base": [], "work": []}
                for _ in range(args.rounds):
                    times["base"].append(run(tree, preset, args.repeats, args.precision))
                    times["work"].append(run(ROOT, preset, args.repeats, args.precision))
                for stage in STAGES:
                    b = statistics.median(r[stage] for r in times["base"])
                    w = statistics.median(r[stage] for r in times["work"])
                    print(f"| {preset} | {stage} | {b:.3f} s | {w:.3f} s | {b / w:.2f}x |", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
