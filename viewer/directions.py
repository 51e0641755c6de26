"""Principal directions of W (GANSpace): PCA of mapping outputs, computed once per model and cached on disk.

The cache key is a hash of the mapping network's weights (what the directions depend on), not of the file, so the
same model loaded from a ``.pkl``, a ``.pth`` or our folder shares one cache entry.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import eg3d_core
from eg3d_core.cameras import camera_defaults, conditioning
from eg3d_core.runtime import cache_dir

CACHE_VERSION = 1


@dataclass(frozen=True)
class Directions:
    """components: [K, w_dim] unit vectors, by decreasing variance; stds: [K] standard deviation of w along each."""

    components: torch.Tensor
    stds: torch.Tensor

    def __len__(self) -> int:
        return int(self.components.shape[0])

    def offset(self, amounts: tuple[float, ...]) -> torch.Tensor:
        """Sum of amount_i * std_i * component_i: [w_dim]. Extra amounts (from another model's sliders) are ignored."""
        k = min(len(amounts), len(self))
        a = torch.tensor(amounts[:k], dtype=torch.float32)
        return (a * self.stds[:k]) @ self.components[:k]


def default_cache_dir() -> Path:
    """``$EG3D_CACHE_DIR``, else ``$XDG_CACHE_HOME/eg3d_toolkit``, else ``~/.cache/eg3d_toolkit``."""
    return cache_dir()


def model_fingerprint(G: eg3d_core.Generator) -> str:
    h = hashlib.sha256()
    for name, t in sorted(G.backbone.mapping.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(repr(camera_defaults(G.config)).encode())  # conditioning camera used for the samples
    return h.hexdigest()[:24]


@torch.no_grad()
def compute_directions(G: eg3d_core.Generator, num_samples: int = 4000, num_components: int = 10,
                       seed: int = 0) -> Directions:
    """PCA of w = mapping(z, frontal conditioning) for ``num_samples`` random z (psi 1: the untruncated W)."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    c1 = conditioning(camera_defaults(G.config)).to(device)
    ws = []
    for start in range(0, num_samples, 1000):
        n = min(1000, num_samples - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        ws.append(G.mapping(z, c1.expand(n, -1))[:, 0].float().cpu())
    w = torch.cat(ws)
    w = w - w.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = min(num_components, vh.shape[0])
    comps = vh[:k]
    # SVD signs are arbitrary; fix them so the same model always gives the same slider directions.
    signs = torch.sign(comps[torch.arange(k), comps.abs().argmax(1)])
    return Directions(comps * signs[:, None], s[:k] / max(num_samples - 1, 1) ** 0.5)


def load_or_compute(G: eg3d_core.Generator, cache_dir: str | os.PathLike | None, num_samples: int = 4000,
                    num_components: int = 10) -> tuple[Directions, bool]:
    """Directions for G from the cache, computing (and caching) them if needed. Returns (directions, from_cache).

    A cache that cannot be read or written is ignored: directions are cheap enough to recompute.
    """
    path = None
    if cache_dir is not None:
        name = f"directions-v{CACHE_VERSION}-{model_fingerprint(G)}-{num_samples}-{num_components}.npz"
        path = Path(cache_dir) / name
        try:
            with np.load(path) as f:
                return Directions(torch.from_numpy(f["components"]), torch.from_numpy(f["stds"])), True
        except (OSError, KeyError, ValueError):
            pass
    d = compute_directions(G, num_samples, num_components)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, components=d.components.numpy(), stds=d.stds.numpy())
            os.replace(tmp, path)
        except OSError:
            pass
    return d, False
