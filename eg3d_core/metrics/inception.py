"""The feature extractor FID is defined with: NVIDIA's TorchScript Inception-v3 (``inception-2015-12-05.pt``).

StyleGAN2-ADA, EG3D and MMagic ("StyleGAN" style) all use this one file: a TorchScript module called as
``net(images, return_features=True)`` with uint8-valued RGB images [N, 3, H, W] (any size; it resizes to
299 x 299 itself) that returns the 2048-d pool features [N, 2048]. The weights cannot be downloaded at run
time here, so the path is given (``--inception PATH`` or the ``EG3D_INCEPTION`` environment variable).

Why not torch-fidelity or pytorch-fid: both re-implement Inception-v3 and load their own state-dict files (not
this TorchScript file), and both require torchvision, which this project does not depend on. The network code
therefore comes from the file itself (``torch.jit.load``), which is exactly what the original metrics run.
TorchScript is a restricted language (no Python, no imports), unlike the pickles in checkpoints. torch 2.13 marks
``torch.jit.load`` as deprecated (a DeprecationWarning); it still loads the file, whose format is fixed by the
published network.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_ENV = "EG3D_INCEPTION"


class InceptionError(InputError):
    """The Inception network is missing or is not a usable TorchScript feature extractor."""


def how_to_get() -> str:
    return (f"download {INCEPTION_URL} (about 95 MB) on a machine with internet access and pass its path with "
            f"--inception PATH (or set {INCEPTION_ENV})")


def resolve_inception_path(path: str | os.PathLike[str] | None) -> Path:
    """The given path, else ``$EG3D_INCEPTION``; raises InceptionError (with how to get the file) if missing."""
    text = str(path) if path is not None else os.environ.get(INCEPTION_ENV, "")
    if not text:
        raise InceptionError(f"no Inception network given: {how_to_get()}")
    p = Path(text).expanduser()
    if not p.is_file():
        raise InceptionError(f"Inception network not found at {p}: {how_to_get()}")
    return p


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Inception:
    """A loaded feature extractor. ``features(images)``: uint8 [N, 3, H, W] -> float32 [N, D] (numpy)."""

    module: torch.jit.ScriptModule
    path: Path
    sha256: str
    device: torch.device
    dim: int

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"expected uint8 RGB images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        out = self.module(images.to(self.device), return_features=True)
        return out.detach().float().cpu().numpy()


def load_inception(path: str | os.PathLike[str] | None, device: str | torch.device = "cpu") -> Inception:
    """Load the TorchScript Inception (see the module docstring) and check it returns one feature row per image."""
    p = resolve_inception_path(path)
    device = torch.device(device)
    try:
        module = torch.jit.load(str(p), map_location=device).eval()
    except Exception as e:  # torch raises RuntimeError / ValueError / zip errors for non-TorchScript files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InceptionError(f"{p} is not a TorchScript network ({first}); {how_to_get()}") from None
    probe = torch.zeros(2, 3, 32, 32, dtype=torch.uint8, device=device)
    try:
        with torch.no_grad():
            out = module(probe, return_features=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InceptionError(f"{p} does not work as an Inception feature extractor "
                             f"(net(images, return_features=True) failed: {first})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InceptionError(f"{p}: expected features [N, D] from net(images, return_features=True), got {shape}")
    return Inception(module=module, path=p, sha256=file_sha256(p), device=device, dim=int(out.shape[1]))
