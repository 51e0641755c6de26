"""FID evaluation throughput: generated samples per second per process, and scaling from 1 to 2 processes.

Runs ``eg3d fid`` (the real command, started with ``torchrun`` for 2 processes) on the bundled demo model, or on a
randomly initialised released architecture (``--preset``), with the Inception stand-in of ``tests/`` at full width
(the real network's architecture and cost; the FID value itself is meaningless here). Real statistics come from a
precomputed ``.npz`` so only the generated side is timed; the time is the command's own ``fake_seconds`` (no start-up).

Configurations: 1 process x 1 thread, 1 process x 2 threads, 2 processes x 1 thread (all at the same batch size).

Usage:  python benchmarks/bench_fid.py [--preset NAME] [--num-samples 64] [--batch-size 8] [--nrr N]
Prints a markdown table; nothing is kept on disk.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def run(nproc: int, threads: int, args: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "eg3d_core", "fid", *args, "--threads", str(threads),
           "--out", str(out), "-q"]
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    import inception_standin
    import numpy as np
    import torch

    from eg3d_core import PRESETS, Generator, save_generator
    from eg3d_core.metrics.frechet import feature_stats, save_stats

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="random weights of a released architecture")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--nrr", type=int, default=None, help="neural rendering resolution (default: the model's)")
    a = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = "demo"
        if a.preset:
            torch.manual_seed(0)
            model = str(save_generator(Generator(PRESETS[a.preset]), tmp / "model"))
        inception = inception_standin.write(tmp / "inception.pt", width=1.0)
        save_stats(feature_stats(np.random.default_rng(0).normal(size=(64, 2048))), tmp / "real.npz")
        args = ["--model", model, "--data", str(tmp / "real.npz"), "--inception", str(inception), "--camera", "random",
                "--num-samples", str(a.num_samples), "--batch-size", str(a.batch_size), "--device", "cpu"]
        if a.nrr:
            args += ["--nrr", str(a.nrr)]
        rows = []
        for nproc, threads in ((1, 1), (1, 2), (2, 1)):
            rec = run(nproc, threads, args, tmp / f"r{nproc}{threads}.json")
            rows.append((nproc, threads, rec["run"]["samples_per_second"], rec["fid"]))
        base = rows[0][2]
        load = os.getloadavg()[0]
        print(f"model: {a.preset or 'demo'}, {a.num_samples} samples, batch {a.batch_size}, "
              f"Inception stand-in at full width; load average {load:.1f}\n")
        print("| processes x threads | samples/s (all) | samples/s per process | vs 1 x 1 | FID identical |")
        print("|---|---:|---:|---:|---|")
        for nproc, threads, sps, fid in rows:
            print(f"| {nproc} x {threads} | {sps:.2f} | {sps / nproc:.2f} | {sps / base:.2f}x | "
                  f"{'yes' if fid == rows[0][3] else 'no'} |")


if __name__ == "__main__":
    main()
