"""Small C kernels, compiled on first use with the system C compiler and loaded with ctypes, behind typed bindings.

Some stages are a dozen PyTorch operations that each stream a large tensor through memory; as one C loop they keep
their intermediates in registers and caches. A kernel is compiled into the cache folder
(``eg3d_core.runtime.cache_dir() / "native"``), keyed by its source, flags, defines and compiler, and calls release
the GIL. Without a C compiler, on CPUs other than x86-64 with AVX2/FMA, or with ``EG3D_NATIVE=0``, ``load`` returns
None and the CPU backend (``kernels.cpu``) leaves those operations to the reference PyTorch code.

Every exported C function is declared once, as a ``Function``: its name, its parameters by name and type (a ctypes
scalar, or a ``Tensor`` pointer parameter) and what it returns. ``Library`` binds such a table to a loaded library;
a bound function checks each tensor argument (dtype, CPU, memory layout) before it takes its pointer, and turns the
kernels' status codes into exceptions (a failed allocation: MemoryError).
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ..runtime import cache_dir

FLAGS = ["-O3", "-mavx2", "-mfma", "-fPIC", "-shared", "-std=c99"]

# Scalar parameter types of the kernels.
I64, F32 = ctypes.c_int64, ctypes.c_float


@dataclass(frozen=True)
class Tensor:
    """A pointer parameter: a CPU tensor of ``dtype`` whose memory is dense in the order the kernel reads it: C order
    (``contiguous``), or for a 4-D image channels-last ([N][H][W][C]); None (a NULL pointer) only if ``optional``."""

    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    optional: bool = False

    def check(self, function: str, name: str, t: torch.Tensor | None) -> int:
        """The address of t's data, after checking it; raises TypeError or ValueError naming the parameter."""
        if t is None:
            if self.optional:
                return 0
            raise TypeError(f"{function}: {name} is required, got None")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{function}: {name} must be a tensor, got {type(t).__name__}")
        if t.dtype != self.dtype or t.device.type != "cpu":
            raise ValueError(f"{function}: {name} must be a {self.dtype} CPU tensor, got {t.dtype} on {t.device}")
        dense = (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)) if self.channels_last \
            else t.is_contiguous()
        if not dense:
            layout = "a channels-last 4-D image" if self.channels_last else "contiguous"
            raise ValueError(f"{function}: {name} must be {layout}, got shape {list(t.shape)} strides {t.stride()}")
        return t.data_ptr()


FLOATS = Tensor()
OPTIONAL_FLOATS = Tensor(optional=True)
IMAGE = Tensor(channels_last=True)
INTS = Tensor(torch.int32)
# What a function returns: nothing, an int64, or a status (0: done; otherwise its buffers could not be allocated).
STATUS = "status"


@dataclass(frozen=True)
class Function:
    """One exported C function: ``name``, its parameters in order as (name, type) pairs (ctypes scalars or
    ``Tensor``), and what it returns (None, ``I64`` or ``STATUS``)."""

    name: str
    params: tuple[tuple[str, type | Tensor], ...]
    returns: type | str | None = None

    def bind(self, lib: ctypes.CDLL) -> Callable:
        """The function of ``lib``, called with the parameters in order (tensors for pointer parameters)."""
        fn = getattr(lib, self.name)
        fn.argtypes = [ctypes.c_void_p if isinstance(t, Tensor) else t for _, t in self.params]
        fn.restype = ctypes.c_int if self.returns == STATUS else self.returns
        checks = [(i, name, t) for i, (name, t) in enumerate(self.params) if isinstance(t, Tensor)]
        count, name, status = len(self.params), self.name, self.returns == STATUS

        def call(*args: object) -> object:
            if len(args) != count:
                raise TypeError(f"{name} takes {count} arguments ({', '.join(p for p, _ in self.params)}), "
                                f"got {len(args)}")
            args = list(args)
            for i, param, kind in checks:
                args[i] = kind.check(name, param, args[i])
            result = fn(*args)
            if status:
                if result:
                    raise MemoryError(f"{name}: its work buffers could not be allocated")
                return None
            return result

        call.__name__ = call.__qualname__ = name
        call.__doc__ = f"{name}({', '.join(p for p, _ in self.params)})"
        return call


class Library:
    """A loaded kernel library: each ``Function`` of the table as an attribute of the same name."""

    def __init__(self, lib: ctypes.CDLL, functions: Sequence[Function]) -> None:
        for f in functions:
            setattr(self, f.name, f.bind(lib))


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
    the CPU backend's fast paths (compiled kernels, oneDNN's fused operations) are written for."""
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


def library(source: Path, functions: Sequence[Function], defines: tuple[tuple[str, int], ...] = ()) -> Library | None:
    """The compiled ``source`` with ``functions`` bound (``Library``), or None where kernels cannot be used."""
    lib = load(source, defines)
    return None if lib is None else Library(lib, functions)
