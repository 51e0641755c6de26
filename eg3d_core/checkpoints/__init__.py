"""Loading and saving generators. Formats are recognised by content, never by file name.

* official NVIDIA network pickles (``.pkl``): read by a restricted unpickler that runs nothing;
* MMagic ``.pth`` files: ``torch.load(weights_only=True)`` and a key mapping;
* our own format (``save_generator``): safetensors weights + JSON config with a format version.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import GeneratorConfig
from ..errors import CheckpointError
from ..generator import Generator
from ..presets import PRESETS
from . import native
from .mmagic import config_from_mmagic, looks_like_torch_zip, read_mmagic
from .official import config_from_official, looks_like_pickle, read_official_pickle

# The bundled demo model, shipped with the package.
DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo"


def resolve_source(source: str | os.PathLike[str] | None) -> Path:
    """``None`` or ``"demo"`` -> the bundled demo model; anything else is a path."""
    if source is None or str(source) == "demo":
        if not (DEMO_MODEL / native.WEIGHTS_FILE).is_file():
            raise CheckpointError(f"the bundled demo model is missing ({DEMO_MODEL}); reinstall or pass a checkpoint path")
        return DEMO_MODEL
    return Path(source)


def _build(state_dict: dict[str, torch.Tensor], config: GeneratorConfig, source: Path, device: str) -> Generator:
    try:
        G = Generator(config)
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: unsupported generator config ({e})") from None
    own = G.state_dict()
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing {len(missing)} weight(s), e.g. {missing[0]!r}")
    for key, target in own.items():
        if tuple(state_dict[key].shape) != tuple(target.shape):
            raise CheckpointError(f"{source}: weight {key!r} has shape {tuple(state_dict[key].shape)}, "
                                  f"expected {tuple(target.shape)} for this config")
    # Official-only constants (FIR filters, unused SR noise maps, dataset label statistics) are dropped here.
    G.load_state_dict({k: state_dict[k].float() for k in own})
    G.source = str(source)
    return G.to(device)


def load_generator(source: str | os.PathLike[str] | None = "demo", device: str | torch.device = "cpu",
                   config: GeneratorConfig | str | None = None) -> Generator:
    """Load a generator from an official ``.pkl``, an MMagic ``.pth`` or our own format.

    ``config`` (a ``GeneratorConfig`` or a preset name) supplies the rendering settings of an MMagic
    file, which stores weights only; without it, the released preset with the same super-resolution
    module is used. Other formats carry their config and ignore it. Raises ``CheckpointError``.
    """
    path = resolve_source(source)
    base = PRESETS[config] if isinstance(config, str) and config in PRESETS else config
    if isinstance(base, str):
        raise CheckpointError(f"unknown preset {base!r}; choose one of {', '.join(PRESETS)}")
    if path.is_dir():
        if not (path / native.WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{path}: a folder without {native.WEIGHTS_FILE}")
        file = path / native.WEIGHTS_FILE
    else:
        file = path
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(f"{file}: the file is empty")
    if native.looks_like_safetensors(head):
        state_dict, cfg, _ = native.read(file)
    elif looks_like_torch_zip(head):
        state_dict, arch = read_mmagic(file)
        cfg = config_from_mmagic(arch, base)
    elif looks_like_pickle(head):
        g = read_official_pickle(file)
        state_dict, cfg = g.state_dict, config_from_official(g)
    else:
        raise CheckpointError(f"{file}: not a generator checkpoint (expected an EG3D .pkl, an MMagic .pth "
                              "or a folder saved by save_generator)")
    return _build(state_dict, cfg, file, str(device))


def save_generator(G: Generator, path: str | os.PathLike[str]) -> Path:
    """Write G in our format: folder ``path`` with ``model.safetensors`` + ``config.json``."""
    return native.save(G.state_dict(), G.config, path)


__all__ = ["DEMO_MODEL", "load_generator", "resolve_source", "save_generator"]
