"""Memory a request needs, estimated before it runs, against the memory there is.

A request whose estimate is larger than the limit is refused up front with both figures (``require_memory``), instead
of running for minutes and then swapping, being killed or failing inside an allocator. The limit is ``$EG3D_MEMORY_LIMIT``
(bytes, or with a k/M/G/T suffix) when set, else a fraction of the memory available now: on a CUDA device the GPU's
free memory, else the system's available memory (and the cgroup's, inside a container).

The estimates follow what the code materialises at once:

* a volume render (``rendering.renderer.render_rays``) queries the field in chunks of rays, so per-point activations
  never exist for the whole image; what grows with the image is the feature image [N, R, C] (the chunks' results,
  their concatenation, the white background and [-1, 1] mapping, the [N, C, r, r] layout), and the memory the
  allocator keeps of the freed chunks, which grows with the number of field queries (rays x samples per ray);
* the super-resolution runs at its own input size (it resizes the render), so it costs the same at every neural
  rendering resolution: its widest activation at the output size, a few times over;
* a mesh holds [N, N, N] grids: the density (float32) and, coarse-to-fine, masks of evaluated voxels and of cells
  to refine; marching cubes reads the density grid again.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

    from .config import GeneratorConfig
    from .settings import RenderSettings

MEMORY_LIMIT_ENV = "EG3D_MEMORY_LIMIT"
# Share of the available memory one request may take: the rest is for the process itself, the page cache and
# whatever else runs.
AVAILABLE_FRACTION = 0.8

FLOAT = 4
# Copies of the [N, R, C] feature image alive at the renderer's peak (see the module docstring).
FEATURE_COPIES = 5
# Memory the renderer's process keeps per field query (a ray's coarse or importance sample) beyond the live tensors:
# glibc keeps the freed chunk intermediates of every worker thread in its heaps.
BYTES_PER_QUERY = 40
# Live activations of the super-resolution at its output size, in units of its widest activation.
SR_COPIES = 4
# Bytes per grid voxel of a mesh extraction: the float32 density and what marching cubes reads of it (dense); plus
# the coarse estimate and the bool masks (coarse-to-fine).
MESH_BYTES_PER_VOXEL = {"dense": 10, "coarse_to_fine": 16}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|b?)\s*$", re.IGNORECASE)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """``"6G"`` / ``"6GB"`` (10^9), ``"6GiB"`` (2^30), ``"512M"``, ``"123456"`` -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise InputError(f"{MEMORY_LIMIT_ENV} must be a size like 6G, 512M or a number of bytes, got {text!r}")
    unit = (1024 if m.group(3) else 1000) ** _POWERS[m.group(2).lower()] if m.group(2) else 1
    return int(float(m.group(1)) * unit)


def format_size(n: int) -> str:
    """Bytes as the messages show them: ``7.9 GB``, ``420 MB``, ``12 kB`` (powers of 1000)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{max(n, 0) / 1e3:.0f} kB"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What the cgroup (v2) of this process may still use, or None when it sets no limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def system_available() -> int:
    """Memory the system could give this process now (bytes): MemAvailable, bounded by the cgroup's limit."""
    figures = [f for f in (_meminfo_available(), _cgroup_available()) if f is not None]
    if not figures:
        try:
            figures.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 2**63 - 1  # unknown: refuse nothing rather than everything
    return min(figures)


def memory_limit(device: str | torch.device | None = None) -> int:
    """Bytes one request may need: ``$EG3D_MEMORY_LIMIT`` when set, else ``AVAILABLE_FRACTION`` of what is available
    on ``device`` (CUDA: the GPU's free memory; else the system's)."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if text:
        return parse_size(text)
    if device is not None and str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * AVAILABLE_FRACTION)
    return int(system_available() * AVAILABLE_FRACTION)


def render_bytes(config: GeneratorConfig, settings: RenderSettings, batch: int = 1) -> int:
    """Estimated peak bytes a render of ``batch`` images with ``settings`` adds to the process (beyond the model)."""
    r = settings.neural_rendering_resolution or config.rendering.neural_rendering_resolution
    coarse, fine = settings.depth_samples(config)
    rays = batch * r * r
    volume = rays * (config.decoder_output_dim + 2) * FLOAT * FEATURE_COPIES + rays * (coarse + fine) * BYTES_PER_QUERY
    sr = 0
    if settings.superres:
        sr = batch * config.img_resolution ** 2 * max(config.sr_channels) * FLOAT * SR_COPIES
    return volume + sr


def mesh_bytes(resolution: int, dense: bool = False) -> int:
    """Estimated peak bytes of a mesh (or density volume) extraction on a ``resolution``^3 grid."""
    return resolution ** 3 * MESH_BYTES_PER_VOXEL["dense" if dense else "coarse_to_fine"]


def require_memory(need: int, what: str, device: str | torch.device | None = None) -> None:
    """InputError ``"{what} needs about X GB, more than the Y GB available (set EG3D_MEMORY_LIMIT to override)"``
    when ``need`` is over ``memory_limit(device)``."""
    limit = memory_limit(device)
    if need <= limit:
        return
    if os.environ.get(MEMORY_LIMIT_ENV, "").strip():
        raise InputError(f"{what} needs about {format_size(need)}, more than {MEMORY_LIMIT_ENV}={format_size(limit)}")
    raise InputError(f"{what} needs about {format_size(need)}, more than the {format_size(limit)} available "
                     f"(set {MEMORY_LIMIT_ENV} to override)")


__all__ = ["MEMORY_LIMIT_ENV", "format_size", "memory_limit", "mesh_bytes", "parse_size", "render_bytes",
           "require_memory", "system_available"]
