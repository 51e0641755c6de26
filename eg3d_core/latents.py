"""Where a latent comes from, and the cache of its tri-planes: one seed -> ws path and one plane cache for every
front end.

* :class:`LatentSource`: a seed (z drawn like the original scripts, mapped with a conditioning camera and truncated)
  or ws given directly: read from an ``.npz`` file (``LatentSource.from_file``) or passed as a tensor (an optimised
  latent). ``source.ws(G)`` gives ws; ``source.key(num_ws)`` is hashable and equal for sources with equal ws.
* :func:`map_seeds`: the one seed -> ws mapping (a batch of seeds in one mapping pass).
* :class:`PlaneCache`: a small thread-safe LRU of (ws, tri-planes) keyed by (latent key, noise mode, precision), so a
  camera or quality change only re-renders.

Truncation has one meaning everywhere: ``psi`` pulls w towards the average; ``cutoff`` N truncates the first N ws,
None (the default) all of them, 0 none.
"""
from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import cameras
from .errors import InputError
from .fileio import atomic_file
from .generator import Generator
from .settings import RenderSettings
from .visualize import SEED_LIMIT, seed_to_z


def map_seeds(G: Generator, seeds: Sequence[int], conditioning: torch.Tensor, psi: float = 1.0,
              cutoff: int | None = None, device: str | torch.device | None = None) -> torch.Tensor:
    """Latents ws [N, num_ws, w_dim] of seeds, z drawn like the original (``RandomState(seed).randn``), mapped in one
    pass with ``conditioning`` [1, 25] or [N, 25]. ``cutoff`` N truncates the first N ws (clamped to num_ws), None
    all, 0 none."""
    device = generator_device(G) if device is None else device
    z = seed_to_z(list(seeds), G.z_dim).to(device)
    c = conditioning.to(device).expand(len(z), 25)
    with torch.no_grad():
        return G.mapping(z, c, psi, None if cutoff is None else min(cutoff, G.num_ws))


def generator_device(G: Generator) -> torch.device:
    return next(G.parameters()).device


def _digest(ws: torch.Tensor) -> str:
    array = np.ascontiguousarray(ws.detach().to("cpu", torch.float32).numpy())
    return hashlib.sha256(f"{list(array.shape)}".encode() + array.tobytes()).hexdigest()


@dataclass(frozen=True)
class LatentSource:
    """A latent: a seed with truncation (``psi``, ``cutoff``) mapped with a conditioning camera, or given ws.

    The conditioning camera is the model's default camera turned by (``cond_yaw``, ``cond_pitch``) radians, with
    focal ``cond_focal`` (None: the model's); the default is the frontal camera all original scripts use. Given ws
    (``from_file`` / ``from_ws``) are identified by ``digest``, the SHA-256 of their values; ``name`` says where
    they came from (a file name) for messages.
    """

    seed: int | None = None
    psi: float = 1.0
    cutoff: int | None = None
    cond_yaw: float = 0.0
    cond_pitch: float = 0.0
    cond_focal: float | None = None
    digest: str | None = None
    name: str | None = None
    given: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.seed is None) == (self.given is None):
            raise InputError("a latent is either a seed or given ws, not both or neither")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < SEED_LIMIT):
            raise InputError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if not math.isfinite(self.psi):
            raise InputError(f"truncation psi must be a finite number, got {self.psi!r}")
        if self.cutoff is not None and (isinstance(self.cutoff, bool) or not isinstance(self.cutoff, int)
                                        or self.cutoff < 0):
            raise InputError(f"truncation cutoff must be an integer >= 0 (or None: all ws), got {self.cutoff!r}")

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def from_ws(cls, ws: torch.Tensor, name: str | None = None) -> LatentSource:
        """Given latents ws [N, num_ws, w_dim] (N = 1 for one latent), e.g. optimised ones."""
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or not ws.is_floating_point():
            shape = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise InputError(f"{name or 'ws'}: ws must be a float tensor [N, num_ws, w_dim], got {shape}")
        ws = ws.detach()
        return cls(digest=_digest(ws), name=name, given=ws)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LatentSource:
        """ws read from an ``.npz`` file holding ``ws`` [1, num_ws, w_dim] float32 (as :func:`save_ws` writes)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such latent file")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "ws" not in data.files:
                    found = ", ".join(data.files) or "nothing"
                    raise InputError(f"{path}: no 'ws' array in the file (found {found})")
                ws = data["ws"]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{path}: not a readable .npz latent file ({' '.join(str(e).split()) or type(e).__name__})"
                             ) from None
        if ws.dtype != np.float32:
            raise InputError(f"{path}: ws must be float32, got {ws.dtype}")
        if ws.ndim != 3 or ws.shape[0] != 1:
            raise InputError(f"{path}: ws must have shape [1, num_ws, w_dim], got {list(ws.shape)}")
        if not np.isfinite(ws).all():
            raise InputError(f"{path}: ws holds NaN or infinite values")
        return cls.from_ws(torch.from_numpy(ws), name=str(path))

    # -- use -------------------------------------------------------------------------------------------------------

    def key(self, num_ws: int) -> Hashable:
        """Hashable; equal for two sources that give the same ws on a model with ``num_ws`` ws (psi 1 or cutoff 0:
        no truncation, whatever the other; a cutoff of num_ws or more is the same as None)."""
        if self.seed is None:
            return ("ws", self.digest)
        psi, cutoff = self.psi, self.cutoff
        if cutoff is not None and cutoff >= num_ws:
            cutoff = None
        if psi == 1.0 or cutoff == 0:
            psi, cutoff = 1.0, None
        return ("seed", self.seed, round(psi, 6), cutoff, self.cond_yaw, self.cond_pitch, self.cond_focal)

    def conditioning(self, G: Generator) -> torch.Tensor:
        """The conditioning camera [1, 25] a seed is mapped with."""
        return cameras.camera(cameras.camera_defaults(G.config), yaw=self.cond_yaw, pitch=self.cond_pitch,
                              focal=self.cond_focal)

    def ws(self, G: Generator, device: str | torch.device | None = None) -> torch.Tensor:
        """Latents ws [N, num_ws, w_dim] (N = 1 except for given batches) on ``device`` (default: G's)."""
        device = generator_device(G) if device is None else device
        if self.given is None:
            assert self.seed is not None
            return map_seeds(G, [self.seed], self.conditioning(G), self.psi, self.cutoff, device)
        n, num_ws, w_dim = self.given.shape
        if (num_ws, w_dim) != (G.num_ws, G.w_dim):
            raise InputError(f"{self.name or 'ws'}: {num_ws} ws of {w_dim} values, but the model takes {G.num_ws} "
                             f"ws of {G.w_dim}")
        return self.given.to(device=device, dtype=torch.float32)

    @property
    def label(self) -> str:
        """A short description for file names and messages: ``seed12`` or the file's stem."""
        if self.seed is not None:
            return f"seed{self.seed}"
        return Path(self.name).stem if self.name else f"ws-{(self.digest or '')[:8]}"


def save_ws(ws: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write latents ws [1, num_ws, w_dim] as an ``.npz`` with one float32 array ``ws`` (``LatentSource.from_file``
    reads it), atomically."""
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise InputError(f"save_ws takes one latent ws [1, num_ws, w_dim], got {list(ws.shape)}")
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ws=ws.detach().to("cpu", torch.float32).numpy())
    return path


# ----------------------------------------------------------------------------------------------------------------------
# The plane cache


class CachedPlanes:
    """A latent's ws [N, num_ws, w_dim] and its tri-planes [N, 3, C, H, W] (float32), with average-pooled copies of
    the planes made on demand (previews may sample coarser planes) and kept as long as the entry."""

    def __init__(self, ws: torch.Tensor, planes: torch.Tensor) -> None:
        self.ws, self.planes = ws, planes
        self._pooled: dict[int, torch.Tensor] = {1: planes}

    def pooled(self, scale: int) -> torch.Tensor:
        """The planes average-pooled by ``scale`` (1: the planes themselves): [N, 3, C, H / scale, W / scale]."""
        if scale not in self._pooled:
            n, p, ch, h, w = self.planes.shape
            pooled = F.avg_pool2d(self.planes.reshape(n * p, ch, h, w), scale)
            self._pooled[scale] = pooled.reshape(n, p, ch, *pooled.shape[-2:]).contiguous()
        return self._pooled[scale]


class PlaneCache:
    """Tri-planes of the last ``size`` latents of one generator, keyed by (latent key, noise mode, precision).

    Thread-safe: lookups and insertions hold a lock, the backbone runs outside it (a render of another, cached latent
    is not held up; two requests for the same new latent at once may both compute it, which is harmless).
    """

    def __init__(self, G: Generator, size: int = 8) -> None:
        if size < 1:
            raise InputError(f"plane cache size must be >= 1, got {size}")
        self.G, self.size = G, size
        self.hits = self.misses = 0
        self._entries: OrderedDict[Hashable, CachedPlanes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, key: Hashable, make_ws: Callable[[], torch.Tensor], noise_mode: str, precision: str,
            timings: dict[str, float] | None = None) -> tuple[CachedPlanes, bool]:
        """(entry, from the cache) for the latent ``key``; on a miss ws = ``make_ws()`` and the backbone runs.

        ``timings`` (when given) receives ``mapping`` and ``backbone`` in milliseconds (0 on a hit).
        """
        full_key = (key, noise_mode, precision)
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None:
                self._entries.move_to_end(full_key)
                self.hits += 1
            else:
                self.misses += 1
        if entry is not None:
            if timings is not None:
                timings.update(mapping=0.0, backbone=0.0)
            return entry, True
        t0 = time.perf_counter()
        with torch.no_grad():
            ws = make_ws()
            self._sync(ws, timings)
            t1 = time.perf_counter()
            planes = self.G.planes(ws, noise_mode, precision)
            self._sync(planes, timings)
        if timings is not None:
            timings.update(mapping=(t1 - t0) * 1e3, backbone=(time.perf_counter() - t1) * 1e3)
        entry = CachedPlanes(ws, planes)
        with self._lock:
            self._entries[full_key] = entry
            self._entries.move_to_end(full_key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry, False

    def latent(self, source: LatentSource, settings: RenderSettings,
               timings: dict[str, float] | None = None) -> tuple[CachedPlanes, bool]:
        """(entry, from the cache) of a latent source under the settings' noise mode and precision."""
        return self.get(source.key(self.G.num_ws), lambda: source.ws(self.G), settings.noise_mode, settings.precision,
                        timings)

    @staticmethod
    def _sync(x: torch.Tensor, timings: dict[str, float] | None) -> None:
        if timings is not None and x.device.type == "cuda":  # timed stages must have finished
            torch.cuda.synchronize(x.device)


__all__ = ["CachedPlanes", "LatentSource", "PlaneCache", "generator_device", "map_seeds", "save_ws"]
