"""The memory estimates of ``eg3d_core.budget`` against the peak resident size real runs add.

    python benchmarks/bench_budget.py [--runs 3]

Each case runs ``eg3d`` in a fresh process that reports its own high-water mark (VmHWM; the rusage of a child would
also count the pages it shared with its parent before exec) and compares the increment over a small run of the same
kind with the estimate. The increment varies from run to run (freed memory stays with the worker threads' malloc
arenas), so this is a benchmark, not a unit test; results go to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from eg3d_core import budget, load_generator
from eg3d_core.settings import RenderSettings

MEASURE = (
    "import sys\n"
    "from eg3d_core.apps.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
    "print('VmHWM', int(hwm.split()[1]) * 1024, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def peak_rss(argv: list[str], tmp: Path) -> int:
    """Peak resident bytes of ``eg3d argv`` in a fresh process."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    res = subprocess.run([sys.executable, "-c", MEASURE, *argv, "-q"], env=env, cwd=tmp, capture_output=True,
                         text=True, timeout=1200, check=True)
    return int(next(line for line in res.stderr.splitlines() if line.startswith("VmHWM")).split()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each large case")
    args = ap.parse_args()
    G = load_generator("demo")
    one_view = ["samples", "--seeds", "0", "--yaws", "0", "--pitches", "0"]
    mesh = ["mesh", "--seeds", "0", "--format", "none", "--volume", "npy"]
    cases = [
        ("render --nrr 256 --sample-mult 4", [*one_view, "--nrr", "16"], [*one_view, "--nrr", "256", "--sample-mult", "4"],
         budget.render_bytes(G.config, RenderSettings(neural_rendering_resolution=256, sample_mult=4))),
        ("dense mesh grid 256^3", [*mesh, "--resolution", "16"], [*mesh, "--resolution", "256"],
         budget.mesh_bytes(256, dense=True)),
    ]
    print("| case | estimate | increments measured | estimate / largest |\n|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k, (name, small, large, estimate) in enumerate(cases):
            base = peak_rss([*small, "--outdir", str(tmp / f"s{k}")], tmp)
            incs = [peak_rss([*large, "--outdir", str(tmp / f"l{k}-{r}")], tmp) - base for r in range(args.runs)]
            shown = ", ".join(budget.format_size(max(i, 0)) for i in incs)
            print(f"| {name} | {budget.format_size(estimate)} | {shown} | {estimate / max(max(incs), 1):.2f} |")


if __name__ == "__main__":
    main()
