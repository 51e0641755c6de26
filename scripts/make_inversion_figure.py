"""The README's picture -> 3D figure: a held-out toy car's picture, its fit, and two novel views next to the truth.

    .venv/bin/python scripts/make_inversion_figure.py --out assets/inversion.png

The car (z from ``--seed``, a seed the demo model's training never drew) is rendered by the procedural ground truth
(``toycars.render``) at ``--yaw`` / ``--pitch``; ``eg3d_core.inversion.invert`` estimates its camera and latent with the
default settings; the fitted latent is then rendered from the estimated camera turned by -``--turn`` and +``--turn``
degrees of yaw, next to the ground truth from the true camera turned as much. Prints the estimate and the PSNRs.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core import cameras, load_generator  # noqa: E402
from eg3d_core.fileio import atomic_file  # noqa: E402
from eg3d_core.inversion import invert, psnr  # noqa: E402
from eg3d_core.training import toycars as tc  # noqa: E402
from eg3d_core.visualize import to_uint8  # noqa: E402

LABEL_HEIGHT = 22


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="assets/inversion.png")
    p.add_argument("--seed", type=int, default=424242)
    p.add_argument("--yaw", type=float, default=35.0, help="the picture's camera, degrees from frontal")
    p.add_argument("--pitch", type=float, default=-10.0)
    p.add_argument("--turn", type=float, default=40.0, help="novel views: yaw offsets from the picture's camera")
    p.add_argument("--size", type=int, default=192, help="side of each tile in the figure")
    a = p.parse_args()
    G = load_generator("demo")
    d = cameras.camera_defaults(G.config)
    z = torch.from_numpy(np.random.RandomState(a.seed).randn(1, G.z_dim)).float()
    params = tc.params_from_latent(z)
    yaws = [a.yaw, a.yaw - a.turn, a.yaw + a.turn]
    true_cams = cameras.camera(d, [math.radians(y) for y in yaws], [math.radians(a.pitch)] * 3)
    truth = tc.render(params.expand(3, -1), true_cams, G.img_resolution)["image"]
    picture = tc.to_uint8(tc.render(params, true_cams[:1], 256)["image"])[0]
    result = invert(G, picture)
    fit_yaws = [result.yaw, result.yaw - a.turn, result.yaw + a.turn]
    fit_cams = cameras.camera(d, [math.radians(y) for y in fit_yaws], [math.radians(result.pitch)] * 3)
    with torch.no_grad():
        fits = G.synthesis(result.ws.expand(3, -1, -1), fit_cams)["image"]
    scores = psnr(fits.clamp(-1, 1), truth).tolist()
    print(f"true camera yaw {a.yaw:+.1f} pitch {a.pitch:+.1f}; estimated yaw {result.yaw:+.1f} pitch "
          f"{result.pitch:+.1f}; PSNR input view {scores[0]:.2f} dB, novel views {scores[1]:.2f} / {scores[2]:.2f} dB; "
          f"{sum(result.timings.values()):.0f} s")
    tiles = [
        ("the picture", picture),
        ("its fit", to_uint8(fits[0])),
        (f"fit, {-a.turn:+.0f} deg", to_uint8(fits[1])), (f"truth, {-a.turn:+.0f} deg", tc.to_uint8(truth[1:2])[0]),
        (f"fit, {a.turn:+.0f} deg", to_uint8(fits[2])), (f"truth, {a.turn:+.0f} deg", tc.to_uint8(truth[2:3])[0]),
    ]
    s = a.size
    figure = Image.new("RGB", (s * len(tiles), s + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(figure)
    for i, (label, image) in enumerate(tiles):
        figure.paste(Image.fromarray(image).resize((s, s), Image.LANCZOS), (i * s, LABEL_HEIGHT))
        draw.text((i * s + 6, 5), label, fill=(40, 40, 40))
    with atomic_file(Path(a.out)) as tmp:
        figure.save(tmp, format="PNG")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
