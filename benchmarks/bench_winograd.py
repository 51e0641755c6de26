"""Per-layer speed of the Winograd convolutions (eg3d_core.networks.winograd) against oneDNN's direct ones.

The layer shapes of the released generators (single image, float32, channels-last, modulated weights as the
generator passes them): 3x3 convolutions and the upsampling layers' stride-2 transposed convolutions. Each pair is
timed alternately in the same process (best of ``--repeats``), with the maximum error of both against float64.

    python benchmarks/bench_winograd.py [--repeats 5] [--write]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from eg3d_core.networks import winograd  # noqa: E402
from eg3d_core.runtime import reuse_freed_memory  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- bench_winograd:begin -->", "<!-- bench_winograd:end -->"
# (kind, in channels, out channels, input size, where it occurs)
LAYERS = [
    ("3x3", 512, 512, 16, "backbone b16"),
    ("3x3", 512, 512, 32, "backbone b32"),
    ("3x3", 512, 512, 64, "backbone b64"),
    ("3x3", 256, 256, 128, "backbone b128"),
    ("3x3", 128, 128, 256, "backbone b256"),
    ("3x3", 256, 256, 256, "FFHQ/AFHQ super-resolution, 256 px"),
    ("3x3", 128, 128, 512, "FFHQ/AFHQ super-resolution, 512 px"),
    ("up", 512, 512, 16, "backbone b32 (not used: even or slower)"),
    ("up", 512, 512, 32, "backbone b64"),
    ("up", 512, 256, 64, "backbone b128"),
    ("up", 256, 128, 128, "backbone b256"),
    ("up", 32, 256, 128, "FFHQ super-resolution block 0"),
    ("up", 256, 128, 256, "FFHQ super-resolution block 1 (not used: even)"),
]


def best(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = p.parse_args()
    if winograd.library() is None:
        raise SystemExit("compiled kernels unavailable here (x86-64 AVX2 and a C compiler are needed)")
    reuse_freed_memory()
    torch.manual_seed(0)
    rows = ["| layer | in -> out channels | input px | direct (oneDNN) | Winograd | speed-up | max error direct / Winograd "
            "(vs float64) |", "|---|---|---:|---:|---:|---:|---|"]
    with torch.no_grad():
        for kind, cin, cout, size, where in LAYERS:
            x = torch.randn(1, cin, size, size).contiguous(memory_format=torch.channels_last)
            w = torch.randn(cout, cin, 3, 3) / (3 * cin ** 0.5)
            styles = torch.rand(cin) + 0.5
            mod = w * styles.reshape(1, cin, 1, 1)
            mod = mod * (mod.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()
            mod_cl = mod.contiguous(memory_format=torch.channels_last)
            if kind == "3x3":
                direct = lambda: F.conv2d(x, mod_cl, padding=1)  # noqa: E731, B023
                fast = lambda: winograd.conv3x3(x, w, styles=styles, demodulate=True)  # noqa: E731, B023
                exact = F.conv2d(x.double(), mod.double(), padding=1)
            else:
                direct = lambda: F.conv_transpose2d(x, mod.transpose(0, 1), stride=2)  # noqa: E731, B023
                fast = lambda: winograd.conv_transpose3x3_up(x, w, styles=styles, demodulate=True)  # noqa: E731, B023
                exact = F.conv_transpose2d(x.double(), mod.double().transpose(0, 1), stride=2)
            err_d = (direct().double() - exact).abs().max().item()
            err_w = (fast().double() - exact).abs().max().item()
            td, tw = best(direct, args.repeats), best(fast, args.repeats)
            label = "3x3 conv" if kind == "3x3" else "stride-2 transposed 3x3"
            rows.append(f"| {label}, {where} | {cin} -> {cout} | {size} | {td * 1e3:.1f} ms | {tw * 1e3:.1f} ms "
                        f"| {td / tw:.2f}x | {err_d:.1e} / {err_w:.1e} |")
    text = (f"{torch.get_num_threads()} threads, best of {args.repeats}; weights modulated and demodulated like the "
            "generator's (the Winograd times include that, done in its filter transform; the direct times do not).\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    if args.write:
        old = RESULTS.read_text()
        block = f"{BEGIN}\n## Winograd convolutions per layer (`python benchmarks/bench_winograd.py --write`)\n\n{text}{END}"
        if BEGIN in old:
            new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
        else:
            marker = "## Mesh extraction"
            new = old.replace(marker, block + "\n\n" + marker, 1) if marker in old else old.rstrip() + "\n\n" + block + "\n"
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
