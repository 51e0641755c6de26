"""Dense vs coarse-to-fine shape extraction on an MLP-priced analytic density.

The density is a torus (major 0.25, minor 0.1, slope 100 per world unit, level 10 as in EG3D) plus a tiny random
2-layer MLP bump field (3 -> 64 -> 1, ReLU), so that evaluating the density costs roughly like a small decoder and
dominates the bookkeeping, as it does with a real generator (whose tri-plane decoder is 32 -> 64 -> 33 plus the
feature sampling).

Usage:  python benchmarks/bench_mesh.py [--resolutions 256 512] [--threads 2]
Prints a markdown table; nothing is written to disk.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

# Runnable as a plain script from anywhere without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core import mesh as M  # noqa: E402
from eg3d_core.mesh.testing import torus_density  # noqa: E402


class BumpyTorus(torch.nn.Module):
    """Torus density + 1.5 * tanh(random MLP(points)): wavy surface, ~±4 voxels at 256^3."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(3, 64)
        self.l2 = torch.nn.Linear(64, 1)
        with torch.no_grad():
            # Large first-layer weights give the bumps a spatial scale of a few tens of voxels.
            self.l1.weight.copy_(torch.randn(64, 3, generator=gen) * 12)
            self.l1.bias.copy_(torch.randn(64, generator=gen) * 2)
            self.l2.weight.copy_(torch.randn(1, 64, generator=gen) / 8)
            self.l2.bias.zero_()
        self.torus = torus_density()

    def forward(self, points: torch.Tensor) -> torch.Tensor:  # [M,3] -> [M]
        return self.torus(points) + 1.5 * torch.tanh(self.l2(torch.relu(self.l1(points)))[:, 0])


def chamfer_voxels(a: np.ndarray, b: np.ndarray, resolution: int) -> float:
    """Symmetric mean nearest-neighbour distance between vertex sets, in voxels."""
    d = (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2
    return float(d * (resolution - 1))


def run(resolution: int, density: torch.nn.Module) -> dict[str, float | int | bool]:
    pad = M.border_pad(resolution)

    t0 = time.perf_counter()
    dense = M.density_grid(density, resolution)
    t_dense_grid = time.perf_counter() - t0
    M.pad_volume_borders(dense, pad)
    mesh_dense = M.volume_to_mesh(dense)
    t_dense = time.perf_counter() - t0

    t0 = time.perf_counter()
    grid = M.density_grid_coarse_to_fine(density, resolution, pad=pad)
    t_c2f_grid = time.perf_counter() - t0
    mesh_c2f = M.volume_to_mesh(grid.volume)
    t_c2f = time.perf_counter() - t0

    evaluated = int(grid.evaluated.sum())
    max_diff = float(np.abs(grid.volume[grid.evaluated] - dense[grid.evaluated]).max())
    identical = mesh_c2f.faces.shape == mesh_dense.faces.shape and bool(
        np.array_equal(mesh_c2f.faces, mesh_dense.faces) and np.array_equal(mesh_c2f.vertices, mesh_dense.vertices)
    )
    return {
        "n": resolution,
        "t_dense_grid": t_dense_grid,
        "t_dense": t_dense,
        "t_c2f_grid": t_c2f_grid,
        "t_c2f": t_c2f,
        "points_dense": resolution**3,
        "points_c2f": evaluated,
        "max_diff": max_diff,
        "identical": identical,
        "chamfer": 0.0 if identical else chamfer_voxels(mesh_dense.vertices, mesh_c2f.vertices, resolution),
        "verts": len(mesh_dense.vertices),
        "verts_c2f": len(mesh_c2f.vertices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    density = BumpyTorus().eval()

    print(f"torch {torch.__version__}, {args.threads} threads; density: torus + 3-64-1 ReLU MLP; level 10; "
          f"border padding on; coarse step 4, dilation 1 block")
    print()
    print("| N | dense: grid / total (s) | c2f: grid / total (s) | speed-up (total) | points dense | points c2f "
          "| max abs diff at evaluated voxels | mesh identical | vertices dense / c2f | Chamfer (voxels) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.resolutions:
        r = run(n, density)
        print(
            f"| {r['n']}³ | {r['t_dense_grid']:.1f} / {r['t_dense']:.1f} | {r['t_c2f_grid']:.1f} / {r['t_c2f']:.1f} "
            f"| {r['t_dense'] / r['t_c2f']:.1f}× | {r['points_dense']:,} | {r['points_c2f']:,} "
            f"({100 * r['points_c2f'] / r['points_dense']:.1f} %) | {r['max_diff']:.3g} | {'yes' if r['identical'] else 'no'} "
            f"| {r['verts']:,} / {r['verts_c2f']:,} | {r['chamfer']:.3g} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
