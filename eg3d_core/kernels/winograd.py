"""3x3 convolutions of one image by Winograd's minimal filtering: F(3x3, 3x3) (2.78 multiplications per output
instead of 9) on the layers from 128 channels, F(2x2, 3x3) (4 per output) elsewhere; in reduced precision
(``reduced_precision``) F(6x6, 3x3) (1.78 per output) on the larger images.

The tile transforms and the matrix products between them are compiled loops (``winograd_kernel.c``, built by
``eg3d_core.kernels.build``). Besides one scale per input and per output channel (the styles, the demodulation) the
transforms only add, subtract and scale by small constants (the fractions are applied to the filters, in double
precision), and the products sum in short runs, so the result stays within float32 rounding of the direct convolution
(tested against float64: F(2x2, 3x3) several times below oneDNN's direct convolution's error, F(3x3, 3x3) about equal
to it on the layers it serves; F(6x6, 3x3), reduced precision only, 5-9x above it). Used for float32 CPU inference on
the wide layers where it is faster (``use_winograd``); everything else takes ``F.conv2d``. The stride-2 transposed
convolutions of the upsampling layers get the same treatment by output phase (``conv_transpose3x3_up``,
``use_winograd_up``).
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from . import build as native
from . import modulation
from .build import float32_cpu_inference, float_ptr, run_parts

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
    the images of at least 64 px from 128 channels and of 128 px from 64 channels (1.0-1.7x faster than the float32
    choice there, mostly 1.2-1.4x; rounding error 5-9x the direct convolution's, 3-7e-6 of a layer's largest output,
    a hundred times below bfloat16's rounding). This is ``precision="reduced"`` on CPUs without native bfloat16,
    where bfloat16 itself would be many times slower."""
    token = _REDUCED.set(True)
    try:
        yield
    finally:
        _REDUCED.reset(token)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The transforms, or None where compiled kernels cannot be used."""
    lib = native.load(SOURCE)
    if lib is not None:
        i64, fp, f32 = ctypes.c_int64, ctypes.POINTER(ctypes.c_float), ctypes.c_float
        lib.wino_slot_stride.argtypes, lib.wino_slot_stride.restype = [i64, i64], i64
        # The transforms take the tile size first (see winograd_kernel.c).
        signatures = {"wino_gemm": [i64, i64, i64, i64, i64, i64, i64, fp, fp, fp],
                      "wino_conv": [i64, i64, i64, i64, i64, i64, fp, fp, fp, fp, fp, fp, f32, f32, i64, i64, i64, fp,
                                    fp],
                      "wino_up_conv": [i64, i64, i64, i64, i64, fp, fp, fp, fp, i64, i64, i64, fp, fp],
                      "wino_weights": [i64, i64, i64, fp, i64, i64, fp],
                      "wino_input": [i64, i64, i64, i64, fp, fp, i64, i64, fp],
                      "wino_output": [i64, i64, i64, i64, fp, fp, fp, fp, f32, f32, i64, i64, fp],
                      "wino_up_weights": [i64, i64, i64, fp, i64, i64, fp],
                      "wino_up_input": [i64, i64, i64, i64, fp, fp, i64, i64, fp],
                      "wino_up_output": [i64, i64, i64, i64, fp, fp, i64, i64, fp]}
        for name, args in signatures.items():
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = None
    return lib


def _single_image(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """What both Winograd paths need: one channels-last image, a 3x3 weight with channel counts that are multiples of
    8, float32 CPU inference, the kernels available."""
    return (x.shape[0] == 1 and tuple(weight.shape[2:]) == (3, 3) and weight.shape[0] % 8 == 0
            and weight.shape[1] % 8 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and float32_cpu_inference(x, weight) and library() is not None)


def use_winograd(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv3x3`` serves ``F.conv2d(x, weight, padding=1)``: one float32 CPU image, channels-last, channel
    counts that are multiples of 8, no autograd or autocast, kernels available; and at least 128 channels in and out
    and 16 px, or 64 channels and 256 px. Measured on a 2-core AVX2 CPU against oneDNN's direct convolution:
    1.2-2.5x from 128 channels and 16 px up; for 64 channels 1.3x at 256-512 px (AFHQ's super-resolution), about even
    or slower below (benchmarks/RESULTS.md); in ``reduced_precision`` from 128 px (F(6x6, 3x3): 1.25x at 128 px)."""
    channels, size = min(weight.shape[0], weight.shape[1]), min(x.shape[2], x.shape[3])
    large = 128 if _REDUCED.get() else 256
    return (channels >= 128 and size >= 16 or channels >= 64 and size >= large) and _single_image(x, weight)


def use_winograd_up(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv_transpose3x3_up`` serves the stride-2 transposed convolution of x by the convolution-shaped
    weight [O, I, 3, 3]: as ``use_winograd``, for inputs of at most 256 px and from 32 channels in, with 128 channels
    out and 16 px, or 64 out and 256 px. Measured on a 2-core AVX2 CPU against oneDNN (benchmarks/bench_winograd.py):
    1.1-2.2x, least for the super-resolution's 256 px layer, where it is still 3x more exact; 1.8x for AFHQ's
    128 -> 64 channel one, about even for 64 output channels at 128 px."""
    out, size = weight.shape[0], min(x.shape[2], x.shape[3])
    return (weight.shape[1] >= 32 and (out >= 128 and size >= 16 or out >= 64 and size >= 256)
            and max(x.shape[2], x.shape[3]) <= 256 and _single_image(x, weight))


def tile_size(x: torch.Tensor, weight: torch.Tensor) -> int:
    """The output tile size ``conv3x3`` uses by default: 3, F(3x3, 3x3) with 1.44x fewer products, from 128 channels
    in and out and 16 px; else 2, F(2x2, 3x3). F(3x3, 3x3)'s rounding error comes mostly from its products' sums,
    amplified by its output transform, and shrinks less with fewer input channels than the direct convolution's, so
    below 256 input channels its products are summed in shorter runs (``products_run``): 0.6-1.4x oneDNN's direct
    convolution's error on the layers it serves (tests/test_winograd.py bounds it by 2x); with 64 channels it would
    be 2.6x. F(2x2, 3x3)'s stays several times below the direct convolution's. In ``reduced_precision``: 6,
    F(6x6, 3x3), from 128 channels and 64 px or 64 channels and 128 px (slower than F(3x3, 3x3) on smaller images,
    whose few tiles do not pay for its 64-slot filters)."""
    channels, px = min(weight.shape[0], weight.shape[1]), min(x.shape[2], x.shape[3])
    if _REDUCED.get() and (channels >= 128 and px >= 64 or channels >= 64 and px >= 128):
        return 6
    return 3 if channels >= 128 and px >= 16 else 2


def products_run(size: int, channels_in: int) -> int:
    """Input channels summed at a time in the products (see wino_gemm): 32 for F(3x3, 3x3) below 256 input channels
    (its error reached 1.3-2.1x the direct convolution's with 64 on strongly modulated 128-channel layers, 0.7-1.2x
    with 32, which is 7-22 % slower), else 64."""
    return 32 if size == 3 and channels_in < 256 else 64


def up_tile_size(x: torch.Tensor, weight: torch.Tensor) -> int:
    """The tile size ``conv_transpose3x3_up`` uses by default: 3 from 128 input channels and 64 px (1.07-1.12x faster
    than 2 on those of the backbone and the super-resolution), else 2. Its filters take twice the memory (49 slots
    instead of 25: 51 MB for a 512-channel layer), which the backbone's 16-32 px layers would pay for 1.06-1.17x on a
    few milliseconds. For the super-resolution's 32-channel first layer the measurements disagree (0.75x in one run,
    1.10-1.19x in later ones; benchmarks/RESULTS.md), so it keeps 2."""
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
    lib = library()
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
    post = (_ptr(scale_out), _ptr(b), _ptr(nz), slope, 0.0 if limit is None else float(limit))

    kc = products_run(size, i)

    def in_passes(v: torch.Tensor, m: torch.Tensor, parts: int) -> None:
        lib.wino_input(size, h, w, i, float_ptr(src), _ptr(scale_in), 0, th * tw, float_ptr(v))
        _products(v, u, m, slots, th * tw, i, o, parts, kc)
        lib.wino_output(size, h, w, o, float_ptr(m), *post, 0, th * tw, float_ptr(out))

    def fused(first: int, count: int, chunk: int, scratch: torch.Tensor) -> None:
        lib.wino_conv(size, kc, h, w, i, o, float_ptr(src), _ptr(scale_in), float_ptr(u), *post, first, count, chunk,
                      float_ptr(scratch), float_ptr(out))

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
    lib = library()
    _, i, h, w = x.shape
    o = weight.shape[0]
    size = size or up_tile_size(x, weight)
    th, tw = (h + size) // size, (w + size) // size
    slots = 49 if size == 3 else 25
    src = x.contiguous(memory_format=torch.channels_last)
    u, scale_in, scale_out = _prepare(lib.wino_up_weights, size, slots, weight, styles, demodulate, gain, cache)
    out = torch.empty(1, o, 2 * h + 1, 2 * w + 1, memory_format=torch.channels_last)

    def in_passes(v: torch.Tensor, m: torch.Tensor, parts: int) -> None:
        lib.wino_up_input(size, h, w, i, float_ptr(src), _ptr(scale_in), 0, th * tw, float_ptr(v))
        _products(v, u, m, slots, th * tw, i, o, parts)
        lib.wino_up_output(size, h, w, o, float_ptr(m), _ptr(scale_out), 0, th * tw, float_ptr(out))

    def fused(first: int, count: int, chunk: int, scratch: torch.Tensor) -> None:
        lib.wino_up_conv(size, h, w, i, o, float_ptr(src), _ptr(scale_in), float_ptr(u), _ptr(scale_out), first,
                         count, chunk, float_ptr(scratch), float_ptr(out))

    _run(th * tw, slots, i, o, in_passes, fused)
    return out


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    """``float_ptr``, None for None (a NULL argument)."""
    return None if t is None else float_ptr(t)


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
        transform(size, o, i, float_ptr(weight), o // 8 * k // parts * 8, o // 8 * (k + 1) // parts * 8, float_ptr(u))

    run_parts(run, parts)
    return u


def slot_buffer(slots: int, rows: int, channels: int) -> torch.Tensor:
    """An uninitialised buffer for transformed tiles or products [slots][rows][channels], the slots
    ``wino_slot_stride`` floats apart (a cache line more than their data; see winograd_kernel.c), flat."""
    return torch.empty(slots * library().wino_slot_stride(rows, channels))


def _products(v: torch.Tensor, u: torch.Tensor, m: torch.Tensor, slots: int, rows: int, i: int, o: int, parts: int,
              kc: int = 64) -> None:
    """m [slots, rows, o] = v [slots, rows, i] @ the packed filters u [slots, o * i] of each slot (v and m as
    ``slot_buffer`` lays them out; ``wino_gemm``, summing ``kc`` input channels at a time), the output channels split
    over ``parts`` threads (so that each reads only its share of the filters)."""
    panels = -(-o // 16)

    def run(k: int) -> None:
        n0, n1 = 16 * (panels * k // parts), min(o, 16 * (panels * (k + 1) // parts))
        library().wino_gemm(slots, rows, i, o, n0, n1, kc, float_ptr(v), float_ptr(u), float_ptr(m))

    run_parts(run, parts)


def chunk_tiles(tiles: int, slots: int, i: int, o: int, parts: int) -> int:
    """Tiles per chunk of the fused path: CHUNK_BYTES of transformed tiles and products, but at least as many tiles
    as channels (so that streaming the filters, which outgrow the caches at 512 channels, is paid by enough products)
    and at most a thread's share of the ``tiles``. Twice as many as channels was up to 1.5x slower for the 49-slot
    transposed convolutions (benchmarks/bench_winograd.py)."""
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
        stride = library().wino_slot_stride
        fused(first, last - first, chunk, torch.empty(slots * (stride(chunk, i) + stride(chunk, o))))

    run_parts(work, parts)
