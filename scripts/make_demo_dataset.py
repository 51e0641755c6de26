"""Write the toy-car demo dataset (EG3D layout: flat PNGs + dataset.json camera labels + params.npy).

    python scripts/make_demo_dataset.py --out datasets/toycars128 [--num-images 2000] [--resolution 128] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eg3d_core.training.toycars import write_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description="Render the procedural toy-car dataset in the EG3D layout.")
    ap.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    ap.add_argument("--num-images", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = ap.parse_args(argv)
    out = write_dataset(args.out, args.num_images, args.resolution, args.seed, progress=not args.no_progress)
    print(f"wrote {args.num_images} images to {out}")
    return out


if __name__ == "__main__":
    main()
