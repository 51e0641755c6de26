"""Rendering throughput of the toy-car family (eg3d_core.training.toycars.render) on this machine.

Prints images/s at 64 and 128 px for a batch of 64 random cars from random cameras, for 1 thread and for
the current torch thread count (best of ``--repeats`` runs; the first, warm-up run is not counted).

    python benchmarks/bench_toycars.py [--batch 64] [--repeats 3] [--device cpu]

On a CPU shared with other busy processes, OpenMP threads that spin-wait for each other make the renderer's
many small ops several times slower with 2+ threads: run with OMP_WAIT_POLICY=PASSIVE (or one thread).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core.training import toycars  # noqa: E402


def bench(batch: int, resolution: int, repeats: int, device: str) -> float:
    """Best-of-``repeats`` images/s for one batch of ``batch`` images at ``resolution``."""
    gen = torch.Generator().manual_seed(0)
    params = toycars.params_from_latent(torch.randn(batch, toycars.PARAM_DIM, generator=gen)).to(device)
    cams = toycars.random_cameras(batch, gen).to(device)
    toycars.render(params, cams, resolution)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        toycars.render(params, cams, resolution)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return batch / best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads}) if args.device == "cpu" else [default_threads]
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for res in (64, 128):
            ips = bench(args.batch, res, args.repeats, args.device)
            print(f"{args.device} threads={threads} batch={args.batch} {res}x{res}: {ips:7.1f} images/s")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
