"""Small C kernels, compiled on first use with the system C compiler and loaded with ctypes.

Some stages are a dozen PyTorch operations that each stream a large tensor through memory; as one C loop they keep
their intermediates in registers and caches (benchmarks/RESULTS.md). A kernel is compiled into the cache folder
(``eg3d_core.runtime.cache_dir() / "native"``), keyed by its source, flags, defines and compiler, and calls release
the GIL. Without a C compiler, on CPUs other than x86-64 with AVX2/FMA, or with ``EG3D_NATIVE=0``, ``load`` returns
None and callers take their PyTorch path: the same results to float32 rounding (tested for every kernel).
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
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..runtime import cache_dir

FLAGS = ["-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-std=c99"]


def _compiler() -> str | None:
    """$CC if set (and only it), else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((shutil.which(name) for name in ("cc", "gcc", "clang") if shutil.which(name)), None)


def build(source: Path, defines: tuple[tuple[str, int], ...] = (), folder: Path | None = None) -> Path:
    """Compile ``source`` with ``-D name=value`` for each define (once per source, flags and compiler) -> the shared
    library's path. Raises OSError (no compiler, unwritable folder) or subprocess.CalledProcessError."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC)")
    flags = [*FLAGS, *(f"-D{name}={value}" for name, value in defines)]
    key = hashlib.sha256(source.read_bytes() + " ".join([cc, *flags, platform.machine()]).encode()).hexdigest()[:16]
    folder = folder or cache_dir() / "native"
    target = folder / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", prefix=f".{source.stem}-", dir=folder)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, str(source), "-o", tmp], check=True, capture_output=True, timeout=300)
        os.replace(tmp, target)  # atomic: concurrent builders (e.g. torchrun ranks) each publish a whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def supported() -> bool:
    """Whether kernels may be used here: x86-64 with AVX2 and FMA, and not switched off by ``EG3D_NATIVE=0``."""
    return (os.environ.get("EG3D_NATIVE", "1") != "0" and platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


@functools.cache
def load(source: Path, defines: tuple[tuple[str, int], ...] = ()) -> ctypes.CDLL | None:
    """The compiled ``source``, or None where kernels cannot be used (a failed build also warns once)."""
    if not supported():
        return None
    try:
        return ctypes.CDLL(str(build(source, defines)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = (getattr(e, "stderr", b"") or b"").decode(errors="replace")[:200]
        warnings.warn(f"compiled kernel {source.name} unavailable, using PyTorch ({e} {detail})", RuntimeWarning,
                      stacklevel=2)
        return None


def float32_cpu_inference(*tensors: torch.Tensor) -> bool:
    """Whether these tensors are float32 on the CPU, with no autograd to serve and no CPU autocast active: the case
    the CPU fast paths (compiled kernels, oneDNN's fused operations) are written for."""
    return (not torch.is_autocast_enabled("cpu")
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)))


def run_parts(fn: Callable[[int], None], parts: int) -> None:
    """fn(0), ..., fn(parts - 1): on ``parts`` threads when more than one (compiled kernels release the GIL), else
    here."""
    if parts <= 1:
        fn(0)
        return
    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(fn, range(parts)))


def float_ptr(t: torch.Tensor) -> ctypes.c_void_p:
    """The data pointer of a float32 tensor, for a ``float *`` argument."""
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_float))
