"""Our own checkpoint format: a folder with ``model.safetensors`` and ``config.json``.

The safetensors metadata carries the same config JSON, so ``model.safetensors`` alone is enough to
load; ``config.json`` is there for people and tools that want to read the settings.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import GeneratorConfig
from ..errors import CheckpointError, OutputError
from ..fileio import atomic_folder, default_mode
from .guards import one_line, plain_data, regular_file_size

FORMAT_NAME = "eg3d-toolkit"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def looks_like_safetensors(head: bytes) -> bool:
    """A safetensors file starts with a little-endian u64 header length followed by a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and 0 < struct.unpack("<Q", head[:8])[0] < 100_000_000


def weights_path(path: str | os.PathLike[str]) -> Path:
    """The weights file of a checkpoint given as its folder or as the file itself."""
    p = Path(path)
    return p / WEIGHTS_FILE if p.is_dir() else p


def _document(config: GeneratorConfig, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config.to_dict(), **(extra or {})}


def save(state_dict: dict[str, torch.Tensor], config: GeneratorConfig, path: str | os.PathLike[str],
         extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint folder atomically (a temporary sibling folder renamed into place)."""
    out = Path(path)
    doc = _document(config, extra)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CheckpointError(f"cannot write {out}: folder {parent} does not exist")
    if out.exists() and not (out / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"cannot write {out}: it exists and is not a checkpoint folder")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    with atomic_folder(out, replace=True) as tmp:
        weights = tmp / WEIGHTS_FILE
        try:
            save_file(tensors, str(weights), metadata={"eg3d": json.dumps(doc)})
        except SafetensorError as e:  # its I/O errors (a full disk) come as this, not as OSError
            raise OutputError(f"cannot write {out}: {e}") from None
        config_file = tmp / CONFIG_FILE
        config_file.write_text(json.dumps(doc, indent=2) + "\n")
        for f in (weights, config_file):
            os.chmod(f, default_mode())
    return out


def read(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, Any]]:
    """Load (state dict, config, the whole metadata document) from a folder or its weights file."""
    file = weights_path(path)
    regular_file_size(file)  # a named pipe or a device would block or never end
    try:
        with open(file, "rb") as f:
            header_len = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(header_len))
        doc = json.loads(header.get("__metadata__", {}).get("eg3d", "null"))
    except (OSError, struct.error, ValueError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{file}: unreadable safetensors header ({one_line(str(e))})") from None
    except RecursionError:
        raise CheckpointError(f"{file}: unreadable safetensors header (nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{file}: a safetensors file without an eg3d-toolkit config (not saved by save_generator)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: format version {doc.get('format_version')} is not supported "
                              f"(this release reads version {FORMAT_VERSION})")
    try:
        config = GeneratorConfig.from_dict(plain_data(doc["config"], "the config"))
    except (KeyError, TypeError, ValueError, CheckpointError) as e:
        raise CheckpointError(f"{file}: invalid config ({one_line(str(e))})") from None
    try:
        state_dict = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: truncated or corrupt weights ({e})") from None
    return state_dict, config, doc
