"""MMagic 1.2.0 EG3D checkpoints (``.pth``) and configs (``.py``), read and written without running code.

MMagic's converted EG3D releases hold the official ``G_ema`` weights under MMagic's own module names
(``generator.backbone.convs.3.conv.weight_orig`` ...). Its equalised-lr convention stores the same raw
weights as the official code, so converting is renames and reshapes only, never value rescaling.

Both directions are driven by one table, :func:`_layout`, built from the architecture: it lists every
MMagic tensor in the order MMagic's ``state_dict()`` produces it, its official counterpart (``None`` for
MMagic's constant blur/upsample kernels) and both shapes. Each official/MMagic pair holds the same number
of elements, so a conversion is a checked ``reshape``.

Configs are Python files; they are parsed with :mod:`ast` and evaluated as literals only (``dict(...)``,
lists, numbers, strings, simple arithmetic, names bound earlier in the file). Nothing is imported or run.
"""
from __future__ import annotations

import ast
import copy
import io
import math
import os
import re
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypedDict

import torch

from ..config import SR_INPUT_RESOLUTION, GeneratorConfig, RenderingConfig
from ..errors import CheckpointError
from ..fileio import atomic_file
from ..presets import PRESETS
from .guards import check_tensor_views, plain_data, regular_file_size, weights_only_failure

PathArg = str | os.PathLike[str]

TORCH_ZIP_MAGIC = b"PK\x03\x04"

# MMagic's blur (modulated conv with upsampling) and skip-upsample kernels: the normalised outer product of
# [1, 3, 3, 1] times factor**2 = 4. They are constant buffers, so they are dropped on read and rebuilt on write.
_BLUR_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0])
MMAGIC_KERNEL = torch.outer(_BLUR_TAPS, _BLUR_TAPS) / 64.0 * 4.0

# The official released model each SR layout came from; supplies rendering settings a .pth does not carry.
PRESET_FOR_SR = {"8XDC": "ffhq512-128", "8X": "afhqcats512-128", "2X": "shapenetcars128-64"}

# Official tensors MMagic has no slot for: FIR filters (constants), the SR's stored noise (MMagic's SR draws
# noise or none) and the dataset label statistics. They are allowed, and lost, when writing.
_OFFICIAL_ONLY = re.compile(r"(^|\.)resample_filter$|^superresolution\.block\d+\.conv\d+\.noise_const$|^dataset_label_std$")

# MMagic's backbone width table is fixed (512 up to 64x64, 256 at 128, 128 at 256) = official 32768 / 512.
MMAGIC_CHANNEL_BASE = 32768
MMAGIC_CHANNEL_MAX = 512

_MAX_CONFIG_BYTES = 1 << 20
_MAX_BASE_DEPTH = 8


class MMagicArch(TypedDict):
    """Architecture inferred from an MMagic generator state dict (what the weights alone determine)."""

    z_dim: int
    w_dim: int
    c_dim: int
    mapping_layers: int
    img_resolution: int
    sr_module: str
    sr_channels: tuple[int, int]
    channel_base: int
    channel_max: int
    triplane_resolution: int
    triplane_channels: int
    decoder_hidden: int
    decoder_output_dim: int
    # Whether the pose conditioning is zeroed is not visible in the weights.
    zero_cond: bool | None


@dataclass(frozen=True)
class _Entry:
    mmagic: str                          # key without the 'generator.' prefix
    official: str | None                 # None: MMagic-only constant kernel
    mmagic_shape: tuple[int, ...]
    official_shape: tuple[int, ...] | None


# --------------------------------------------------------------------------------------------------------------
# Layout table


def _widths(arch: MMagicArch) -> dict[int, int]:
    """Backbone width per block resolution, StyleGAN2's ``min(channel_base // res, channel_max)``."""
    log2 = arch["triplane_resolution"].bit_length() - 1
    return {2**i: min(arch["channel_base"] // 2**i, arch["channel_max"]) for i in range(2, log2 + 1)}


def _layout(arch: MMagicArch) -> list[_Entry]:
    """Every MMagic generator tensor, in MMagic's state_dict order, with its official name and shapes."""
    entries: list[_Entry] = []
    w_dim = arch["w_dim"]

    def add(m: str, o: str | None, mshape: tuple[int, ...], oshape: tuple[int, ...] | None = None) -> None:
        entries.append(_Entry(m, o, mshape, oshape))

    def layer(m: str, o: str, cin: int, cout: int, up: bool) -> None:
        # Modulated 3x3 conv + noise + bias/lrelu. MMagic keeps a leading 1 on the weight and a (1,) noise strength.
        add(f"{m}.conv.weight_orig", f"{o}.weight", (1, cout, cin, 3, 3), (cout, cin, 3, 3))
        add(f"{m}.conv.style_modulation.bias", f"{o}.affine.bias", (cin,), (cin,))
        add(f"{m}.conv.style_modulation.linear.weight_orig", f"{o}.affine.weight", (cin, w_dim), (cin, w_dim))
        if up:
            add(f"{m}.conv.blur.kernel", None, (4, 4))
        add(f"{m}.noise_injector.weight", f"{o}.noise_strength", (1,), ())
        add(f"{m}.activate.bias", f"{o}.bias", (cout,), (cout,))

    def torgb(m: str, o: str, cin: int, cout: int, up: bool) -> None:
        add(f"{m}.bias", f"{o}.bias", (1, cout, 1, 1), (cout,))
        if up:
            add(f"{m}.upsample.kernel", None, (4, 4))
        add(f"{m}.conv.weight_orig", f"{o}.weight", (1, cout, cin, 1, 1), (cout, cin, 1, 1))
        add(f"{m}.conv.style_modulation.bias", f"{o}.affine.bias", (cin,), (cin,))
        add(f"{m}.conv.style_modulation.linear.weight_orig", f"{o}.affine.weight", (cin, w_dim), (cin, w_dim))

    widths = _widths(arch)
    resolutions = sorted(r for r in widths if r > 4)
    planes = 3 * arch["triplane_channels"]
    syn = "backbone.synthesis"

    # Noise buffers come first: MMagic registers them on the backbone before its submodules.
    add("backbone.injected_noise_0", f"{syn}.b4.conv1.noise_const", (1, 1, 4, 4), (4, 4))
    for j in range(1, 2 * len(resolutions) + 1):
        r = 2 ** ((j + 1) // 2 + 2)
        add(f"backbone.injected_noise_{j}", f"{syn}.b{r}.conv{(j + 1) % 2}.noise_const", (1, 1, r, r), (r, r))
    add("backbone.w_avg", "backbone.mapping.w_avg", (w_dim,), (w_dim,))

    # Mapping. MMagic's style_mapping has no leading PixelNorm when conditioned, so indices match fc{i}.
    c_dim, z_dim = arch["c_dim"], arch["z_dim"]
    add("backbone.embed.bias", "backbone.mapping.embed.bias", (w_dim,), (w_dim,))
    add("backbone.embed.linear.weight_orig", "backbone.mapping.embed.weight", (w_dim, c_dim), (w_dim, c_dim))
    for i in range(arch["mapping_layers"]):
        fan_in = z_dim + w_dim if i == 0 else w_dim
        add(f"backbone.style_mapping.{i}.bias", f"backbone.mapping.fc{i}.bias", (w_dim,), (w_dim,))
        add(f"backbone.style_mapping.{i}.linear.weight_orig", f"backbone.mapping.fc{i}.weight",
            (w_dim, fan_in), (w_dim, fan_in))

    # Synthesis: the 4x4 stage, then all convs, then all to_rgbs (MMagic's ModuleList order).
    w4 = widths[4]
    add("backbone.constant_input.input", f"{syn}.b4.const", (1, w4, 4, 4), (w4, 4, 4))
    layer("backbone.conv1", f"{syn}.b4.conv1", w4, w4, up=False)
    torgb("backbone.to_rgb1", f"{syn}.b4.torgb", w4, planes, up=False)
    for k, r in enumerate(resolutions):
        layer(f"backbone.convs.{2 * k}", f"{syn}.b{r}.conv0", widths[r // 2], widths[r], up=True)
        layer(f"backbone.convs.{2 * k + 1}", f"{syn}.b{r}.conv1", widths[r], widths[r], up=False)
    for k, r in enumerate(resolutions):
        torgb(f"backbone.to_rgbs.{k}", f"{syn}.b{r}.torgb", widths[r], planes, up=True)

    # Decoder: MMagic uses the official FullyConnectedLayer naming unchanged.
    hidden, feat = arch["decoder_hidden"], arch["decoder_output_dim"]
    for m, shape in (("net.0.weight", (hidden, arch["triplane_channels"])), ("net.0.bias", (hidden,)),
                     ("net.2.weight", (feat + 1, hidden)), ("net.2.bias", (feat + 1,))):
        add(f"renderer.decoder.{m}", f"decoder.{m}", shape, shape)

    # Super-resolution: block0 upsamples only in the 8X family; block1 always does.
    c0, c1 = arch["sr_channels"]
    up0 = arch["sr_module"] in ("8X", "8XDC")
    sr, osr = "sr_model", "superresolution"
    layer(f"{sr}.block0.conv0", f"{osr}.block0.conv0", feat, c0, up=up0)
    layer(f"{sr}.block0.conv1", f"{osr}.block0.conv1", c0, c0, up=False)
    torgb(f"{sr}.block0.to_rgb", f"{osr}.block0.torgb", c0, 3, up=up0)
    layer(f"{sr}.block1.conv0", f"{osr}.block1.conv0", c0, c1, up=True)
    layer(f"{sr}.block1.conv1", f"{osr}.block1.conv1", c1, c1, up=False)
    torgb(f"{sr}.block1.to_rgb", f"{osr}.block1.torgb", c1, 3, up=True)
    return entries


# --------------------------------------------------------------------------------------------------------------
# Checkpoint reading


def looks_like_torch_zip(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts like a zip archive, the format of ``torch.save``."""
    return head[:4] == TORCH_ZIP_MAGIC


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    """Shape of a tensor the architecture is inferred from, with a readable error when absent or malformed."""
    if key not in sd:
        raise CheckpointError(f"MMagic generator state dict lacks 'generator.{key}'")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"tensor 'generator.{key}' has shape {shape}, expected {ndim} dimensions")
    return shape


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    """Number of consecutive indices i = 0, 1, ... for which ``pattern.format(i)`` is a key."""
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def infer_channel_base_max(widths: Mapping[int, int]) -> tuple[int, int]:
    """The smallest ``channel_base`` and ``channel_max`` for which ``min(base // res, max)`` gives every width.

    The 4x4 block is the widest, so it fixes ``channel_max``. A block narrower than that is unclamped and
    pins ``base // res``; a block at the maximum only bounds ``base`` from below.
    """
    cmax = widths[4]
    lo, hi = 0, math.inf
    for res, width in widths.items():
        if width <= 0 or width > cmax:
            raise CheckpointError(f"backbone width {width} at {res}x{res} does not follow a StyleGAN2 width table")
        if width == cmax:
            lo = max(lo, cmax * res)
        else:
            lo, hi = max(lo, width * res), min(hi, (width + 1) * res - 1)
    if lo > hi or any(min(lo // r, cmax) != w for r, w in widths.items()):
        table = ", ".join(f"{r}:{w}" for r, w in sorted(widths.items()))
        raise CheckpointError(f"backbone widths ({table}) match no channel_base/channel_max pair")
    return int(lo), cmax


def _infer_arch(sd: Mapping[str, torch.Tensor]) -> MMagicArch:
    """Architecture from the shapes of a few MMagic tensors; the full layout check follows separately."""
    (w_dim,) = _shape(sd, "backbone.w_avg", 1)
    embed_out, c_dim = _shape(sd, "backbone.embed.linear.weight_orig", 2)
    mapping_layers = _count(sd, "backbone.style_mapping.{}.bias")
    if mapping_layers == 0:
        raise CheckpointError("MMagic generator state dict lacks 'generator.backbone.style_mapping.0.bias'")
    z_dim = _shape(sd, "backbone.style_mapping.0.linear.weight_orig", 2)[1] - embed_out
    if z_dim <= 0:
        raise CheckpointError(f"mapping input width leaves no room for z (embed width {embed_out})")

    num_rgbs = _count(sd, "backbone.to_rgbs.{}.bias")
    if num_rgbs == 0:
        raise CheckpointError("MMagic generator state dict lacks 'generator.backbone.to_rgbs.0.bias'")
    widths = {4: _shape(sd, "backbone.constant_input.input", 4)[1]}
    for k in range(num_rgbs):
        widths[2 ** (k + 3)] = _shape(sd, f"backbone.convs.{2 * k + 1}.activate.bias", 1)[0]
    channel_base, channel_max = infer_channel_base_max(widths)

    planes = _shape(sd, "backbone.to_rgb1.bias", 4)[1]
    if planes % 3:
        raise CheckpointError(f"backbone output has {planes} channels, not three planes")
    decoder_hidden = _shape(sd, "renderer.decoder.net.0.weight", 2)[0]
    decoder_output_dim = _shape(sd, "renderer.decoder.net.2.weight", 2)[0] - 1

    sr_channels = (_shape(sd, "sr_model.block0.conv0.activate.bias", 1)[0],
                   _shape(sd, "sr_model.block1.conv0.activate.bias", 1)[0])
    if "sr_model.block0.conv0.conv.blur.kernel" in sd:
        # Both SR blocks upsample: the official 8X family, told apart only by its widths.
        sr_module = "8XDC" if sr_channels == (256, 128) else "8X"
        img_resolution = SR_INPUT_RESOLUTION[sr_module] * 4
    else:
        # Same layout as 4X (128 -> 256); 2X is the one released model with it. A config can say 4X.
        sr_module = "2X"
        img_resolution = SR_INPUT_RESOLUTION[sr_module] * 2
    return MMagicArch(
        z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, mapping_layers=mapping_layers, img_resolution=img_resolution,
        sr_module=sr_module, sr_channels=sr_channels, channel_base=channel_base, channel_max=channel_max,
        triplane_resolution=2 ** (num_rgbs + 2), triplane_channels=planes // 3, decoder_hidden=decoder_hidden,
        decoder_output_dim=decoder_output_dim, zero_cond=None,
    )


def _check_archive(path: Path, size: int) -> None:
    """``torch.save`` stores its records uncompressed, so together they are never larger than the file.

    torch's reader would also inflate compressed records: a few kilobytes of deflated zeros could become
    gigabytes. Only the zip's directory is read here."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"cannot load {path.name} as a torch zip checkpoint: {_one_line(exc)}") from None
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"{path.name}: record {packed[0]!r} is compressed (torch.save never compresses)")
    total = sum(r.file_size for r in records)
    if total > size:
        raise CheckpointError(f"{path.name}: its records claim {total} bytes but the file holds {size}")


def _key_mismatch(what: str, missing: list[str], unexpected: list[str]) -> CheckpointError:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s), e.g. '{missing[0]}'")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. '{unexpected[0]}'")
    return CheckpointError(f"{what}: {'; '.join(parts)}")


def _generator_tensors(obj: object) -> dict[str, torch.Tensor]:
    """The generator's tensors, prefix stripped, following mmengine's loading rules."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a dict")
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint 'state_dict' is a {type(state).__name__}, not a dict")
    # mmengine strips a DataParallel 'module.' prefix; an EMA generator, when present, is the one to use.
    keys = {(k[len("module."):] if k.startswith("module.") else k): k for k in state if isinstance(k, str)}
    prefix = "generator_ema." if any(k.startswith("generator_ema.") for k in keys) else "generator."
    out: dict[str, torch.Tensor] = {}
    for key, raw in keys.items():
        if key.startswith(prefix):
            value = state[raw]
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise CheckpointError(f"entry '{key}' is not a floating-point tensor")
            out[key[len(prefix):]] = value
    if not out:
        raise CheckpointError("checkpoint has no 'generator.' or 'generator_ema.' keys (not an MMagic EG3D file)")
    return out


def read_mmagic(path: PathArg) -> tuple[dict[str, torch.Tensor], MMagicArch]:
    """Load an MMagic EG3D ``.pth`` as an official-named ``G_ema`` state dict plus its inferred architecture.

    Official tensors MMagic does not store (``*.resample_filter``, SR ``noise_const``, ``dataset_label_std``)
    are absent from the result; MMagic's blur/upsample kernels are checked and dropped.
    """
    path = Path(path)
    size = regular_file_size(path)  # a named pipe or a device would block or never end
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path.name}: {_one_line(exc)}") from None
    if not looks_like_torch_zip(head):
        raise CheckpointError(f"{path.name} is not a torch zip checkpoint")
    _check_archive(path, size)
    failure = None
    try:
        # weights_only: MMagic files need nothing beyond tensors and plain containers, and an
        # unrestricted unpickler would run whatever code the file names.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, zip errors)
        failure = weights_only_failure(exc)
    if failure is not None:  # raised outside the except block: torch's exception holds the half-loaded data
        raise CheckpointError(f"cannot load {path.name} as a weights-only torch file: {failure}")

    mm = _generator_tensors(obj)
    check_tensor_views((f"generator.{k}", t) for k, t in mm.items())
    arch = _infer_arch(mm)
    layout = _layout(arch)
    expected = {e.mmagic for e in layout}
    missing = sorted(f"generator.{k}" for k in expected - mm.keys())
    unexpected = sorted(f"generator.{k}" for k in mm.keys() - expected)
    if missing or unexpected:
        raise _key_mismatch(f"{path.name} does not match the inferred {arch['sr_module']} EG3D layout",
                            missing, unexpected)

    official: dict[str, torch.Tensor] = {}
    for e in layout:
        t = mm[e.mmagic]
        if tuple(t.shape) != e.mmagic_shape:
            raise CheckpointError(f"tensor 'generator.{e.mmagic}' has shape {tuple(t.shape)}, "
                                  f"expected {e.mmagic_shape}")
        if e.official is None:
            # Our network uses the official fixed FIR filter; a different kernel would change the output.
            if not torch.allclose(t.float(), MMAGIC_KERNEL, atol=1e-6):
                raise CheckpointError(f"tensor 'generator.{e.mmagic}' is not MMagic's standard [1,3,3,1] kernel")
            continue
        assert e.official_shape is not None
        official[e.official] = t.to(torch.float32).reshape(e.official_shape)
    return official, arch


# --------------------------------------------------------------------------------------------------------------
# Config from an inferred architecture, and writing


def embedded_config(path: PathArg) -> GeneratorConfig | None:
    """The full config ``write_mmagic`` stores in a file's meta (this toolkit's exports); None for other files."""
    try:
        regular_file_size(path)
        # mmap: only the small meta dict is touched, the tensors are not read.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable files are reported by read_mmagic with a proper message
        return None
    meta = obj.get("meta") if isinstance(obj, dict) else None
    data = meta.get("eg3d_config") if isinstance(meta, dict) else None
    if not isinstance(data, dict):
        return None
    try:
        return GeneratorConfig.from_dict(plain_data(data, "the embedded config"))
    except (CheckpointError, TypeError, ValueError):
        return None


def config_from_mmagic(arch: MMagicArch, base: GeneratorConfig | None = None) -> GeneratorConfig:
    """A full :class:`GeneratorConfig`: architecture from ``arch``, everything else from ``base``.

    Without ``base`` the released model with the same SR module supplies the rendering settings (the
    MMagic files hold the official weights, so official values apply). MMagic's SR never clamps.
    """
    sr_module = arch["sr_module"]
    if base is None:
        if sr_module not in PRESET_FOR_SR:
            raise CheckpointError(f"no released preset has a {sr_module} super-resolution; pass a base config")
        base = PRESETS[PRESET_FOR_SR[sr_module]]
    img_resolution = arch["img_resolution"]
    if {sr_module, base.sr_module} == {"2X", "4X"}:
        # Same tensors: only the resolutions tell 2X (64 -> 128) from 4X (128 -> 256).
        sr_module = base.sr_module
        img_resolution = SR_INPUT_RESOLUTION[sr_module] * 2
    elif base.sr_module != sr_module:
        raise CheckpointError(f"the weights have a {sr_module} super-resolution but the config says {base.sr_module}")
    try:
        return base.replace(
            z_dim=arch["z_dim"], w_dim=arch["w_dim"], c_dim=arch["c_dim"], mapping_layers=arch["mapping_layers"],
            img_resolution=img_resolution, channel_base=arch["channel_base"], channel_max=arch["channel_max"],
            triplane_resolution=arch["triplane_resolution"], triplane_channels=arch["triplane_channels"],
            decoder_hidden=arch["decoder_hidden"], decoder_output_dim=arch["decoder_output_dim"],
            backbone_conv_clamp=None, sr_module=sr_module, sr_channels=tuple(arch["sr_channels"]),
            sr_conv_clamp=None,
        )
    except ValueError as exc:
        raise CheckpointError(f"invalid generator config: {_one_line(exc)}") from None


def _arch_from_config(config: GeneratorConfig) -> MMagicArch:
    return MMagicArch(
        z_dim=config.z_dim, w_dim=config.w_dim, c_dim=config.c_dim, mapping_layers=config.mapping_layers,
        img_resolution=config.img_resolution, sr_module=config.sr_module, sr_channels=tuple(config.sr_channels),
        channel_base=config.channel_base, channel_max=config.channel_max,
        triplane_resolution=config.triplane_resolution, triplane_channels=config.triplane_channels,
        decoder_hidden=config.decoder_hidden, decoder_output_dim=config.decoder_output_dim,
        zero_cond=config.rendering.c_gen_conditioning_zero,
    )


def write_mmagic(state_dict: Mapping[str, torch.Tensor], config: GeneratorConfig, path: PathArg) -> None:
    """Save an official-named generator state dict in MMagic 1.2.0's EG3D checkpoint layout.

    The file is ``{'meta': {...}, 'state_dict': OrderedDict('generator.<name>': tensor)}`` in MMagic's key
    order, with its constant blur/upsample kernels synthesised. Only the weights travel: MMagic keeps
    rendering settings in its config. Written to a temporary file first, then renamed into place.
    """
    path = Path(path)
    layout = _layout(_arch_from_config(config))
    needed = {e.official for e in layout if e.official is not None}
    missing = sorted(needed - state_dict.keys())
    unexpected = sorted(k for k in state_dict.keys() - needed if not _OFFICIAL_ONLY.search(k))
    if missing or unexpected:
        raise _key_mismatch("state dict does not match the config's EG3D layout", missing, unexpected)

    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for e in layout:
        if e.official is None:
            out[f"generator.{e.mmagic}"] = MMAGIC_KERNEL.clone()
            continue
        t = state_dict[e.official]
        if tuple(t.shape) != e.official_shape:
            raise CheckpointError(f"tensor '{e.official}' has shape {tuple(t.shape)}, expected {e.official_shape}")
        # A fresh contiguous copy per tensor, so the file holds one storage per tensor as MMagic's does.
        out[f"generator.{e.mmagic}"] = t.detach().to("cpu", torch.float32).reshape(e.mmagic_shape).clone()

    meta = {
        "mmagic_version": "1.2.0",
        "experiment_name": "eg3d_core-export",
        "time": time.strftime("%Y%m%d_%H%M%S", time.gmtime()),
        "converted_from": "official-layout EG3D G_ema state dict (eg3d_core)",
        "eg3d_config": config.to_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialised in memory first: torch turns a failed file write (a full disk) into an unexplained RuntimeError,
    # while a plain write raises the OSError that atomic_file reports as one line.
    buffer = io.BytesIO()
    torch.save({"meta": meta, "state_dict": out}, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


# --------------------------------------------------------------------------------------------------------------
# Config files, read as data


class _LiteralEvaluator:
    """Evaluates a config module's top-level assignments using literal constructs only."""

    _NUMBER_OPS = {
        ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    }

    # Work budget in value nodes. Every name reference is a deep copy, so `b = [a, a]; c = [b, b]; ...`
    # would grow exponentially; charging each reference its size keeps the evaluation bounded.
    _BUDGET = 200_000  # real configs use a few hundred

    def __init__(self, name: str) -> None:
        self.name = name
        self.names: dict[str, Any] = {}
        self.spent = 0

    def charge(self, node: ast.AST, units: int) -> None:
        self.spent += units
        if self.spent > self._BUDGET:
            self.fail(node, "a value this large")

    def fail(self, node: ast.AST, what: str) -> NoReturn:
        line = getattr(node, "lineno", "?")
        raise CheckpointError(f"{self.name} line {line}: {what} cannot be read without running the config")

    def run(self, tree: ast.Module) -> dict[str, Any]:
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                value = self.eval(stmt.value)
                for target in stmt.targets:
                    if not isinstance(target, ast.Name):
                        self.fail(target, f"assignment to {_describe(target)}")
                    self.names[target.id] = value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                self.names[stmt.target.id] = self.eval(stmt.value)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue  # a docstring
            elif not isinstance(stmt, ast.Pass):
                self.fail(stmt, _describe(stmt))
        return self.names

    def eval(self, node: ast.expr) -> Any:
        self.charge(node, 1)
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, (bool, int, float, str)):
                return node.value
            self.fail(node, f"constant of type {type(node.value).__name__}")
        if isinstance(node, ast.List):
            return [self.eval(x) for x in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.eval(x) for x in node.elts)
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    self.fail(v, "'**' unpacking")
                key = self.eval(k)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    self.fail(k, "a dict key that is not a constant")
                out[key] = self.eval(v)
            return out
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
                self.fail(node, f"call to '{_source(node.func)}'")
            if node.args or any(kw.arg is None for kw in node.keywords):
                self.fail(node, "dict() with positional or '**' arguments")
            return {kw.arg: self.eval(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                self.fail(node, f"undefined name '{node.id}'")
            value = self.names[node.id]
            self.charge(node, _size(value))
            return copy.deepcopy(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.eval(node.operand)
            if not _is_number(value):
                self.fail(node, "a sign on a non-number")
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        self.fail(node, _describe(node))

    def _binop(self, node: ast.BinOp) -> Any:
        a, b = self.eval(node.left), self.eval(node.right)
        op = type(node.op)
        if op in self._NUMBER_OPS and _is_number(a) and _is_number(b):
            try:
                return self._NUMBER_OPS[op](a, b)
            except ZeroDivisionError:
                self.fail(node, "division by zero")
        # Concatenation only; repetition ('x' * n) could be made to exhaust memory.
        if op is ast.Add and type(a) is type(b) and isinstance(a, (str, list, tuple)):
            return a + b
        self.fail(node, f"operator '{type(node.op).__name__}' on {type(a).__name__} and {type(b).__name__}")


def _size(value: object) -> int:
    """Nodes in a config value (long strings count per 64 characters)."""
    if isinstance(value, dict):
        return 1 + sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 1 + sum(_size(v) for v in value)
    if isinstance(value, str):
        return 1 + len(value) // 64
    return 1


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _source(node: ast.AST) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(node: ast.AST) -> str:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return f"import statement '{_source(node)}'"
    if isinstance(node, ast.Expr):
        return f"expression statement '{_source(node)}'"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return f"definition of '{node.name}'"
    if isinstance(node, ast.stmt):
        return f"statement '{type(node).__name__}'"
    return f"expression '{_source(node)}' ({type(node).__name__})"


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """mmengine's inheritance: child dicts merge into base dicts key by key unless they set ``_delete_``."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            if not value.pop("_delete_", False) and isinstance(out.get(key), dict):
                value = _merge(out[key], value)
        out[key] = value
    return out


def _load_config(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if len(chain) > _MAX_BASE_DEPTH or path in chain:
        raise CheckpointError(f"{path.name}: '_base_' chain is circular or deeper than {_MAX_BASE_DEPTH}")
    try:
        if regular_file_size(path) > _MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path.name} is larger than {_MAX_CONFIG_BYTES} bytes; not an MMagic config")
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read config {path.name}: {_one_line(exc)}") from None
    try:
        tree = ast.parse(source, filename=path.name)
        names = _LiteralEvaluator(path.name).run(tree)
    except SyntaxError as exc:
        raise CheckpointError(f"{path.name} line {exc.lineno}: not valid Python ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise CheckpointError(f"{path.name}: expressions nested too deeply") from None

    bases = names.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise CheckpointError(f"{path.name}: '_base_' must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        # Package-scoped ('mmagic::...') or absent bases are MMagic's runtime defaults, which hold nothing
        # about the generator; a config missing its model because of that is reported below.
        if "::" in base or base_path.suffix != ".py" or not base_path.is_file():
            continue
        merged = _merge(merged, _load_config(base_path, (*chain, path)))
    return _merge(merged, names)


def _model_section(path: PathArg) -> tuple[str, dict[str, Any]]:
    path = Path(path)
    cfg = _load_config(path.resolve())
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{path.name} defines no 'model' dict (its bases may be missing)")
    if model.get("type") != "EG3D":
        raise CheckpointError(f"{path.name}: model type {model.get('type')!r} is not 'EG3D'")
    return path.name, model


# TriplaneGenerator arguments (MMagic 1.2.0 defaults). Unknown arguments are refused rather than ignored:
# a setting that silently does nothing would give a different picture than MMagic.
_GENERATOR_DEFAULTS: dict[str, Any] = {
    "out_size": None, "noise_size": 512, "style_channels": 512, "cond_size": 25, "cond_mapping_channels": None,
    "cond_scale": 1, "zero_cond_input": False, "num_mlps": 8, "triplane_size": 256, "triplane_channels": 32,
    "sr_in_size": 64, "sr_in_channels": 32, "sr_hidden_channels": 128, "sr_out_channels": 64,
    "sr_antialias": True, "sr_add_noise": True, "neural_rendering_resolution": 64, "renderer_cfg": {},
    "rgb2bgr": False,  # output channel order only; weights are RGB either way
    "init_cfg": None,  # weight initialisation; irrelevant when weights are loaded
}
_RENDERER_DEFAULTS: dict[str, Any] = {
    "ray_start": None, "ray_end": None, "box_warp": 1, "depth_resolution": 64, "depth_resolution_importance": 64,
    "density_noise": 0, "clamp_mode": "softplus", "white_back": True, "projection_mode": "Official",
}
_CAMERA_DEFAULTS: dict[str, Any] = {
    "horizontal_mean": None, "horizontal_std": 0, "vertical_mean": None, "vertical_std": 0,
    "radius": 1, "fov": None, "focal": None, "look_at": [0, 0, 0], "up": [0, 1, 0],
}


def _settings(name: str, section: str, given: object, defaults: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise CheckpointError(f"{name}: {section} is not a dict")
    unknown = sorted(set(given) - set(defaults) - {"type"})
    if unknown:
        raise CheckpointError(f"{name}: unsupported {section} argument(s) {', '.join(map(repr, unknown))}")
    return {**defaults, **given}


def _typed(name: str, key: str, value: object, kind: str) -> Any:
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": _is_number(value),
        "bool": isinstance(value, bool),
        "vec3": isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_is_number, value)),
    }[kind]
    if not ok:
        raise CheckpointError(f"{name}: {key}={value!r} is not a valid {kind}")
    if kind == "float":
        return float(value)  # type: ignore[arg-type]
    if kind == "vec3":
        return tuple(float(v) for v in value)  # type: ignore[union-attr]
    return value


def _sr_module(name: str, sr_in: int, out: int, channels: tuple[int, int]) -> str:
    """MMagic derives the SR from sizes; the official classes are fixed (input, output) pairs."""
    if (sr_in, out) == (64, 128):
        return "2X"
    if (sr_in, out) == (128, 256):
        return "4X"
    if (sr_in, out) == (128, 512):
        return "8XDC" if channels == (256, 128) else "8X"
    raise CheckpointError(f"{name}: sr_in_size {sr_in} -> out_size {out} matches no supported super-resolution")


def parse_mmagic_camera(path: PathArg) -> dict[str, Any]:
    """The ``model.camera`` section of an MMagic EG3D config with MMagic's defaults filled in; ``{}`` if none.

    ``normalized_focal`` is the intrinsics focal MMagic uses (from ``focal``, or from ``fov`` in degrees via
    EG3D's ``1 / (tan(fov / 2) * 1.414)``).
    """
    return _camera(*_model_section(path))


def _camera(name: str, model: dict[str, Any]) -> dict[str, Any]:
    camera = model.get("camera")
    if camera is None:
        return {}
    if not isinstance(camera, dict):
        raise CheckpointError(f"{name}: model.camera is not a dict")
    # Extra camera arguments are kept as given: the camera only supplies defaults, never weights.
    out = {**_CAMERA_DEFAULTS, **camera}
    out.setdefault("type", None)
    if out["fov"] is not None and out["focal"] is not None:
        raise CheckpointError(f"{name}: camera sets both fov and focal")
    for key in ("horizontal_mean", "vertical_mean"):
        if out[key] is not None:
            out[key] = _typed(name, f"camera.{key}", out[key], "float")
    for key in ("horizontal_std", "vertical_std", "radius"):
        out[key] = _typed(name, f"camera.{key}", out[key], "float")
    for key in ("look_at", "up"):
        out[key] = _typed(name, f"camera.{key}", out[key], "vec3")
    if out["focal"] is not None:
        out["focal"] = _typed(name, "camera.focal", out["focal"], "float")
        out["normalized_focal"] = out["focal"]
    elif out["fov"] is not None:
        out["fov"] = _typed(name, "camera.fov", out["fov"], "float")
        out["normalized_focal"] = 1.0 / (math.tan(out["fov"] * math.pi / 360.0) * 1.414)
    else:
        out["normalized_focal"] = None
    return out


def parse_mmagic_config(path: PathArg) -> GeneratorConfig:
    """A :class:`GeneratorConfig` from an MMagic EG3D config file, read as data (never executed).

    Unset arguments take MMagic's defaults (e.g. 8 mapping layers, SR noise on, white background). The
    backbone widths are MMagic's fixed table; the camera's radius and look-at point become the average camera.
    """
    name, model = _model_section(path)
    g = _settings(name, "model.generator", model.get("generator"), _GENERATOR_DEFAULTS)
    if g.get("type", "TriplaneGenerator") != "TriplaneGenerator":
        raise CheckpointError(f"{name}: generator type {g['type']!r} is not 'TriplaneGenerator'")
    r = _settings(name, "renderer_cfg", g["renderer_cfg"], _RENDERER_DEFAULTS)
    # Without a camera section MMagic's BaseCamera defaults apply (radius 1 around the origin).
    camera = _camera(name, model) or {"radius": 1.0, "look_at": (0.0, 0.0, 0.0)}

    def gi(key: str) -> int:
        return _typed(name, key, g[key], "int")

    def gb(key: str) -> bool:
        return _typed(name, key, g[key], "bool")

    for key in ("ray_start", "ray_end"):
        if r[key] is None or isinstance(r[key], str):
            # 'auto' (per-ray box intersection) has no counterpart in our renderer.
            raise CheckpointError(f"{name}: renderer_cfg {key}={r[key]!r} is not supported (a number is needed)")
    if _typed(name, "density_noise", r["density_noise"], "float") != 0:
        raise CheckpointError(f"{name}: renderer_cfg density_noise must be 0")
    for key, want in (("clamp_mode", "softplus"), ("projection_mode", "Official")):
        if r[key] != want:
            raise CheckpointError(f"{name}: renderer_cfg {key}={r[key]!r} is not supported (only {want!r})")
    w_dim = gi("style_channels")
    if g["cond_mapping_channels"] not in (None, w_dim):
        raise CheckpointError(f"{name}: cond_mapping_channels must equal style_channels ({w_dim})")

    sr_channels = (gi("sr_hidden_channels"), gi("sr_out_channels"))
    try:
        return GeneratorConfig(
            z_dim=gi("noise_size"), c_dim=gi("cond_size"), w_dim=w_dim, img_resolution=gi("out_size"),
            mapping_layers=gi("num_mlps"), channel_base=MMAGIC_CHANNEL_BASE, channel_max=MMAGIC_CHANNEL_MAX,
            triplane_resolution=gi("triplane_size"), triplane_channels=gi("triplane_channels"),
            decoder_hidden=64, decoder_output_dim=gi("sr_in_channels"), backbone_conv_clamp=None,
            sr_module=_sr_module(name, gi("sr_in_size"), gi("out_size"), sr_channels), sr_channels=sr_channels,
            sr_conv_clamp=None, sr_antialias=gb("sr_antialias"),
            sr_noise_mode="random" if gb("sr_add_noise") else "none",
            rendering=RenderingConfig(
                ray_start=_typed(name, "ray_start", r["ray_start"], "float"),
                ray_end=_typed(name, "ray_end", r["ray_end"], "float"),
                box_warp=_typed(name, "box_warp", r["box_warp"], "float"),
                depth_resolution=_typed(name, "depth_resolution", r["depth_resolution"], "int"),
                depth_resolution_importance=_typed(name, "depth_resolution_importance",
                                                   r["depth_resolution_importance"], "int"),
                white_back=_typed(name, "white_back", r["white_back"], "bool"),
                neural_rendering_resolution=gi("neural_rendering_resolution"),
                avg_camera_radius=camera["radius"],
                avg_camera_pivot=tuple(camera["look_at"]),
                c_gen_conditioning_zero=gb("zero_cond_input"),
                c_scale=_typed(name, "cond_scale", g["cond_scale"], "float"),
            ),
        )
    except ValueError as exc:
        raise CheckpointError(f"{name}: {_one_line(exc)}") from None
