"""Tests for the safe official-pickle reader (eg3d_core/checkpoints/official.py).

Only ``tests/fixtures`` is read. Malicious pickles are built here, byte by byte where pickle itself
would not write them, and every one of them would leave a marker file behind if it ran.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from eg3d_core.checkpoints.official import (
    OfficialGenerator,
    config_from_official,
    looks_like_pickle,
    read_official_pickle,
)
from eg3d_core.errors import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures"

# name -> (state-dict tensors, state-dict elements, neural rendering resolution, sr_module, sr_channels)
EXPECTED = {
    "tiny_cars128": (178, 1_809_009, 64, "2X", (128, 64)),
    "tiny_ffhq512": (177, 3_498_017, 32, "8XDC", (256, 128)),
    "tiny_afhq512": (178, 2_423_409, 64, "8X", (128, 64)),
}
SR_CLASS = {"2X": "SuperresolutionHybrid2X", "8X": "SuperresolutionHybrid8X", "8XDC": "SuperresolutionHybrid8XDC"}


@pytest.fixture(scope="module")
def loaded() -> dict[str, OfficialGenerator]:
    return {name: read_official_pickle(FIXTURES / name / "network-snapshot.pkl") for name in EXPECTED}


def _config_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "config.json").read_text())


def _expect_error(source: Any, *fragments: str) -> str:
    """Read ``source`` expecting a one-line CheckpointError that contains every fragment."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with pytest.raises(CheckpointError) as info:
        read_official_pickle(source)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------------------------------------------
# Raw pickle building blocks (protocol 4 opcodes) for pickles the pickle module would not write
# ---------------------------------------------------------------------------------------------------

def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _arg(value: str | list[str] | bytes) -> bytes:
    if isinstance(value, bytes):
        return b"B" + struct.pack("<I", len(value)) + value  # BINBYTES
    if isinstance(value, list):
        return b"](" + b"".join(_str(v) for v in value) + b"e"  # EMPTY_LIST, MARK, items, APPENDS
    return _str(value)


def _call(module: str, name: str, *args: str | list[str] | bytes) -> bytes:
    """Ops that push ``module.name(*args)`` (STACK_GLOBAL + REDUCE), without PROTO/STOP."""
    return _str(module) + _str(name) + b"\x93(" + b"".join(_arg(a) for a in args) + b"tR"


def _pickle_of(ops: bytes) -> bytes:
    return b"\x80\x04" + ops + b"."


def _in_snapshot_dict(ops: bytes) -> bytes:
    """``{'G_ema': <ops>}``: the payload sits where a loader looks for the generator."""
    return _pickle_of(b"}" + _str("G_ema") + ops + b"s")


def _patch_op(data: bytes, find: Any, new_op: Callable[[bytes], bytes]) -> bytes:
    """Replace the first op of a framed protocol-4 pickle for which ``find(opcode, arg, after)`` holds
    (``after``: the latest argument of an earlier op) by ``new_op(old op bytes)``, fixing the length
    of the FRAME that contains it (the way the CUDA-tagged fixture variant was made)."""
    frame, previous, ops = None, None, pickletools.genops(data)
    for op, arg, pos in ops:
        if op.name == "FRAME":
            frame = (pos, arg)
        elif find(op.name, arg, previous):
            end = next(ops)[2]
            break
        if arg is not None:  # skip MEMOIZE and other argument-less ops
            previous = arg
    else:
        raise AssertionError("op not found")
    assert frame is not None and frame[0] + 9 + frame[1] >= end
    replacement = new_op(data[pos:end])
    patched = data[:pos] + replacement + data[end:]
    new_frame_len = struct.pack("<Q", frame[1] + len(replacement) - (end - pos))
    return patched[: frame[0] + 1] + new_frame_len + patched[frame[0] + 9 :]


def _replace_string(data: bytes, old: str, new: str) -> bytes:
    """Replace the first pickled string ``old`` by ``new``."""
    return _patch_op(data, lambda name, arg, _: name.endswith("BINUNICODE") and arg == old, lambda _: _str(new))


# ---------------------------------------------------------------------------------------------------
# The fixture pickles
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED))
def test_fixture_state_dict(loaded: dict[str, OfficialGenerator], name: str) -> None:
    count, elements, nrr, sr_module, sr_channels = EXPECTED[name]
    g = loaded[name]
    sd = g.state_dict
    assert len(sd) == count
    assert sum(t.numel() for t in sd.values()) == elements
    assert g.neural_rendering_resolution == nrr
    assert g.sr_class == SR_CLASS[sr_module]
    for key, tensor in sd.items():
        assert type(tensor) is torch.Tensor, key  # plain tensors, not nn.Parameter
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu" and tensor.is_contiguous(), key
    # Official names and shapes (tiny backbone: channel_base 4096, channel_max 32; z_dim 64).
    assert next(iter(sd)) == "dataset_label_std" and sd["dataset_label_std"].shape == (25,)
    assert sd["backbone.mapping.embed.weight"].shape == (512, 25)
    assert sd["backbone.mapping.fc0.weight"].shape == (512, 64 + 512)
    assert sd["backbone.mapping.w_avg"].shape == (512,)
    assert sd["backbone.synthesis.b4.const"].shape == (32, 4, 4)
    assert sd["backbone.synthesis.b256.conv1.weight"].shape == (16, 16, 3, 3)
    assert sd["backbone.synthesis.b256.torgb.weight"].shape == (96, 16, 1, 1)
    assert sd["decoder.net.0.weight"].shape == (64, 32)
    assert sd["decoder.net.2.weight"].shape == (33, 64)
    assert sd["superresolution.block0.conv0.weight"].shape == (sr_channels[0], 32, 3, 3)
    assert sd["superresolution.block1.conv1.weight"].shape == (sr_channels[1], sr_channels[1], 3, 3)
    assert sd["superresolution.block1.torgb.weight"].shape == (3, sr_channels[1], 1, 1)
    block1_res = 128 if sr_module == "2X" else 512
    assert sd["superresolution.block1.conv0.noise_const"].shape == (block1_res, block1_res)
    # Only 2X/4X/8X register the unused module-level filter (that is the 178 vs 177).
    assert ("superresolution.resample_filter" in sd) == (sr_module != "8XDC")
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected_filter = torch.outer(f, f) / torch.outer(f, f).sum()
    assert torch.equal(sd["backbone.synthesis.b8.conv0.resample_filter"], expected_filter)
    # The renderer's plane_axes is an attribute, never a state-dict entry.
    assert not any("plane_axes" in k for k in sd)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_fixture_kwargs_and_config(loaded: dict[str, OfficialGenerator], name: str) -> None:
    _, _, nrr, sr_module, sr_channels = EXPECTED[name]
    g = loaded[name]
    expected = _config_json(name)["init_kwargs"]
    assert g.init_kwargs == expected
    assert g.rendering_kwargs == expected["rendering_kwargs"]
    # EasyDicts come back as plain dicts.
    assert type(g.init_kwargs["mapping_kwargs"]) is dict and type(g.init_kwargs["sr_kwargs"]) is dict

    cfg = config_from_official(g)
    rk = expected["rendering_kwargs"]
    assert (cfg.z_dim, cfg.c_dim, cfg.w_dim) == (expected["z_dim"], expected["c_dim"], expected["w_dim"])
    assert cfg.img_resolution == expected["img_resolution"]
    assert cfg.mapping_layers == expected["mapping_kwargs"]["num_layers"] == 2
    assert (cfg.channel_base, cfg.channel_max) == (expected["channel_base"], expected["channel_max"])
    assert (cfg.triplane_resolution, cfg.triplane_channels) == (256, 32)
    assert (cfg.decoder_hidden, cfg.decoder_output_dim) == (64, 32)
    assert cfg.backbone_conv_clamp is None
    assert cfg.sr_module == sr_module and cfg.sr_channels == sr_channels
    assert cfg.sr_conv_clamp == 256.0  # sr_num_fp16_res = 4
    assert cfg.sr_antialias is rk["sr_antialias"]
    assert cfg.sr_noise_mode == rk["superresolution_noise_mode"]
    r = cfg.rendering
    assert (r.ray_start, r.ray_end, r.box_warp) == (rk["ray_start"], rk["ray_end"], rk["box_warp"])
    assert (r.depth_resolution, r.depth_resolution_importance) == (12, 12)
    assert r.white_back is rk.get("white_back", False)
    assert r.neural_rendering_resolution == nrr
    assert r.avg_camera_radius == rk["avg_camera_radius"]
    assert r.avg_camera_pivot == tuple(float(v) for v in rk["avg_camera_pivot"])
    assert r.c_gen_conditioning_zero is rk["c_gen_conditioning_zero"]
    assert r.c_scale == rk["c_scale"] and r.decoder_lr_mul == rk["decoder_lr_mul"]


def test_cuda_tagged_storage_loads_on_cpu(loaded: dict[str, OfficialGenerator]) -> None:
    path = FIXTURES / "tiny_cars128" / "network-snapshot-cuda-axes.pkl"
    assert b"cuda:0" in path.read_bytes()  # the variant really names a GPU location
    g = read_official_pickle(path)
    ref = loaded["tiny_cars128"]
    assert list(g.state_dict) == list(ref.state_dict)
    for key, tensor in g.state_dict.items():
        assert tensor.device.type == "cpu"
        assert torch.equal(tensor, ref.state_dict[key]), key
    assert g.init_kwargs == ref.init_kwargs and g.neural_rendering_resolution == ref.neural_rendering_resolution


def test_non_persistent_buffers_are_left_out(loaded: dict[str, OfficialGenerator]) -> None:
    """Buffers named in a module's _non_persistent_buffers_set are not part of its state dict."""
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()
    # G_ema's (empty) set is the first one in the file: make it {'dataset_label_std'}.
    data = _patch_op(data, lambda name, _, after: name == "EMPTY_SET" and after == "_non_persistent_buffers_set",
                     lambda op: op + b"(" + b"\x8c\x11dataset_label_std" + b"\x90")  # MARK, str, ADDITEMS
    g = read_official_pickle(io.BytesIO(data))
    assert "dataset_label_std" not in g.state_dict
    assert list(g.state_dict) == [k for k in loaded["tiny_cars128"].state_dict if k != "dataset_label_std"]


def test_accepts_file_objects_and_streams() -> None:
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()

    class Stream:  # read() only: no tell/seek
        def __init__(self) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._f.read(n)

    for source in (io.BytesIO(data), Stream()):
        assert len(read_official_pickle(source).state_dict) == 178


def test_loading_imports_nothing_from_the_pickle() -> None:
    read_official_pickle(FIXTURES / "tiny_afhq512" / "network-snapshot.pkl")
    for module in ("training", "torch_utils", "dnnlib"):
        assert module not in sys.modules


def test_looks_like_pickle() -> None:
    assert looks_like_pickle((FIXTURES / "tiny_ffhq512" / "network-snapshot.pkl").read_bytes()[:16])
    assert looks_like_pickle(pickle.dumps({}, protocol=2)) and looks_like_pickle(pickle.dumps({}, protocol=5))
    assert not looks_like_pickle((FIXTURES / "tiny_ffhq512" / "mmagic.pth").read_bytes()[:16])  # zip
    legacy = io.BytesIO()
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert not looks_like_pickle(legacy.getvalue()[:16])
    assert not looks_like_pickle(b"") and not looks_like_pickle(b"\x80") and not looks_like_pickle(b"\x80\x01")
    assert not looks_like_pickle(b"(dp0\n")  # protocol 0


# ---------------------------------------------------------------------------------------------------
# Malicious pickles: refused before anything runs
# ---------------------------------------------------------------------------------------------------

class _Evil:
    """pickle.dumps writes whatever callable __reduce__ names (here the platform's real one)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> Any:
        return self.fn, self.args


def _touch_cmd(marker: Path) -> str:
    return f"touch '{marker}'"


@pytest.mark.parametrize(
    "module,name,arg_kind",
    [
        ("os", "system", "shell"),
        ("posix", "system", "shell"),
        ("builtins", "eval", "python"),
        ("builtins", "exec", "python"),
        ("subprocess", "Popen", "argv"),
        ("subprocess", "check_call", "argv"),
    ],
)
def test_forbidden_global_is_refused(tmp_path: Path, module: str, name: str, arg_kind: str) -> None:
    marker = tmp_path / "marker"
    arg: str | list[str] = {
        "shell": _touch_cmd(marker),
        "python": f"__import__('pathlib').Path({str(marker)!r}).touch()",
        "argv": ["touch", str(marker)],
    }[arg_kind]
    for data in (_pickle_of(_call(module, name, arg)), _in_snapshot_dict(_call(module, name, arg))):
        _expect_error(data, "forbidden global", f"{module}.{name}")
        assert not marker.exists()


def test_forbidden_global_written_by_pickle_itself(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for payload in (_Evil(os.system, _touch_cmd(marker)), _Evil(subprocess.call, ["touch", str(marker)])):
        for data in (pickle.dumps(payload, protocol=4), pickle.dumps({"G_ema": payload}, protocol=2)):
            path = tmp_path / "evil.pkl"
            path.write_bytes(data)
            # Protocol 2 writes Python 2 names (subprocess.call becomes commands.call): check the name only.
            _expect_error(path, "forbidden global", f".{payload.fn.__name__};")
            assert not marker.exists()


def test_forbidden_getattr_and_old_style_global(tmp_path: Path) -> None:
    _expect_error(_pickle_of(_call("builtins", "getattr", "x", "y")), "forbidden global builtins.getattr")
    # Protocol-0 GLOBAL opcode (module and name as text lines) goes through the same check.
    marker = tmp_path / "marker"
    data = b"\x80\x02cos\nsystem\n(" + _str(_touch_cmd(marker)) + b"tR."
    _expect_error(data, "forbidden global os.system")
    assert not marker.exists()


def test_forbidden_global_name_with_newline_gives_one_line() -> None:
    message = _expect_error(_pickle_of(_call("os\nfake", "sys\ntem", "x")), "forbidden global")
    assert "os\\nfake.sys\\ntem" in message


def test_whitelisted_functions_cannot_be_modified() -> None:
    """BUILD on a referenced function would setattr() e.g. its __defaults__ (pickle's slot-state path)."""
    fn = _str("torch._utils") + _str("_rebuild_tensor_v2") + b"\x93"
    state = b"N}" + _str("__defaults__") + b")s\x86"  # (None, {'__defaults__': ()})
    _expect_error(_in_snapshot_dict(fn + state + b"b"), "modify a function")
    # The same for the stand-in classes: pickle would call their __setstate__ unbound and fail.
    cls = _str("training.triplane") + _str("OSGDecoder") + b"\x93"
    _expect_error(_in_snapshot_dict(cls + state + b"b"), "corrupt")


def test_malicious_nested_storage_stream_is_refused(tmp_path: Path) -> None:
    """The bytes handed to torch.storage._load_from_bytes are themselves a pickle; they go through
    torch's weights-only loader, so a forbidden global there is refused as well."""
    marker = tmp_path / "marker"
    nested = pickle.dumps(_Evil(os.system, _touch_cmd(marker)), protocol=2)
    _expect_error(_in_snapshot_dict(_call("torch.storage", "_load_from_bytes", nested)), "storage")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("offset,size,stride", [(0, (1000,), (1,)), (3, (2,), (1,)), (0, (2, 2), (1, 3))])
def test_tensor_view_outside_its_storage_is_refused(offset: int, size: tuple, stride: tuple) -> None:
    """torch's set_() would silently grow the storage; the reader refuses such views instead."""
    storage = torch.arange(4, dtype=torch.float32).storage()  # pickles via torch.storage._load_from_bytes

    class View:
        def __reduce__(self) -> Any:
            return torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, collections.OrderedDict())

    _expect_error(pickle.dumps({"G_ema": View()}, protocol=4), "reaches past its storage")
    # The same construction with a view that fits is accepted (and then rejected as not a generator).
    class Fits:
        def __reduce__(self) -> Any:
            return torch._utils._rebuild_tensor_v2, (storage, 1, (3,), (1,), False, collections.OrderedDict())

    _expect_error(pickle.dumps({"G_ema": Fits()}, protocol=4), "G_ema is a value of type Tensor")


def test_embedded_module_source_is_never_executed(tmp_path: Path, loaded: dict[str, OfficialGenerator]) -> None:
    """A released pickle embeds real module source; executing it (as the official loader does) would
    create the marker. The reader recognises the modules from their class definitions instead."""
    marker = tmp_path / "marker"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n"
    sources = {
        "training.triplane": "class TriPlaneGenerator(object):\n    pass\n\nclass OSGDecoder(object):\n    pass\n",
        "training.networks_stylegan2": "".join(f"class {c}:\n    pass\n" for c in
                                               ("MappingNetwork", "SynthesisLayer", "SynthesisBlock", "ToRGBLayer")),
        "training.superresolution": "class SynthesisBlockNoUp:\n    pass\nclass SuperresolutionHybrid2X:\n    pass\n",
    }
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()
    for module, src in sources.items():
        data = _replace_string(data, f"# module source omitted ({module})", payload + src)
    assert payload.encode() in data
    g = read_official_pickle(io.BytesIO(data))
    assert not marker.exists()
    ref = loaded["tiny_cars128"]
    assert g.sr_class == ref.sr_class and list(g.state_dict) == list(ref.state_dict)
    assert all(torch.equal(g.state_dict[k], ref.state_dict[k]) for k in ref.state_dict)


def test_unrecognised_module_source_is_not_a_generator(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\n"
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()
    data = _replace_string(data, "# module source omitted (training.triplane)", code)
    _expect_error(io.BytesIO(data), "not an EG3D network pickle", "TriPlaneGenerator")
    assert not marker.exists()


def test_persistent_object_with_code_but_no_generator_state(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    meta = {
        "type": "class", "version": 6, "class_name": "TriPlaneGenerator", "state": {},
        "module_src": f"open({str(marker)!r}, 'w').write('executed')\nclass TriPlaneGenerator:\n    pass\n",
    }
    # {'G_ema': _reconstruct_persistent_obj(meta)} with meta pickled by pickle itself.
    meta_ops = pickle.dumps(meta, protocol=4)[2:-1]
    ops = _str("torch_utils.persistence") + _str("_reconstruct_persistent_obj") + b"\x93" + meta_ops + b"\x85R"
    _expect_error(_in_snapshot_dict(ops), "G_ema lacks")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------
# Files that are not (complete) network pickles
# ---------------------------------------------------------------------------------------------------

def test_truncated_fixture(tmp_path: Path) -> None:
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()
    for size in (len(data) // 2, 3, 1000, len(data) - 1):
        path = tmp_path / "snapshot.pkl"
        path.write_bytes(data[:size])
        message = _expect_error(path, "truncated pickle")
        assert message.startswith(f"{path}: ")


def test_memo_index_bomb_is_refused() -> None:
    """LONG_BINPUT with a huge index would make the C unpickler allocate and zero a 16 GiB memo."""
    _expect_error(_pickle_of(b"N" + b"r" + struct.pack("<I", 2**31)), "memo index")
    _expect_error(_pickle_of(b"N\x94N\x94" + b"q\x05"), "memo index")  # BINPUT 5 after two entries


def test_random_corruption_never_escapes_as_another_exception() -> None:
    """Flip bytes at opcode positions of a real pickle: every outcome is a load or a one-line error."""
    data = (FIXTURES / "tiny_cars128" / "network-snapshot.pkl").read_bytes()
    positions = [pos for op, _, pos in pickletools.genops(data) if op.name != "BINBYTES"]
    rng = torch.Generator().manual_seed(1234)
    for _ in range(40):
        corrupt = bytearray(data)
        for i in torch.randint(0, len(positions), (2,), generator=rng).tolist():
            corrupt[positions[i] + int(torch.randint(0, 3, (1,), generator=rng))] = int(
                torch.randint(0, 256, (1,), generator=rng))
        try:
            read_official_pickle(io.BytesIO(bytes(corrupt)))
        except CheckpointError as e:
            assert "\n" not in str(e)


def test_empty_random_and_wrong_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    _expect_error(empty, "empty")
    rng = torch.Generator().manual_seed(0)
    noise = bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist())
    _expect_error(b"\x01" + noise, "not an EG3D network pickle")
    _expect_error(b"\x80\x04" + noise, "corrupt")
    _expect_error(FIXTURES / "tiny_ffhq512" / "mmagic.pth", "not an EG3D network pickle", "zip")
    legacy = io.BytesIO()
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    _expect_error(legacy.getvalue(), "legacy torch.save")
    _expect_error(tmp_path / "missing.pkl", "cannot read")


def test_pickles_without_a_generator() -> None:
    _expect_error(pickle.dumps({"G": 1, "D": 2}), "not an EG3D network pickle", "'G'", "'D'")
    _expect_error(pickle.dumps([1, 2, 3]), "not an EG3D network pickle", "list")
    _expect_error(pickle.dumps({"G_ema": {"a": 1}}), "not an EG3D network pickle", "G_ema is a value of type dict")
    # Protocol 2 writes sets as __builtin__.set(list) (as in nn.Module state): allowed, not forbidden.
    _expect_error(pickle.dumps({"G_ema": {1, 2}}, protocol=2), "G_ema is a value of type set")


# ---------------------------------------------------------------------------------------------------
# config_from_official on modified copies
# ---------------------------------------------------------------------------------------------------

def _modified(g: OfficialGenerator, rendering: dict | None = None, drop: tuple[str, ...] = (),
              **init: Any) -> OfficialGenerator:
    init_kwargs = copy.deepcopy(g.init_kwargs)
    init_kwargs.update(init)
    rk = copy.deepcopy(g.rendering_kwargs)
    rk.update(rendering or {})
    for key in drop:
        rk.pop(key, None)
    return dataclasses.replace(g, init_kwargs=init_kwargs, rendering_kwargs=rk)


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"rendering": {"ray_start": "auto", "ray_end": "auto"}}, "ray_start='auto'"),
        ({"rendering": {"ray_end": "auto"}}, "ray_end='auto'"),
        ({"rendering": {"disparity_space_sampling": True}}, "disparity_space_sampling"),
        ({"rendering": {"clamp_mode": "relu"}}, "clamp_mode"),
        ({"rendering": {"density_noise": 0.5}}, "density_noise"),
        ({"drop": ("ray_start",)}, "ray_start"),
        ({"drop": ("c_gen_conditioning_zero",)}, "c_gen_conditioning_zero"),
        ({"img_channels": 4}, "img_channels"),
        ({"img_resolution": 512}, "img_resolution 512"),
        ({"architecture": "resnet"}, "architecture"),
        ({"mapping_kwargs": {"num_layers": 8}}, "num_layers"),
        ({"mapping_kwargs": {"num_layers": 2, "lr_multiplier": 1.0}}, "lr_multiplier"),
        ({"z_dim": "64"}, "z_dim"),
    ],
)
def test_unsupported_configs(loaded: dict[str, OfficialGenerator], change: dict, fragment: str) -> None:
    g = _modified(loaded["tiny_cars128"], **change)
    with pytest.raises(CheckpointError) as info:
        config_from_official(g)
    assert "\n" not in str(info.value) and fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("sr_class", ["SuperresolutionHybridDeepfp32", "SomethingElse"])
def test_unsupported_sr_class(loaded: dict[str, OfficialGenerator], sr_class: str) -> None:
    g = dataclasses.replace(loaded["tiny_cars128"], sr_class=sr_class)
    with pytest.raises(CheckpointError, match=f"unsupported super-resolution module '{sr_class}'"):
        config_from_official(g)


def test_config_defaults_follow_the_original(loaded: dict[str, OfficialGenerator]) -> None:
    g = loaded["tiny_ffhq512"]
    # The original reads c_scale with .get(..., 0) and white_back with .get(): missing means 0 / False.
    cfg = config_from_official(_modified(g, drop=("c_scale", "white_back", "density_noise")))
    assert cfg.rendering.c_scale == 0.0 and cfg.rendering.white_back is False
    cfg = config_from_official(_modified(g, conv_clamp=256, num_fp16_res=4, sr_num_fp16_res=0))
    assert cfg.backbone_conv_clamp == 256.0 and cfg.sr_conv_clamp is None
    # Without num_layers the depth comes from the weights.
    assert config_from_official(_modified(g, mapping_kwargs={})).mapping_layers == 2
    # neural_rendering_resolution is the attribute, not anything in rendering_kwargs.
    cfg = config_from_official(dataclasses.replace(g, neural_rendering_resolution=128))
    assert cfg.rendering.neural_rendering_resolution == 128
