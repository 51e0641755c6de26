"""3x3 convolutions of one image by Winograd's minimal filtering: F(3x3, 3x3) (2.78 multiplications per output
instead of 9) on the layers from 128 channels, F(2x2, 3x3) (4 per output) elsewhere; in reduced precision
(``reduced_precision``) F(6x6, 3x3) (1.78 per output) on the larger images.

The tile transforms and the matrix products between them are compiled loops (``winograd_kernel.c``, built by
``eg3d_core.kernels.build``). Besides one scale per input and per output channel (the styles, the demodulation) the
transforms only add, subtract and scale by small constants (the fractions are applied to the filters, in double
precision), and the products sum in short runs, so F(2x2, 3x3) and F(3x3, 3x3) stay within float32 rounding of the
direct convolution (tests/test_winograd.py bounds them by twice its error against float64); F(6x6, 3x3)'s larger
transform coefficients amplify rounding more, which is why only reduced precision uses it. The CPU backend
(``kernels.cpu``) uses these for float32 inference on the wide layers where they are faster (``use_winograd``);
everything else takes ``F.conv2d``. The stride-2 transposed convolutions of the upsampling layers get the same
treatment by output phase (``conv_transpose3x3_up``, ``use_winograd_up``). Where each pays is measured by
benchmarks/bench_winograd.py (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import build, modulation
from .build import F32, FLOATS, I64, IMAGE, OPTIONAL_FLOATS, STATUS, Function, Library, float32_cpu_inference, run_parts

SOURCE = Path(__file__).with_name("winograd_kernel.c")
# Images whose transformed tiles ([slots, tiles, channels]) take at most this are run in three passes (see _run).
WHOLE_BYTES = 16 << 20
# Transformed tiles and products per chunk of the fused path (a floor; see chunk_tiles): they stay in the CPU caches.
CHUNK_BYTES = 1 << 20
# Whether the calling thread (context) runs in reduced precision; see reduced_precision.
_REDUCED = contextvars.ContextVar("eg3d_winograd_reduced", default=False)


@contextlib.contextmanager
def reduced_precision() -> Iterator[None]:
    """Inside (in this thread or context only, like autocast), ``conv3x3`` trades accuracy for speed: F(6x6, 3x3) on
    the images of at least 64 px from 128 channels and of 128 px from 64 channels (``tile_size``), whose rounding
    error is several times the direct convolution's but far below bfloat16's (tests/test_winograd.py bounds it). This
    is ``precision="reduced"`` on CPUs without native bfloat16, where bfloat16 itself would be many times slower."""
    token = _REDUCED.set(True)
    try:
        yield
    finally:
        _REDUCED.reset(token)


# The transforms take the tile size first (see winograd_kernel.c); transformed tiles and products are flat
# ``slot_buffer``s, the packed filters [slots, O * I].
_CONV_IN = (("size", I64),)
FUNCTIONS = (
    Function("wino_slot_stride", (("count", I64), ("channels", I64)), I64),
    Function("wino_gemm", (("slots", I64), ("m", I64), ("k", I64), ("n", I64), ("n0", I64), ("n1", I64), ("kc", I64),
                           ("a", FLOATS), ("b", FLOATS), ("c", FLOATS))),
    Function("wino_weights", (*_CONV_IN, ("o_count", I64), ("i_count", I64), ("weight", FLOATS), ("o0", I64),
                              ("o1", I64), ("u", FLOATS)), STATUS),
    Function("wino_input", (*_CONV_IN, ("h", I64), ("w", I64), ("i_count", I64), ("x", IMAGE),
                            ("scale", OPTIONAL_FLOATS), ("first", I64), ("count", I64), ("v", FLOATS))),
    Function("wino_output", (*_CONV_IN, ("h", I64), ("w", I64), ("o_count", I64), ("m", FLOATS),
                             ("scale", OPTIONAL_FLOATS), ("bias", OPTIONAL_FLOATS), ("noise", OPTIONAL_FLOATS),
                             ("slope", F32), ("limit", F32), ("first", I64), ("count", I64), ("y", IMAGE))),
    Function("wino_conv", (*_CONV_IN, ("kc", I64), ("h", I64), ("w", I64), ("i_count", I64), ("o_count", I64),
                           ("x", IMAGE), ("scale_in", OPTIONAL_FLOATS), ("u", FLOATS), ("scale_out", OPTIONAL_FLOATS),
                           ("bias", OPTIONAL_FLOATS), ("noise", OPTIONAL_FLOATS), ("slope", F32), ("limit", F32),
                           ("first", I64), ("count", I64), ("chunk", I64), ("scratch", FLOATS), ("y", IMAGE))),
    Function("wino_up_weights", (*_CONV_IN, ("o_count", I64), ("i_count", I64), ("weight", FLOATS), ("o0", I64),
                                 ("o1", I64), ("u", FLOATS)), STATUS),
    Function("wino_up_input", (*_CONV_IN, ("h", I64), ("w", I64), ("i_count", I64), ("x", IMAGE),
                               ("scale", OPTIONAL_FLOATS), ("first", I64), ("count", I64), ("v", FLOATS))),
    Function("wino_up_output", (*_CONV_IN, ("h", I64), ("w", I64), ("o_count", I64), ("m", FLOATS),
                                ("scale", OPTIONAL_FLOATS), ("first", I64), ("count", I64), ("y", IMAGE))),
    Function("wino_up_conv", (*_CONV_IN, ("h", I64), ("w", I64), ("i_count", I64), ("o_count", I64), ("x", IMAGE),
                              ("scale_in", OPTIONAL_FLOATS), ("u", FLOATS), ("scale_out", OPTIONAL_FLOATS),
                              ("first", I64), ("count", I64), ("chunk", I64), ("scratch", FLOATS), ("y", IMAGE))),
)


@functools.cache
def library() -> Library | None:
    """The transforms, or None where compiled kernels cannot be used."""
    return build.library(SOURCE, FUNCTIONS)


def _kernels() -> Library:
    lib = library()
    if lib is None:
        raise RuntimeError("the compiled Winograd kernels are unavailable here")
    return lib


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    """Raise ValueError unless x is one image [1, I, H, W] and weight [O, I, 3, 3] with I and O multiples of 8."""
    if (x.ndim != 4 or x.shape[0] != 1 or weight.ndim != 4 or tuple(weight.shape[1:]) != (x.shape[1], 3, 3)
            or x.shape[1] % 8 or weight.shape[0] % 8):
        raise ValueError(f"Winograd convolutions take one image [1, I, H, W] and a weight [O, I, 3, 3] with I and O "
                         f"multiples of 8, got {list(x.shape)} and {list(weight.shape)}")


def _single_image(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """What both Winograd paths need: one channels-last image, a 3x3 weight with channel counts that are multiples of
    8, float32 CPU inference, the kernels available."""
    return (x.shape[0] == 1 and tuple(weight.shape[2:]) == (3, 3) and weight.shape[0] % 8 == 0
            and weight.shape[1] % 8 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and float32_cpu_inference(x, weight) and library() is not None)


def use_winograd(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv3x3`` serves ``F.conv2d(x, weight, padding=1)``: one float32 CPU image, channels-last, channel
    counts that are multiples of 8, no autograd or autocast, kernels available; and at least 128 channels in and out
    and 16 px, or 64 channels and 256 px (in ``reduced_precision`` 128 px), the layers where it beats oneDNN's direct
    convolution (benchmarks/bench_winograd.py)."""
    channels, size = min(weight.shape[0], weight.shape[1]), min(x.shape[2], x.shape[3])
    large = 128 if _REDUCED.get() else 256
    return (channels >= 128 and size >= 16 or channels >= 64 and size >= large) and _single_image(x, weight)


def use_winograd_up(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv_transpose3x3_up`` serves the stride-2 transposed convolution of x by the convolution-shaped
    weight [O, I, 3, 3]: as ``use_winograd``, for inputs of at most 256 px and from 32 channels in, with 128 channels
    out and 16 px, or 64 out and 256 px, the layers where it beats oneDNN (benchmarks/bench_winograd.py)."""
    out, size = weight.shape[0], min(x.shape[2], x.shape[3])
    return (weight.shape[1] >= 32 and (out >= 128 and size >= 16 or out >= 64 and size >= 256)
            and max(x.shape[2], x.shape[3]) <= 256 and _single_image(x, weight))


def tile_size(x: torch.Tensor, weight: torch.Tensor) -> int:
    """The output tile size ``conv3x3`` uses by default: 3, F(3x3, 3x3) with 1.44x fewer products, from 128 channels
    in and out and 16 px; else 2, F(2x2, 3x3). F(3x3, 3x3)'s rounding error comes mostly from its products' sums,
    amplified by its output transform, and shrinks less with fewer input channels than the direct convolution's, so
    it serves only the wide layers, and below 256 input channels its products are summed in shorter runs
    (``products_run``). In ``reduced_precision``: 6, F(6x6, 3x3), from 128 channels and 64 px or 64 channels and
    128 px (on smaller images its few tiles do not pay for its 64-slot filters)."""
    channels, px = min(weight.shape[0], weight.shape[1]), min(x.shape[2], x.shape[3])
    if _REDUCED.get() and (channels >= 128 and px >= 64 or channels >= 64 and px >= 128):
        return 6
    return 3 if channels >= 128 and px >= 16 else 2


def products_run(size: int, channels_in: int) -> int:
    """Input channels summed at a time in the products (see wino_gemm): 32 for F(3x3, 3x3) below 256 input channels,
    whose error with 64 exceeds the direct convolution's on strongly modulated 128-channel layers
    (tests/test_winograd.py), else 64."""
    return 32 if size == 3 and channels_in < 256 else 64


def up_tile_size(x: torch.Tensor, weight: torch.Tensor) -> int:
    """The tile size ``conv_transpose3x3_up`` uses by default: 3 from 128 input channels and 64 px, else 2 (the
    smaller layers do not pay for the larger tiles' filters, 49 slots instead of 25; benchmarks/bench_winograd.py)."""
    return 3 if weight.shape[1] >= 128 and min(x.shape[2], x.shape[3]) >= 64 else 2


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, noise: torch.Tensor | None = None,
            slope: float = 1.0, limit: float | None = None, styles: torch.Tensor | None = None,
            demodulate: bool = False, gain: float = 1.0, cache: dict | None = None, size: int | None = None
            ) -> torch.Tensor:
    """``F.conv2d(x, weight', bias, padding=1)`` for x [1, I, H, W] (channels-last), weight [O, I, 3, 3], bias [O]
    -> [1, O, H, W] channels-last, followed in the same pass by ``+ noise`` (noise [H, W], broadcast over channels),
    a leaky ReLU of this ``slope`` (1: none) and a clamp to [-limit, limit] (None: none), each rounded as the
    separate PyTorch operations would. weight' is ``weight`` modulated as in ``layers.modulated_conv2d``: times
    ``styles`` [I] (None: ones), demodulated per output channel if ``demodulate``, times ``gain``. The convolution is
    linear in each input and output channel, so the styles scale the input in its transform and the demodulation and
    gain the output in its transform, around the filters of the raw weight, which ``cache`` (a dict, e.g. one per
    layer; None: none) keeps from call to call while the weight is unchanged. ``size``: the output tiles' size, 2 for
    F(2x2, 3x3), 3 for F(3x3, 3x3), 6 for F(6x6, 3x3) (None: ``tile_size``). Requires ``library()``."""
    _check(x, weight)
    lib = _kernels()
    _, i, h, w = x.shape
    o = weight.shape[0]
    size = size or tile_size(x, weight)
    th, tw = -(-h // size), -(-w // size)
    slots = (size + 2) ** 2
    src = x.contiguous(memory_format=torch.channels_last)
    u, scale_in, scale_out = _prepare(lib.wino_weights, size, slots, weight, styles, demodulate, gain, cache)
    b = None if bias is None else bias.float().contiguous()
    out = torch.empty(1, o, h, w, memory_format=torch.channels_last)
    nz = None if noise is None else noise.float().reshape(h, w).contiguous()
    post = (scale_out, b, nz, slope, 0.0 if limit is None else float(limit))

    kc = products_run(size, i)

    def in_passes(v: torch.Tensor, m: torch.Tensor, parts: int) -> None:
        lib.wino_input(size, h, w, i, src, scale_in, 0, th * tw, v)
        _products(v, u, m, slots, th * tw, i, o, parts, kc)
        lib.wino_output(size, h, w, o, m, *post, 0, th * tw, out)

    def fused(first: int, count: int, chunk: int, scratch: torch.Tensor) -> None:
        lib.wino_conv(size, kc, h, w, i, o, src, scale_in, u, *post, first, count, chunk, scratch, out)

    _run(th * tw, slots, i, o, in_passes, fused)
    return out


def conv_transpose3x3_up(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor | None = None,
                         demodulate: bool = False, gain: float = 1.0, cache: dict | None = None,
                         size: int | None = None) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight'.transpose(0, 1), stride=2)`` for x [1, I, H, W] (channels-last) and the
    convolution-shaped weight [O, I, 3, 3] (weight' modulated as in ``conv3x3``, ``cache`` as there) ->
    [1, O, 2H+1, 2W+1] channels-last, by its four output phases with Winograd transforms (see winograd_kernel.c),
    on tiles of ``size`` x ``size`` input positions: 3, F(3x3, 2x2) / F(3, 2), 49 products per 9 positions; 2,
    F(2x2, 2x2) / F(2, 2), 25 per 4; both instead of 9 per position (None: ``up_tile_size``). Requires
    ``library()``."""
    _check(x, weight)
    lib = _kernels()
    _, i, h, w = x.shape
    o = weight.shape[0]
    size = size or up_tile_size(x, weight)
    th, tw = (h + size) // size, (w + size) // size
    slots = 49 if size == 3 else 25
    src = x.contiguous(memory_format=torch.channels_last)
    u, scale_in, scale_out = _prepare(lib.wino_up_weights, size, slots, weight, styles, demodulate, gain, cache)
    out = torch.empty(1, o, 2 * h + 1, 2 * w + 1, memory_format=torch.channels_last)

    def in_passes(v: torch.Tensor, m: torch.Tensor, parts: int) -> None:
        lib.wino_up_input(size, h, w, i, src, scale_in, 0, th * tw, v)
        _products(v, u, m, slots, th * tw, i, o, parts)
        lib.wino_up_output(size, h, w, o, m, scale_out, 0, th * tw, out)

    def fused(first: int, count: int, chunk: int, scratch: torch.Tensor) -> None:
        lib.wino_up_conv(size, h, w, i, o, src, scale_in, u, scale_out, first, count, chunk, scratch, out)

    _run(th * tw, slots, i, o, in_passes, fused)
    return out


def _prepare(transform: Callable, size: int, slots: int, weight: torch.Tensor, styles: torch.Tensor | None,
             demodulate: bool, gain: float, cache: dict | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The packed filters [slots, O * I] of the raw weight for tiles of ``size`` (kept in ``cache`` while the weight is
    unchanged), the input scale [I] (the styles; None: ones) and the output scale [O] (``modulation.output_scale``)."""
    u, sumsq = modulation.cached(cache, (transform.__name__, size), weight,
                                 lambda w: (_filters(transform, size, slots, w.contiguous()), modulation.sum_of_squares(w)))
    s = None if styles is None else styles.float().reshape(-1).contiguous()
    return u, s, modulation.output_scale(sumsq, s, demodulate, gain)


def _filters(transform: Callable, size: int, slots: int, weight: torch.Tensor) -> torch.Tensor:
    """The transformed filters of weight [O, I, 3, 3] (float32, contiguous) for tiles of ``size``: [slots, O * I],
    packed for ``wino_gemm`` (see winograd_kernel.c), output channels split over the intra-op threads."""
    o, i = weight.shape[:2]
    u = torch.empty(slots, o * i)
    parts = max(1, min(torch.get_num_threads(), o // 64))

    def run(k: int) -> None:
        transform(size, o, i, weight, o // 8 * k // parts * 8, o // 8 * (k + 1) // parts * 8, u)

    run_parts(run, parts)
    return u


def slot_buffer(slots: int, rows: int, channels: int) -> torch.Tensor:
    """An uninitialised buffer for transformed tiles or products [slots][rows][channels], the slots
    ``wino_slot_stride`` floats apart (a cache line more than their data; see winograd_kernel.c), flat."""
    return torch.empty(slots * _kernels().wino_slot_stride(rows, channels))


def _products(v: torch.Tensor, u: torch.Tensor, m: torch.Tensor, slots: int, rows: int, i: int, o: int, parts: int,
              kc: int = 64) -> None:
    """m [slots, rows, o] = v [slots, rows, i] @ the packed filters u [slots, o * i] of each slot (v and m as
    ``slot_buffer`` lays them out; ``wino_gemm``, summing ``kc`` input channels at a time), the output channels split
    over ``parts`` threads (so that each reads only its share of the filters)."""
    panels = -(-o // 16)
    gemm = _kernels().wino_gemm

    def run(k: int) -> None:
        n0, n1 = 16 * (panels * k // parts), min(o, 16 * (panels * (k + 1) // parts))
        gemm(slots, rows, i, o, n0, n1, kc, v, u, m)

    run_parts(run, parts)


def chunk_tiles(tiles: int, slots: int, i: int, o: int, parts: int) -> int:
    """Tiles per chunk of the fused path: CHUNK_BYTES of transformed tiles and products, but at least as many tiles
    as channels (so that streaming the filters, which outgrow the caches at 512 channels, is paid by enough products)
    and at most a thread's share of the ``tiles`` (more tiles per chunk let the 49-slot transposed convolutions'
    chunks outgrow the caches)."""
    return min(max(CHUNK_BYTES // (slots * (i + o) * 4), max(i, o)), -(-tiles // parts))


def _run(tiles: int, slots: int, i: int, o: int, in_passes: Callable[[torch.Tensor, torch.Tensor, int], None],
         fused: Callable[[int, int, int, torch.Tensor], None]) -> None:
    """Run a convolution of ``tiles`` tiles on the intra-op threads, in one of two ways.

    A small image (transformed tiles of at most WHOLE_BYTES) in three passes, ``in_passes(v [slots, tiles, i],
    m [slots, tiles, o], threads)`` (each a ``slot_buffer``): the transforms on this thread, the products split over
    the threads by output channel (so that each reads only its share of the filters, which outweigh the tiles here).
    A larger one split into one range of tiles per thread, each run by ``fused(first tile, count, chunk, scratch)`` a
    chunk of tiles at a time (``chunk_tiles``; transformed tiles and products in ``scratch``), so that the transformed
    data stays in the CPU caches instead of going to memory and back.
    """
    threads = torch.get_num_threads()
    if slots * tiles * max(i, o) * 4 <= WHOLE_BYTES:
        in_passes(slot_buffer(slots, tiles, i), slot_buffer(slots, tiles, o), threads)
        return
    parts = max(1, min(threads, tiles // 6))
    chunk = chunk_tiles(tiles, slots, i, o, parts)

    def work(k: int) -> None:
        first, last = tiles * k // parts, tiles * (k + 1) // parts
        stride = _kernels().wino_slot_stride
        fused(first, last - first, chunk, torch.empty(slots * (stride(chunk, i) + stride(chunk, o))))

    run_parts(work, parts)
