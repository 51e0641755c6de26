"""Per-layer speed of the synthesis layers' CPU fast paths against the plain ones, on the released generators' shapes.

Three tables, each pair timed alternately in the same process (best of ``--repeats``), single image, float32:

* Winograd convolutions (``eg3d_core.kernels.winograd``) against oneDNN's direct ones: 3x3 convolutions and the
  upsampling layers' stride-2 transposed convolutions, with small tiles (2x2: F(2x2, 3x3), and F(2x2, 2x2) per
  phase) and with large ones (3x3: F(3x3, 3x3), F(3x3, 2x2) per phase; the generator's choice for the 3x3
  convolutions from 128 channels and for the transposed ones from 128 input channels and 64 px), and the maximum
  error of each against float64; for the 3x3 convolutions also F(6x6, 3x3) and the tiles reduced precision picks
  (``winograd.reduced_precision``, on CPUs without native bfloat16);
* the Winograd products alone: the kernel's own matrix product (``wino_gemm``) against ``torch.bmm`` on one chunk of
  tiles, one thread (as each thread runs its chunks);
* the upsampling layers' tail (low-pass filter, bias, noise, leaky ReLU, clamp) fused (``kernels.fir``) against
  PyTorch's separate operations, and the backbone's 4-8 px layers as one matrix product with the raw weight
  (``kernels.cpu.small_image_conv3x3``) against modulating the weight for oneDNN.

    python benchmarks/bench_winograd.py [--repeats 5] [--write]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import functools  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from eg3d_core.kernels import cpu, fir, winograd  # noqa: E402
from eg3d_core.networks import layers  # noqa: E402
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
    ("3x3", 256, 256, 256, "FFHQ super-resolution, 256 px"),
    ("3x3", 128, 128, 512, "FFHQ super-resolution, 512 px"),
    ("3x3", 64, 64, 512, "AFHQ super-resolution, 512 px"),
    ("up", 512, 512, 16, "backbone b32"),
    ("up", 512, 512, 32, "backbone b64"),
    ("up", 512, 256, 64, "backbone b128"),
    ("up", 256, 128, 128, "backbone b256"),
    ("up", 32, 256, 128, "FFHQ super-resolution block 0"),
    ("up", 256, 128, 256, "FFHQ super-resolution block 1"),
    ("up", 128, 64, 256, "AFHQ super-resolution block 1"),
]
SMALL = [("3x3", 4, "backbone b4"), ("up", 4, "backbone b8"), ("3x3", 8, "backbone b8"), ("up", 8, "backbone b16")]


def alternating(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function, called in turn ``repeats`` times after a warm-up (so that load drifts on a
    shared machine hit all alike)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return [min(t) for t in times]


def modulated(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """weight * styles, demodulated per output channel (what the plain path convolves with)."""
    m = weight * styles.to(weight.dtype).reshape(1, -1, 1, 1)
    return m * (m.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).rsqrt()


def plain_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: bool) -> torch.Tensor:
    """Modulate the weight, then oneDNN's direct (or stride-2 transposed) convolution."""
    w = modulated(weight, styles)
    if up:
        return F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        w = w.contiguous(memory_format=torch.channels_last)  # laid out like the activations, as the generator does
    return F.conv2d(x, w, padding=1)


def winograd_table(repeats: int) -> list[str]:
    rows = ["| layer | in -> out channels | input px | direct (oneDNN) | Winograd, 2x2 tiles | Winograd, 3x3 tiles "
            "| generator's tiles | speed-up vs direct (generator's tiles) | 3x3 vs 2x2 tiles "
            "| max error direct / 2x2 / 3x3 tiles (vs float64) | Winograd, 6x6 tiles | reduced precision's tiles "
            "| reduced vs float32 (generator's tiles) | max error 6x6 tiles |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for kind, cin, cout, size, where in LAYERS:
        up = kind == "up"
        x = torch.randn(1, cin, size, size).contiguous(memory_format=torch.channels_last)
        w = torch.randn(cout, cin, 3, 3) / (3 * cin ** 0.5)
        styles = torch.rand(cin) + 0.5
        fast_fn = winograd.conv_transpose3x3_up if up else winograd.conv3x3
        # The transformed filters are kept per layer, as the generator does.
        small, large = (functools.partial(fast_fn, x, w, styles=styles, demodulate=True, cache={}, size=tile)
                        for tile in (2, 3))
        direct = functools.partial(plain_conv, x, w, styles, up)
        exact = plain_conv(x.double(), w.double(), styles, up)
        errors = " / ".join(f"{(fn().double() - exact).abs().max().item():.1e}" for fn in (direct, small, large))
        fns = [direct, small, large]
        if not up:  # F(6x6, 3x3), reduced precision only (winograd.reduced_precision)
            fns.append(functools.partial(fast_fn, x, w, styles=styles, demodulate=True, cache={}, size=6))
            err6 = f"{(fns[3]().double() - exact).abs().max().item():.1e}"
        times = alternating(fns, repeats)
        td, t2, t3 = times[:3]
        tile = (winograd.up_tile_size if up else winograd.tile_size)(x, w)
        with winograd.reduced_precision():
            tile_reduced = tile if up else winograd.tile_size(x, w)
        by_tile = {2: t2, 3: t3, 6: times[-1]}
        reduced = (" | | | |" if up else f" {times[3] * 1e3:.1f} ms | {tile_reduced}x{tile_reduced} "
                   f"| {by_tile[tile] / by_tile[tile_reduced]:.2f}x | {err6} |")
        label = "3x3 conv" if kind == "3x3" else "stride-2 transposed 3x3"
        rows.append(f"| {label}, {where} | {cin} -> {cout} | {size} | {td * 1e3:.1f} ms | {t2 * 1e3:.1f} ms "
                    f"| {t3 * 1e3:.1f} ms | {tile}x{tile} | {td / by_tile[tile]:.2f}x | {t2 / t3:.2f}x "
                    f"| {errors} |{reduced}")
    return rows


def products_table(repeats: int) -> list[str]:
    lib = winograd.library()
    rows = ["| layer | products (slots x tiles x in -> out) | torch.bmm | own kernel | speed-up |", "|---|---|---:|---:|---:|"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind, cin, cout, size, where in LAYERS:
            x, w = torch.empty(1, cin, size, size), torch.empty(cout, cin, 3, 3)
            if kind == "up":  # the tiles the generator uses
                tile = winograd.up_tile_size(x, w)
                slots, tw = (25, 49)[tile - 2], (size + tile) // tile
            else:  # in float32 (reduced precision's 6x6 tiles use the same products, 64 slots)
                tile = winograd.tile_size(x, w)
                slots, tw = (tile + 2) ** 2, -(-size // tile)
            m = winograd.chunk_tiles(tw * tw, slots, cin, cout, 2)  # as in a layer's chunk (two threads)
            v, u = torch.randn(slots, m, cin), torch.randn(slots, cout * cin)
            u_bmm = torch.randn(slots, cout, cin).transpose(1, 2)  # the column-major view MKL prefers
            out = torch.empty(slots, m, cout)
            v_own, out_own = winograd.slot_buffer(slots, m, cin).normal_(), winograd.slot_buffer(slots, m, cout)
            kc = winograd.products_run(tile, cin) if kind == "3x3" else 64
            own = functools.partial(lib.wino_gemm, slots, m, cin, cout, 0, cout, kc, v_own, u, out_own)
            tb, to = alternating([functools.partial(torch.bmm, v, u_bmm, out=out), own], repeats)
            rows.append(f"| {where} ({kind}) | {slots} x {m} x {cin} -> {cout} | {tb * 1e3:.1f} ms | {to * 1e3:.1f} ms "
                        f"| {tb / to:.2f}x |")
    finally:
        torch.set_num_threads(threads)
    return rows


def plain_tail(y: torch.Tensor, bias: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The upsampling tail as separate PyTorch operations (in place where possible, as the plain path does)."""
    o = y.shape[1]
    z = F.conv2d(y, layers.fir_kernel(o, 4.0, y.device, y.dtype), bias=bias, padding=1, groups=o)
    return layers.clamp(F.leaky_relu(z.add_(noise), 0.2, inplace=True), 256.0)


def tail_and_small_table(repeats: int) -> list[str]:
    rows = ["| step | layer | shape | plain | fast | speed-up |", "|---|---|---|---:|---:|---:|"]
    for kind, _cin, cout, size, where in LAYERS:
        if kind != "up":
            continue
        y = torch.randn(1, cout, 2 * size + 1, 2 * size + 1).contiguous(memory_format=torch.channels_last)
        bias, noise = torch.randn(cout), torch.randn(2 * size, 2 * size)
        tp, tf = alternating([functools.partial(plain_tail, y, bias, noise),
                              functools.partial(fir.upsample_tail, y, bias, noise, 0.2, 256.0)], repeats)
        rows.append(f"| upsampling tail (filter, bias, noise, activation, clamp) | {where} | {cout} x {2 * size + 1}^2 "
                    f"| {tp * 1e3:.1f} ms | {tf * 1e3:.1f} ms | {tp / tf:.2f}x |")
    for kind, size, where in SMALL:
        up = kind == "up"
        x, w, styles = torch.randn(1, 512, size, size), torch.randn(512, 512, 3, 3), torch.rand(512) + 0.5
        tp, tf = alternating([functools.partial(plain_conv, x, w, styles, up),
                              functools.partial(cpu.small_image_conv3x3, x, w, styles, True, up, 1.0, {})], repeats)
        label = "3x3 conv" if kind == "3x3" else "stride-2 transposed 3x3"
        rows.append(f"| small image: {label} as one matrix product | {where} | 512 -> 512, {size} px "
                    f"| {tp * 1e3:.1f} ms | {tf * 1e3:.1f} ms | {tp / tf:.2f}x |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = p.parse_args()
    if winograd.library() is None or fir.library() is None:
        raise SystemExit("compiled kernels unavailable here (x86-64 AVX2 and a C compiler are needed)")
    reuse_freed_memory()
    torch.manual_seed(0)
    with torch.no_grad():
        wino, products, other = winograd_table(args.repeats), products_table(args.repeats), \
            tail_and_small_table(args.repeats)
    text = (f"{torch.get_num_threads()} threads, best of {args.repeats}, each pair alternating; weights modulated and "
            "demodulated like the generator's (the Winograd times include that: styles applied in its input "
            "transform, demodulation in its output transform, around the raw weight's filters, which it keeps per "
            "layer as the generator does; the direct times include modulating the weight).\n\n"
            + "\n".join(wino) + "\n\nThe Winograd products alone (one chunk of tiles, one thread, as each thread "
            "runs its chunks):\n\n" + "\n".join(products) + "\n\nThe other per-layer fast paths:\n\n" + "\n".join(other) + "\n")
    print(text)
    if args.write:
        old = RESULTS.read_text()
        block = f"{BEGIN}\n## Synthesis layers (`python benchmarks/bench_winograd.py --write`)\n\n{text}{END}"
        if BEGIN in old:
            new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
        else:
            marker = "## Mesh extraction"
            new = old.replace(marker, block + "\n\n" + marker, 1) if marker in old else old.rstrip() + "\n\n" + block + "\n"
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
