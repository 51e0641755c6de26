"""Generator speed per preset (full-size architecture, random weights, batch 1).

Times each stage (mapping, backbone, rendering, super-resolution), a full frame, a cached-planes frame
and a 256^3 density query, in fp32 and reduced precision, and the speed-up of each optimisation as a
ratio against the plain path measured in the same run. Prints markdown; ``--write`` appends nothing, it
rewrites the generator section of benchmarks/RESULTS.md.

    python benchmarks/bench_generator.py [--presets ffhq512-128 ...] [--repeats 3] [--write]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import eg3d_core.generator as generator_module  # noqa: E402
from eg3d_core import PRESETS, Generator, cameras  # noqa: E402
from eg3d_core.generator import default_reduced_dtype  # noqa: E402
from eg3d_core.kernels import cpu, fir, winograd  # noqa: E402
from eg3d_core.mesh import density_fn, density_grid  # noqa: E402
from eg3d_core.rendering.renderer import render_rays_reference  # noqa: E402
from eg3d_core.rendering.triplane import sample_planes_reference  # noqa: E402
from eg3d_core.runtime import reuse_freed_memory  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- bench_generator:begin -->", "<!-- bench_generator:end -->"


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (seconds)."""
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def sgemm_gflops() -> float:
    """This machine's float32 matrix-product speed right now (2048^3, best of 10): on a shared VM it varies by a third
    with the neighbours' load, so it is printed with the results."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    return 2 * 2048 ** 3 / min(timed(lambda: a @ b, 1) for _ in range(10)) / 1e9


def glibc_default_malloc() -> None:
    """Undo ``reuse_freed_memory``: glibc's settings as its dynamic mmap threshold leaves them at their most
    favourable (blocks above 32 MiB mapped and unmapped per allocation, 64 MiB trim threshold)."""
    mallopt = ctypes.CDLL(None).mallopt
    for param, value in ((-4, 65536), (-3, 32 << 20), (-1, 64 << 20)):  # M_MMAP_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        mallopt(param, value)


def alternating(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function, called in turn ``repeats`` times (so that load drifts hit all alike)."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, samples, strict=True):
            out.append(timed(fn, 1))
    return [statistics.median(s) for s in samples]


def ratio(plain: Callable[[], object], fast: Callable[[], object], repeats: int) -> float:
    """plain / fast wall time, the two called alternately ``repeats`` times (medians): an optimisation's speed-up
    measured under the same load."""
    slow, quick = alternating([plain, fast], repeats)
    return slow / quick


def under(fn: Callable[[], object], *patches: tuple[object, str, object]) -> Callable[[], object]:
    """``fn`` run with each (module, name, value) of ``patches`` applied (see ``patched``)."""
    def run() -> object:
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(patched(*p))
            return fn()
    return run


@contextlib.contextmanager
def patched(module: object, name: str, value: object) -> Iterator[None]:
    """``module.name = value`` for the duration (the plain path of an optimisation, in the code that is timed)."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def density_query(G: Generator, planes: torch.Tensor, resolution: int = 256) -> None:
    """The raw density on the mesh extractor's full grid (what `eg3d mesh --dense` evaluates)."""
    density_grid(density_fn(G, planes), resolution, G.config.rendering.box_warp)


def bench_preset(name: str, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    G = Generator(PRESETS[name])
    defaults = cameras.camera_defaults(G.config)
    z = torch.randn(1, G.z_dim)
    c = cameras.camera(defaults, yaw=0.3, pitch=-0.1)
    rows = []
    with torch.no_grad():
        ws = G.mapping(z, cameras.conditioning(defaults))
        for precision in ("fp32", "reduced"):
            planes = G.planes(ws, precision=precision)
            feats, _ = G.render(planes, c, precision=precision)
            dtype = default_reduced_dtype(torch.device("cpu")) if precision == "reduced" else torch.float32
            row = {"preset": name, "precision": precision, "dtype": str(dtype).replace("torch.", "")
                   + (", 6x6 Winograd tiles" if precision == "reduced" and dtype == torch.float32 else "")}
            row["mapping"] = timed(lambda: G.mapping(z, cameras.conditioning(defaults)), repeats)
            row["backbone"] = timed(lambda: G.planes(ws, precision=precision), repeats)  # noqa: B023
            row["rendering"] = timed(lambda: G.render(planes, c, precision=precision), repeats)  # noqa: B023
            row["sr"] = timed(lambda: G.super_resolve(feats, ws, precision=precision), repeats)  # noqa: B023
            row["full"] = timed(lambda: G.synthesis(ws, c, precision=precision), repeats)  # noqa: B023
            row["cached"] = timed(lambda: G.render_planes(planes, ws, c, precision=precision), repeats)  # noqa: B023
            row["density256"] = timed(lambda: density_query(G, planes), 1)  # noqa: B023
            rows.append(row)
        # Optimisation ratios against the plain path, same run: the two timed alternately (see ``ratio``).
        full = lambda: G.synthesis(ws, c)  # noqa: E731
        render = lambda: G.render(planes, c)  # noqa: E731
        no_field = (cpu, "field", lambda *a, **k: None)  # the PyTorch field instead of the compiled one

        def nchw() -> object:
            G.set_memory_format(torch.contiguous_format)
            try:
                return full()
            finally:
                G.set_memory_format(None)

        r = rows[0]
        r["ratio_channels_last"] = ratio(nchw, full, repeats)
        r["ratio_gather"] = ratio(under(render, no_field, (generator_module, "sample_planes", sample_planes_reference)),
                                  under(render, no_field), repeats)
        r["ratio_native"] = ratio(under(render, no_field), render, repeats)
        r["ratio_march"] = ratio(under(render, (cpu, "march", lambda *a: None)), render, repeats)
        r["ratio_importance"] = ratio(under(render, (cpu, "importance", lambda *a: None)), render, repeats)
        r["ratio_chunked"] = ratio(under(render, (generator_module, "render_rays", render_rays_reference)), render,
                                   repeats)
        r["ratio_winograd"] = ratio(under(full, (winograd, "use_winograd", lambda x, w: False),
                                          (winograd, "use_winograd_up", lambda x, w: False)), full, repeats)
        r["ratio_tiles"] = ratio(under(full, (winograd, "tile_size", lambda x, w: 2),
                                       (winograd, "up_tile_size", lambda x, w: 2)), full, repeats)
        r["ratio_layers"] = ratio(under(full, (fir, "use_fused_tail", lambda x: False),
                                        (cpu, "use_small_image_product", lambda x, w: False)), full, repeats)
        rows[0]["ratio_cached"] = rows[0]["full"] / rows[0]["cached"]
        rows[1]["ratio_reduced_full"] = ratio(full, lambda: G.synthesis(ws, c, precision="reduced"), repeats)
        rows[1]["ratio_reduced_cached"] = ratio(lambda: G.render_planes(planes, ws, c),
                                                lambda: G.render_planes(planes, ws, c, precision="reduced"), repeats)
        if reuse_freed_memory():
            def plain_malloc() -> None:
                glibc_default_malloc()
                try:
                    G.synthesis(ws, c)
                finally:
                    reuse_freed_memory()

            rows[0]["ratio_malloc"] = ratio(plain_malloc, full, repeats)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| preset | precision (dtype) | mapping | backbone | rendering | super-res | full frame | cached-planes frame "
           "| 256^3 density | full/cached | NCHW/per-block layout (full frame) | grid_sample/gather (rendering) "
           "| unchunked/chunked renderer (rendering) | PyTorch/compiled field (rendering) "
           "| PyTorch/compiled compositing (rendering) | PyTorch/compiled importance sampler (rendering) "
           "| direct/Winograd convolutions (full frame) | 2x2/3x3 Winograd tiles (full frame) "
           "| separate/fused upsampling tails and modulated/raw-weight 4-8 px "
           "layers (full frame) | glibc malloc/reused memory (full frame) | fp32/reduced (full frame) "
           "| fp32/reduced (cached-planes frame) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = (f"{r['ratio_cached']:.2f}x | {r['ratio_channels_last']:.2f}x | {r['ratio_gather']:.2f}x "
                  f"| {r['ratio_chunked']:.2f}x | {r['ratio_native']:.2f}x | {r['ratio_march']:.2f}x "
                  f"| {r['ratio_importance']:.2f}x | {r['ratio_winograd']:.2f}x | {r['ratio_tiles']:.2f}x "
                  f"| {r['ratio_layers']:.2f}x | {r.get('ratio_malloc', float('nan')):.2f}x | |" if "ratio_cached" in r
                  else f" | | | | | | | | | | | {r['ratio_reduced_full']:.2f}x | {r['ratio_reduced_cached']:.2f}x")
        out.append(f"| {r['preset']} | {r['precision']} ({r['dtype']}) | {r['mapping']*1e3:.1f} ms "
                   f"| {r['backbone']:.2f} s | {r['rendering']:.2f} s | {r['sr']:.2f} s | {r['full']:.2f} s "
                   f"| {r['cached']:.2f} s | {r['density256']:.1f} s | {ratios} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="*", default=list(PRESETS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = p.parse_args()
    reuse_freed_memory()
    speed_before = sgemm_gflops()
    rows = [r for name in args.presets for r in bench_preset(name, args.repeats)]
    speed_after = sgemm_gflops()
    load = os.getloadavg()[0]
    header = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
              f"load average at the end {load:.1f}; float32 matrix product (2048^3) at {speed_before:.0f} GFLOPS before "
              f"and {speed_after:.0f} after the run. Stage times: median of {args.repeats} runs after a warm-up. "
              f"Speed-ups (the ratio columns): the plain and the optimised path called alternately, {args.repeats} "
              "times each, ratio of the medians.")
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    if args.write:
        old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        block = f"{BEGIN}\n## Generator (`python benchmarks/bench_generator.py --write`)\n\n{text}{END}"
        if BEGIN in old:
            new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
        else:
            new = old.rstrip() + "\n\n" + block + "\n"
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
