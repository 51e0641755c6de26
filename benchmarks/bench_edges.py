"""Where the demo model's grey one-pixel border and its specks at the top and bottom edges come from (issue 18).

Border: the picture's edge rows and columns after each super-resolution stage, and with the skip image's upsampling
edge-replicated instead of zero-padded (the original zero-pads: tests/test_image_edges.py). Specks: the opacity of
the neural rendering's top and bottom rows and where along their rays the density lies (inside the tri-plane box,
beyond it in y alone, elsewhere), integrated densely along each ray.

Usage:  python benchmarks/bench_edges.py [--seeds 0 1 2 3] [--psi 0.7]
Prints markdown tables; nothing is written to disk.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# Runnable as a plain script from anywhere without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import eg3d_core  # noqa: E402
from eg3d_core import cameras, kernels  # noqa: E402
from eg3d_core.networks import layers  # noqa: E402
from eg3d_core.networks.layers import softplus  # noqa: E402
from eg3d_core.rendering.rays import sample_rays  # noqa: E402
from eg3d_core.rendering.renderer import render_rays  # noqa: E402
from eg3d_core.rendering.triplane import sample_planes  # noqa: E402
from eg3d_core.visualize import seed_to_z  # noqa: E402

EDGE_ROWS = 6  # rows at the top and at the bottom of the 64 px neural rendering examined for specks
DENSE = 2000  # samples per ray for the density integral


def to_u8(v: float) -> int:
    return round((min(max(v, -1.0), 1.0) + 1) * 127.5)


def edges(img: torch.Tensor) -> dict[str, float]:
    """Mean over colours and the middle of each edge (away from the corners) of a [1, 3, S, S] picture."""
    t = img[0].mean(0)
    m = t.shape[-1] // 8
    return {"top": float(t[0, m:-m].mean()), "bottom": float(t[-1, m:-m].mean()),
            "left": float(t[m:-m, 0].mean()), "right": float(t[m:-m, -1].mean()),
            "inside": float(t[2:m, m:-m].mean())}


def replicated(x: torch.Tensor) -> torch.Tensor:
    kernel = layers.fir_kernel(x.shape[1], 4.0, x.device, x.dtype)
    return torch.nn.functional.conv_transpose2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), kernel,
                                                stride=2, padding=3, groups=x.shape[1])


def border_table(G: eg3d_core.Generator, ws: torch.Tensor, c: torch.Tensor) -> None:
    features, _ = G.render(G.planes(ws), c)
    sr = G.superresolution
    w = ws[:, -1:].expand(-1, 3, -1)
    x, img0 = sr.block0(features, features[:, :3].clone(), w, "none")
    up = layers.upsample2d(img0)
    _, img = sr.block1(x, img0.clone(), w, "none")
    assert torch.equal(img, G.super_resolve(features, ws))
    orig, layers.upsample2d = layers.upsample2d, replicated
    try:
        other = G.super_resolve(features, ws)
    finally:
        layers.upsample2d = orig
    rows = [("raw render (64 px)", features[:, :3]), ("block0 image (64 px)", img0),
            ("skip upsampling, zero-padded (128 px)", up), ("+ last ToRGB = final image", img),
            ("final image, edge-replicated upsampling", other)]
    print("| stage | top | bottom | left | right | inside (background) |\n|---|---|---|---|---|---|")
    for name, t in rows:
        e = edges(t)
        print(f"| {name} | " + " | ".join(f"{v:.3f} ({to_u8(v)})" for v in e.values()) + " |")
    e = edges(img - up)
    print("| last ToRGB's addition | " + " | ".join(f"{v:+.3f}" for v in e.values()) + " |")


def speck_row(G: eg3d_core.Generator, planes: torch.Tensor, ws: torch.Tensor, c: torch.Tensor, label: str) -> None:
    r = G.config.rendering
    half = r.box_warp / 2
    res = r.neural_rendering_resolution
    opacity = G.render_planes(planes, ws, c)["image_mask"][0, 0]
    rows = list(range(EDGE_ROWS)) + list(range(res - EDGE_ROWS, res))
    origins, dirs = sample_rays(c, res)
    t = torch.linspace(r.ray_start, r.ray_end, DENSE)
    dt = float(t[1] - t[0])
    tau = {"inside": 0.0, "y only": 0.0, "other": 0.0}
    for i in rows:
        k = torch.arange(i * res, (i + 1) * res)
        pts = origins[0, k, None] + t[:, None] * dirs[0, k, None]  # [res, DENSE, 3]
        s = softplus(G.sample_planes(pts.reshape(1, -1, 3), planes)["sigma"].reshape(res, DENSE) - 1) * dt
        out = pts.abs() > half
        inside = ~out.any(-1)
        y_only = out[..., 1] & ~out[..., 0] & ~out[..., 2]
        tau["inside"] += float(s[inside].sum())
        tau["y only"] += float(s[y_only].sum())
        tau["other"] += float(s[~inside & ~y_only].sum())
    total = sum(tau.values())
    top, bottom = opacity[:EDGE_ROWS], opacity[-EDGE_ROWS:]

    def y_masked(p: torch.Tensor) -> dict[str, torch.Tensor]:  # not the original's maths: the counterfactual
        return G.decoder(sample_planes(planes, p, r.box_warp) * (p[..., 1:2].abs() <= half))

    masked = render_rays(y_masked, origins, dirs, r.ray_start, r.ray_end, r.depth_resolution,
                         r.depth_resolution_importance, r.white_back)[2].reshape(res, res)
    print(f"| {label} | {int((top > 0.05).sum())} / {int((bottom > 0.05).sum())} | {float(top.max()):.3f} / "
          f"{float(bottom.max()):.3f} | " + " | ".join(f"{100 * v / total:.1f} %" for v in tau.values())
          + f" | {float(masked[:EDGE_ROWS].max()):.3f} / {float(masked[-EDGE_ROWS:].max()):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--psi", type=float, default=0.7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    G = eg3d_core.load_generator("demo")
    d = cameras.camera_defaults(G.config)
    views = {"opening view": d.view, "frontal": (0.0, 0.0), "side (yaw 1.2)": (1.2, 0.0)}
    with torch.no_grad(), kernels.use("ref"):
        ws = G.mapping(seed_to_z(args.seeds[0], G.z_dim), cameras.conditioning(d), truncation_psi=args.psi)
        print(f"Border, seed {args.seeds[0]}, psi {args.psi}, opening view: mean edge values in [-1, 1] (uint8)\n")
        border_table(G, ws, cameras.camera(d, *d.view))
        fog = softplus(G.decoder(torch.zeros(1, 1, G.config.triplane_channels))["sigma"] - 1)
        r = G.config.rendering
        print(f"\nSpecks, psi {args.psi}: top / bottom {EDGE_ROWS} rows of the {r.neural_rendering_resolution} px "
              f"rendering (box [-{r.box_warp / 2}, {r.box_warp / 2}]^3; zero-feature density {float(fog):.2e}, "
              f"a ray's fog opacity {float(1 - torch.exp(-(r.ray_end - r.ray_start) * fog)):.1e})\n")
        print("| seed, view | pixels with opacity > 0.05 | max opacity | optical depth inside the box | beyond in y "
              "only | elsewhere outside | max opacity, features zeroed beyond the box in y |\n"
              "|---|---|---|---|---|---|---|")
        for seed in args.seeds:
            ws = G.mapping(seed_to_z(seed, G.z_dim), cameras.conditioning(d), truncation_psi=args.psi)
            planes = G.planes(ws)
            for name, (yaw, pitch) in views.items():
                speck_row(G, planes, ws, cameras.camera(d, yaw, pitch), f"{seed}, {name}")


if __name__ == "__main__":
    main()
