"""Model loading for the command-line tools, checkpoint conversion, and model summaries.

``load_model`` adds two things to ``checkpoints.load_generator``:

* ``config`` may be a preset name, one of our JSON configs (``GeneratorConfig.to_dict`` layout, or the
  ``config.json`` of a saved model) or an MMagic config ``.py`` (read as data, never run);
* an MMagic ``.pth`` written by this toolkit carries our full config in its ``meta`` (``write_mmagic``); it is
  used when no config is given, so that pkl -> mmagic -> native keeps every setting (renderer, SR clamp).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints import detect_format, load_generator, resolve_source, save_generator
from ..checkpoints import saved as native_format
from ..checkpoints.mmagic import embedded_config, parse_mmagic_config, write_mmagic
from ..config import GeneratorConfig
from ..errors import CheckpointError, InputError, OutputError
from ..generator import Generator
from ..presets import PRESETS

FORMATS = ("native", "mmagic", "official")
# Fields a converted MMagic file cannot carry (MMagic's layers never clamp): ignored when matching presets.
_CLAMP_FIELDS = {"sr_conv_clamp": None, "backbone_conv_clamp": None}


def resolve_config(spec: str | os.PathLike[str] | None) -> GeneratorConfig | None:
    """A preset name, a ``.json`` config or an MMagic ``.py`` config -> GeneratorConfig (None -> None)."""
    if spec is None:
        return None
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix == ".py":
        return parse_mmagic_config(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
        except ValueError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None
        # The config.json of a saved model wraps the config in a document with the format name.
        if isinstance(data, dict) and data.get("format") == native_format.FORMAT_NAME and "config" in data:
            data = data["config"]
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: a config must be a JSON object")
        try:
            return GeneratorConfig.from_dict(data)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: invalid config ({e})") from None
    raise CheckpointError(f"unknown config {text!r}: give a preset ({', '.join(PRESETS)}), a .json or an MMagic .py file")


@dataclass
class LoadedModel:
    """A generator with where it came from: ``format`` of the file, ``notes`` worth telling the user."""

    G: Generator
    format: str
    notes: list[str]


def load_model(source: str | os.PathLike[str] | None = "demo", config: GeneratorConfig | str | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """``load_generator`` with a config given as preset, JSON or MMagic ``.py``, plus notes for the user.

    The config matters for an MMagic ``.pth`` only (it stores weights, not renderer settings); other formats
    carry their own config, and a given one is ignored with a note.
    """
    cfg = resolve_config(config) if isinstance(config, (str, os.PathLike)) else config
    fmt = detect_format(source)
    notes: list[str] = []
    if fmt != "mmagic":
        if cfg is not None:
            notes.append(f"the {fmt} checkpoint carries its own config; the given config is not used for the generator")
        return LoadedModel(load_generator(source, device), fmt, notes)
    G = load_generator(source, device, cfg)
    if cfg is None and embedded_config(native_format.weights_path(resolve_source(source))) is None:
        notes.append(f"{Path(G.source).name} stores no renderer settings: using the {G.config.sr_module} preset's "
                     "(pass a config to choose)")
    return LoadedModel(G, fmt, notes)


def matching_presets(config: GeneratorConfig) -> list[str]:
    """Presets whose settings equal ``config`` (activation clamps ignored: an MMagic file cannot carry them)."""
    mine = config.replace(**_CLAMP_FIELDS)
    return [name for name, preset in PRESETS.items() if preset.replace(**_CLAMP_FIELDS) == mine]


def summary(G: Generator, fmt: str | None = None) -> list[str]:
    """Human-readable lines describing a model."""
    c, r = G.config, G.config.rendering
    presets = matching_presets(c)
    lines = []
    if fmt is not None:
        lines.append(f"source format: {fmt}")
    lines += [
        f"preset: {', '.join(presets) if presets else 'none (custom settings)'}",
        f"image resolution: {c.img_resolution} (super-resolution {c.sr_module}, channels {c.sr_channels[0]}/{c.sr_channels[1]})",
        f"neural rendering resolution: {r.neural_rendering_resolution} "
        f"(depth samples {r.depth_resolution} + {r.depth_resolution_importance})",
        f"mapping: z {c.z_dim}, w {c.w_dim}, {c.mapping_layers} layers; tri-planes {c.triplane_channels} x "
        f"{c.triplane_resolution}^2",
        f"parameters: {sum(p.numel() for p in G.parameters()):,}",
    ]
    return lines


def convert_checkpoint(source: str | os.PathLike[str] | None, target: str | os.PathLike[str], to: str | None = None,
                       config: GeneratorConfig | str | None = None) -> tuple[LoadedModel, str, Path]:
    """Convert any supported checkpoint to our format (a folder) or to an MMagic ``.pth``.

    ``to`` None picks ``mmagic`` for a ``.pth`` target and ``native`` otherwise. Returns (loaded model, target
    format, written path). Both writers are atomic.
    """
    target = Path(target)
    if to is None:
        to = "mmagic" if target.suffix == ".pth" else "native"
    if to not in ("native", "mmagic"):
        raise InputError(f"can convert to 'native' or 'mmagic', not {to!r}")
    loaded = load_model(source, config)
    if to == "native":
        if target.suffix in (".pth", ".pkl", ".safetensors"):
            raise InputError(f"{target}: our format is a folder; give a folder name (or --to mmagic for a .pth)")
        save_generator(loaded.G, target)
    else:
        if not target.parent.is_dir():
            raise OutputError(f"cannot write {target}: folder {target.parent} does not exist")
        write_mmagic(loaded.G.state_dict(), loaded.G.config, target)
    return loaded, to, target


__all__ = ["FORMATS", "LoadedModel", "convert_checkpoint", "detect_format", "embedded_config", "load_model",
           "matching_presets", "resolve_config", "summary"]
