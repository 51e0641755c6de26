"""The radiance field as one compiled loop (``field_kernel.c``), used for float32 CPU inference when it can be built.

Tri-plane lookup + decoder in PyTorch is a dozen operations, each streaming a [points, channels] tensor through
memory; the fused loop keeps a point's features in registers and is several times faster (benchmarks/RESULTS.md).
It is compiled on first use with the system C compiler into the cache folder (``eg3d_core.runtime.cache_dir()``),
keyed by the source, the flags and the compiler, and loaded with ctypes; calls release the GIL, so the renderer's
chunk workers run it in parallel. Without a C compiler, on CPUs without AVX2/FMA, with ``EG3D_NATIVE=0``, for
autograd, autocast, other devices or decoder sizes, the PyTorch path runs instead: same results to float32 rounding
(tested).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from ..runtime import cache_dir
from .triplane import PLANE_AXES, plane_table

SOURCE = Path(__file__).with_name("field_kernel.c")
FLAGS = ["-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-std=c99"]
# The decoder sizes of the kernel (every EG3D model's); tri-plane channels are a compile-time choice, multiple of 8.
HIDDEN, OUT = 64, 32
MAX_CHANNELS = 128
# Queries of at least twice this many points from the main thread run on several threads.
SPLIT_POINTS = 16384

_float_p = ctypes.POINTER(ctypes.c_float)


def _compiler() -> str | None:
    """$CC if set (and only it), else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((shutil.which(name) for name in ("cc", "gcc", "clang") if shutil.which(name)), None)


def build(channels: int = 32, folder: Path | None = None) -> Path:
    """Compile ``field_kernel.c`` for ``channels`` tri-plane channels (once per source, flags, compiler and channel
    count) -> path of the shared library.

    Raises OSError (no compiler, unwritable folder) or subprocess.CalledProcessError (compilation failed).
    """
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC)")
    source = SOURCE.read_bytes()
    flags = [*FLAGS, f"-DCH={channels}"]
    key = hashlib.sha256(source + " ".join([cc, *flags, platform.machine()]).encode()).hexdigest()[:16]
    folder = (folder or cache_dir() / "native")
    target = folder / f"field-c{channels}-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", prefix=".field-", dir=folder)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, str(SOURCE), "-o", tmp], check=True, capture_output=True, timeout=300)
        os.replace(tmp, target)  # atomic: concurrent builders (e.g. torchrun ranks) each publish a whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def library(channels: int = 32) -> ctypes.CDLL | None:
    """The kernel for ``channels`` tri-plane channels, or None where it cannot be used (see the module docstring).
    Built and loaded at most once per process and channel count."""
    if os.environ.get("EG3D_NATIVE", "1") == "0":
        return None
    if platform.machine().lower() not in ("x86_64", "amd64") or torch.backends.cpu.get_cpu_capability() not in (
            "AVX2", "AVX512") or channels % 8 or not 0 < channels <= MAX_CHANNELS:
        return None
    try:
        lib = ctypes.CDLL(str(build(channels)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        warnings.warn(f"compiled radiance field unavailable, using PyTorch ({e} {detail.decode(errors='replace')[:200]})",
                      RuntimeWarning, stacklevel=2)
        return None
    i64, f32 = ctypes.c_int64, ctypes.c_float
    lib.eg3d_field.argtypes = [i64, i64, i64, i64, _float_p, _float_p, i64, i64, f32, ctypes.POINTER(ctypes.c_int32),
                               _float_p, _float_p, _float_p, _float_p, _float_p, _float_p]
    lib.eg3d_field.restype = None
    return lib


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.cast(t.data_ptr(), _float_p)


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None = None) -> dict[str, torch.Tensor] | None:
    """The decoder's outputs at world points, through the compiled loop; None where it does not apply.

    coords [N, M, 3], planes [N, 3, C, H, W] (``table``: ``plane_table(planes)`` if already built) ->
    {"sigma": [N, M, 1], "rgb": [N, M, 32]}, as ``decoder(sample_planes(planes, coords, box_warp, table))``.
    """
    fc0, _, fc1 = decoder.net
    n, p, ch, h, w = planes.shape
    if (coords.device.type != "cpu" or planes.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
            or (fc0.weight.shape[0], fc1.weight.shape[0]) != (HIDDEN, 1 + OUT) or p != len(PLANE_AXES)
            or (torch.is_grad_enabled() and (coords.requires_grad or planes.requires_grad
                                             or any(q.requires_grad for q in decoder.parameters())))):
        return None
    lib = library(ch)
    if lib is None:
        return None
    table = (plane_table(planes) if table is None else table).contiguous()
    points = coords.float().contiguous()
    m = points.shape[1]
    w0, b0 = fc0.params(torch.float32)
    w1, b1 = fc1.params(torch.float32)
    w0t, w1t = w0.t().contiguous(), w1.t().contiguous()
    b0, b1 = b0.contiguous(), b1.contiguous()
    axes = torch.tensor([a for a, _ in PLANE_AXES] + [b for _, b in PLANE_AXES], dtype=torch.int32)
    sigma = torch.empty(n, m, 1)
    rgb = torch.empty(n, m, OUT)
    axes_p = ctypes.cast(axes.data_ptr(), ctypes.POINTER(ctypes.c_int32))
    scale = float(torch.tensor(2 / box_warp, dtype=torch.float32))

    def run(span: tuple[int, int]) -> None:
        lib.eg3d_field(n, m, span[0], span[1], _ptr(points), _ptr(table), h, w, scale, axes_p, _ptr(w0t), _ptr(b0),
                       _ptr(w1t), _ptr(b1), _ptr(sigma), _ptr(rgb))

    total = n * m
    # A large query from the main thread (mesh grids) is split over the intra-op threads; the renderer's chunk
    # workers call from their own threads, one chunk each, and already keep the cores busy.
    parts = torch.get_num_threads() if threading.current_thread() is threading.main_thread() else 1
    parts = max(1, min(parts, total // SPLIT_POINTS))
    bounds = [total * k // parts for k in range(parts + 1)]
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    if parts == 1:
        run(spans[0])
    else:
        with ThreadPoolExecutor(parts) as pool:
            list(pool.map(run, spans))
    return {"sigma": sigma, "rgb": rgb}
