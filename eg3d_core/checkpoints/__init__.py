"""Loading and saving generators. Formats are recognised by content, never by file name.

* official NVIDIA network pickles (``.pkl``): read by a restricted unpickler that runs nothing;
* MMagic ``.pth`` files: ``torch.load(weights_only=True)`` and a key mapping;
* our own format (``save_generator``): safetensors weights + JSON config with a format version.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ..config import GeneratorConfig
from ..errors import CheckpointError
from ..generator import Generator
from ..presets import PRESETS
from . import saved
from .guards import MIN_WEIGHT_BYTES, check_finite, regular_file_size
from .mmagic import config_from_mmagic, embedded_config, looks_like_torch_zip, read_mmagic
from .official import config_from_official, looks_like_pickle, read_official_pickle


def _demo_model() -> Path:
    """The bundled demo model's folder: inside the installed ``eg3d_assets`` package (the repository's ``assets/``)."""
    try:
        import eg3d_assets
    except ImportError:  # a checkout used without installing it: the repository's own folder
        return Path(__file__).resolve().parents[2] / "assets" / "demo"
    return Path(eg3d_assets.__file__).resolve().parent / "demo"


DEMO_MODEL = _demo_model()


def resolve_source(source: str | os.PathLike[str] | None) -> Path:
    """``None`` or ``"demo"`` -> the bundled demo model; anything else is a path."""
    if source is None or str(source) == "demo":
        if not (DEMO_MODEL / saved.WEIGHTS_FILE).is_file():
            raise CheckpointError(f"the bundled demo model is missing ({DEMO_MODEL}); reinstall or pass a checkpoint path")
        return DEMO_MODEL
    return Path(source)


def _build(state_dict: dict[str, torch.Tensor], config: GeneratorConfig, source: Path, device: str) -> Generator:
    """The generator of ``config`` holding ``state_dict``, checked before any real tensor is allocated.

    A config within its ranges can still ask for far more weights than the file holds, so the generator is first
    built on the meta device (shapes only, no memory): its weights' names and shapes must all be in the file, and
    their count must fit in the file's size. Weights must be finite: NaN or infinity only ever renders black."""
    size = regular_file_size(source)
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in Generator(config).state_dict().items()}
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{source}: unsupported generator config ({e})") from None
    missing = [k for k in shapes if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing {len(missing)} weight(s), e.g. {missing[0]!r}")
    for key, shape in shapes.items():
        if tuple(state_dict[key].shape) != shape:
            raise CheckpointError(f"{source}: weight {key!r} has shape {tuple(state_dict[key].shape)}, "
                                  f"expected {shape} for this config")
    count = sum(math.prod(shape) for shape in shapes.values())
    if count * MIN_WEIGHT_BYTES > size:
        raise CheckpointError(f"{source}: the config needs {count} weights, more than a {size}-byte file holds")
    check_finite(((k, state_dict[k]) for k in shapes), str(source))
    G = Generator(config)
    # Official-only constants (FIR filters, unused SR noise maps, dataset label statistics) are dropped here.
    G.load_state_dict({k: state_dict[k].float() for k in shapes})
    G.source = str(source)
    return G.to(device)


def detect_format(source: str | os.PathLike[str] | None) -> str:
    """``native``, ``mmagic`` or ``official`` from the file's content (a folder is our format)."""
    file = saved.weights_path(resolve_source(source))
    regular_file_size(file)  # a named pipe or a device would block or never end
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e.strerror or e}") from None
    if not head:
        raise CheckpointError(f"{file}: the file is empty")
    if saved.looks_like_safetensors(head):
        return "native"
    if looks_like_torch_zip(head):
        return "mmagic"
    if looks_like_pickle(head):
        return "official"
    raise CheckpointError(f"{file}: not a generator checkpoint (expected an EG3D .pkl, an MMagic .pth "
                          "or a folder saved by save_generator)")


def load_generator(source: str | os.PathLike[str] | None = "demo", device: str | torch.device = "cpu",
                   config: GeneratorConfig | str | None = None) -> Generator:
    """Load a generator from an official ``.pkl``, an MMagic ``.pth`` or our own format.

    ``config`` (a ``GeneratorConfig`` or a preset name) supplies the rendering settings of an MMagic
    file, which stores weights only; without it, a config this toolkit stored in the file's meta is used,
    else the released preset with the same super-resolution module. Other formats carry their config and
    ignore it. Raises ``CheckpointError``.
    """
    base = PRESETS[config] if isinstance(config, str) and config in PRESETS else config
    if isinstance(base, str):
        raise CheckpointError(f"unknown preset {base!r}; choose one of {', '.join(PRESETS)}")
    fmt = detect_format(source)
    file = saved.weights_path(resolve_source(source))
    if fmt == "native":
        state_dict, cfg, _ = saved.read(file)
    elif fmt == "mmagic":
        state_dict, arch = read_mmagic(file)
        own = embedded_config(file) if base is None else None
        cfg = config_from_mmagic(arch, base or own)
        if own is not None:
            # MMagic's layers never clamp, so config_from_mmagic drops the clamps; our own export knows them.
            clamps = {"sr_conv_clamp": own.sr_conv_clamp, "backbone_conv_clamp": own.backbone_conv_clamp}
            if cfg.replace(**clamps) != own:
                raise CheckpointError(f"{file}: the config stored in the file does not match its weights")
            cfg = own
    else:
        g = read_official_pickle(file)
        state_dict, cfg = g.state_dict, config_from_official(g)
    return _build(state_dict, cfg, file, str(device))


def save_generator(G: Generator, path: str | os.PathLike[str]) -> Path:
    """Write G in our format: folder ``path`` with ``model.safetensors`` + ``config.json``."""
    return saved.save(G.state_dict(), G.config, path)


__all__ = ["DEMO_MODEL", "detect_format", "load_generator", "resolve_source", "save_generator"]
