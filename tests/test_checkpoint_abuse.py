"""Crafted checkpoints that run no code but try to exhaust time or memory (issue 20), and broken weights.

Every crafted file is generated here. Each one is loaded in a child process of one harness process, which measures
the child's CPU time and peak RSS growth and kills it if it hangs; the bounds and their reasons are stated at
``MAX_CPU_S`` and ``BASE_MIB``.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pickle
import socket
import struct
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from eg3d_core.checkpoints import DEMO_MODEL, _build, load_generator
from eg3d_core.checkpoints import saved as native
from eg3d_core.checkpoints.guards import plain_data, weights_only_failure
from eg3d_core.checkpoints.mmagic import MMAGIC_KERNEL, _arch_from_config, _layout
from eg3d_core.checkpoints.official import OfficialGenerator, read_official_pickle
from eg3d_core.errors import CheckpointError
from eg3d_core.generator import Generator
from eg3d_core.presets import PRESETS

FIXTURES = Path(__file__).parent / "fixtures"

# Bounds every crafted load must stay under.
# CPU time, not wall time: the test machine is shared, and a child waiting for a core is not the loader's fault.
# The attacks took 32 s (a 24-level list chain) or never finished; loads of these small files take well under 1 s.
MAX_CPU_S = 5.0
# Peak RSS growth: the loader may hold a file's tensors, one float32 copy of them and the generator's own copy
# (three times the content of a float32 file; four allows a margin), plus 32 MiB for the unpickler's and torch's
# working memory (the largest growth seen for a file under 1 MiB is 8 MiB, a 100000-deep nesting). Before the fixes
# the crafted files grew by 108-764 MiB or never finished; the control below shows the measurement sees 256 MiB.
BASE_MIB = 32
PER_FILE_MIB = 4
# A child still running after this long is killed and reported as hanging (a named pipe blocked forever).
HANG_S = 60


# ---------------------------------------------------------------------------------------------------
# The harness: one process, one forked child per file
# ---------------------------------------------------------------------------------------------------

_HARNESS = r'''
import gc, json, os, re, resource, select, signal, sys, time
import torch
torch.set_num_threads(1)  # no worker threads exist when the children fork
from eg3d_core.checkpoints import load_generator, saved
from eg3d_core.checkpoints.mmagic import embedded_config, parse_mmagic_config, read_mmagic
from eg3d_core.checkpoints.official import read_official_pickle
from eg3d_core.errors import CheckpointError

LOADERS = {
    "load": load_generator, "official": read_official_pickle, "mmagic": read_mmagic, "native": saved.read,
    "mmagic_config": parse_mmagic_config, "embedded_config": embedded_config,
    "allocate_mib": lambda mib: torch.ones(int(mib) * 2**18),  # the control: memory the measurement must see
}
HANG_S, ADDRESS_SPACE = float(sys.argv[1]), int(sys.argv[2])
WARM_UP = json.loads(sys.argv[3])


def status_mib(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) / 1024


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(loader, arg):
    # A forked child maps the libraries' pages again as it runs them, which counts as RSS: one load of each
    # format first, then the peak is reset to the current RSS, so what is measured is the load's own memory.
    for path in WARM_UP:
        load_generator(path)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    # Fail instead of swapping the shared machine should a regression allocate gigabytes.
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + ADDRESS_SPACE, vm + ADDRESS_SPACE))
    rss0, cpu0 = status_mib("VmRSS"), cpu_s()
    wall0 = time.perf_counter()
    try:
        LOADERS[loader](arg)
        outcome, message = "ok", ""
    except CheckpointError as e:
        outcome, message = "CheckpointError", str(e)
    except BaseException as e:
        outcome, message = type(e).__name__, str(e)[:500]
    return {"outcome": outcome, "message": message, "growth_mib": status_mib("VmHWM") - rss0,
            "cpu_s": cpu_s() - cpu0, "wall_s": time.perf_counter() - wall0}


for path in WARM_UP:  # the first loads initialise parts of torch that every child shares
    load_generator(path)
results = {}
for name, loader, arg in json.load(sys.stdin):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(child(loader, arg)).encode())
        os._exit(0)
    os.close(w)
    if select.select([r], [], [], HANG_S)[0]:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        results[name] = json.loads(data) if data else {"outcome": "died", "message": ""}
    else:
        os.kill(pid, signal.SIGKILL)
        os.close(r)
        results[name] = {"outcome": "hung", "message": f"killed after {HANG_S} s"}
    os.waitpid(pid, 0)
print(json.dumps(results))
'''


# glibc keeps freed memory for reuse (and raises its mmap threshold after large frees), which would hide a load's
# growth behind what the warm-up freed: large blocks always mmapped, freed memory always returned.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
_WARM_UP = [str(FIXTURES / "tiny_cars128" / name) for name in ("network-snapshot.pkl", "mmagic.pth")] + ["demo"]


def _run_harness(cases: list[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", _HARNESS, str(HANG_S), str(4 << 30), json.dumps(_WARM_UP)], input=json.dumps(cases),
        capture_output=True,
        text=True, timeout=HANG_S * len(cases) + 120, env={**os.environ, "OMP_NUM_THREADS": "1", **_MALLOC}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# Official network pickles, written the way torch_utils.persistence writes them
# ---------------------------------------------------------------------------------------------------

def _reconstruct_persistent_obj(meta: dict) -> None:  # only its name is pickled
    raise AssertionError("never called")


@pytest.fixture(scope="module")
def persistence() -> Iterator[None]:
    """Lets pickle write ``torch_utils.persistence._reconstruct_persistent_obj`` references."""
    module = types.ModuleType("torch_utils.persistence")
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_reconstruct_persistent_obj, "__module__", "torch_utils.persistence")
        mp.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
        mp.setitem(sys.modules, "torch_utils.persistence", module)
        yield


class _Persistent:
    """A persistent object as the official pickles hold it: a class name, a module and the instance state."""

    def __init__(self, class_name: str, state: dict, module: str = "training.networks_stylegan2") -> None:
        self.meta = {"type": "class", "version": 6, "module_src": f"# module source omitted ({module})",
                     "class_name": class_name, "state": state}

    def __reduce__(self) -> Any:
        return _reconstruct_persistent_obj, (self.meta,)


def _module(params: dict | None = None, children: dict | None = None, class_name: str = "Module") -> _Persistent:
    return _Persistent(class_name, {"_parameters": params or {}, "_buffers": {}, "_modules": children or {}})


def _snapshot(init_kwargs: Any, children: dict | None = None, rendering_kwargs: Any = None,
              params: dict | None = None, nrr: int = 64, protocol: int = 4) -> bytes:
    """``{'G_ema': TriPlaneGenerator}`` with the given state; a 2X super-resolution child is always there."""
    modules = {"superresolution": _module(class_name="SuperresolutionHybrid2X"), **(children or {})}
    state = {"_init_kwargs": init_kwargs, "rendering_kwargs": rendering_kwargs or {}, "neural_rendering_resolution": nrr,
             "_parameters": params or {}, "_buffers": {}, "_modules": modules}
    return pickle.dumps({"G_ema": _Persistent("TriPlaneGenerator", state, "training.triplane")}, protocol=protocol)


class _View:
    """Pickles as a tensor view of ``storage`` (one pickled copy of it, however many views share it)."""

    def __init__(self, storage: torch.TypedStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage = storage
        self.args = (offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> Any:
        return torch._utils._rebuild_tensor_v2, (self.storage, *self.args)


def _from_official(g: OfficialGenerator, **changes: Any) -> bytes:
    """A snapshot holding ``g``'s weights as a module tree, with its init kwargs changed."""
    tree: dict = {}
    for key, tensor in g.state_dict.items():
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = tensor

    def build(node: dict, class_name: str = "Module") -> _Persistent:
        return _module({k: v for k, v in node.items() if isinstance(v, torch.Tensor)},
                       {k: build(v, g.sr_class if k == "superresolution" else "Module")
                        for k, v in node.items() if isinstance(v, dict)}, class_name)

    params = {k: v for k, v in tree.items() if isinstance(v, torch.Tensor)}
    children = {k: build(v, g.sr_class if k == "superresolution" else "Module")
                for k, v in tree.items() if isinstance(v, dict)}
    root = _Persistent("TriPlaneGenerator", {
        "_init_kwargs": {**g.init_kwargs, **changes}, "rendering_kwargs": g.rendering_kwargs,
        "neural_rendering_resolution": g.neural_rendering_resolution,
        "_parameters": params, "_buffers": {}, "_modules": children}, "training.triplane")
    return pickle.dumps({"G_ema": root}, protocol=4)


def _list_chain(depth: int) -> list:
    """Each level holds the level below twice: ``depth`` levels stand for 2**depth lists in a few bytes each."""
    chain: list = [0]
    for _ in range(depth):
        chain = [chain, chain]
    return chain


def _module_dag(depth: int) -> _Persistent:
    """Each module holds the one below under two names: 2**depth paths to the bottom."""
    node = _module({"weight": torch.zeros(256)})
    for _ in range(depth):
        node = _module(children={"a": node, "b": node})
    return node


def _nested_lists(depth: int) -> bytes:
    """Raw ops for ``[[[...]]]``: EMPTY_LIST ``depth`` times, then APPEND each into the one below."""
    return b"]" * depth + b"a" * (depth - 1)


def _binunicode(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text)) + text.encode()


# ---------------------------------------------------------------------------------------------------
# MMagic files
# ---------------------------------------------------------------------------------------------------

_FFHQ_LAYOUT = _layout(_arch_from_config(PRESETS["ffhq512-128"]))  # 30.8 M weights, 123 MB in float32


def _mmagic(tensor_for: Any) -> dict:
    """An MMagic checkpoint of the FFHQ architecture, its tensors made by ``tensor_for(shape)``."""
    return {"state_dict": {f"generator.{e.mmagic}": MMAGIC_KERNEL.clone() if e.official is None
                           else tensor_for(e.mmagic_shape) for e in _FFHQ_LAYOUT}}


def _deflate(source: Path, target: Path) -> None:
    """``source``'s zip records written again, deflated (torch's reader inflates them)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with src.open(info) as r, dst.open(info.filename, "w") as w:
                while chunk := r.read(1 << 22):
                    w.write(chunk)


class _Evil:
    def __reduce__(self) -> Any:
        return os.system, ("true",)


def _with_bad_value(sd: dict[str, torch.Tensor], key: str, value: float) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in sd.items()}
    out[key].view(-1)[out[key].numel() // 2] = value
    return out


# ---------------------------------------------------------------------------------------------------
# The cases: (loader, file or argument, what the one-line error must say; None: it loads)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, persistence: None) -> dict[str, tuple[str, Any, str | None]]:
    d = tmp_path_factory.mktemp("abuse")
    cars = FIXTURES / "tiny_cars128"
    official = read_official_pickle(cars / "network-snapshot.pkl")
    G = load_generator(cars / "network-snapshot.pkl")

    def write(name: str, data: bytes) -> str:
        (d / name).write_bytes(data)
        return str(d / name)

    def save(name: str, obj: Any) -> str:
        torch.save(obj, d / name)
        return str(d / name)

    kwargs = {"z_dim": 64}
    shared = {"k": [1]}
    # pickle writes one copy of an object however often it is referenced: one storage for every view below
    pool = torch.TypedStorage(wrap_storage=torch.zeros(1_000_000).untyped_storage(), dtype=torch.float32,
                              _internal=True)
    one_float = torch.TypedStorage(wrap_storage=torch.zeros(1).untyped_storage(), dtype=torch.float32, _internal=True)
    one = torch.zeros(512 * 512 * 9)  # the largest FFHQ tensor; all MMagic tensors below are views of it
    deep = _snapshot({**kwargs, "x": "@@DEEP@@"}, protocol=3)
    deep = deep.replace(_binunicode("@@DEEP@@"), _nested_lists(100_000))  # no frames to fix in protocol 3
    cases: dict[str, tuple[str, Any, str | None]] = {
        # Official pickles
        "official list chain 24": ("load", write("chain24.pkl", _snapshot({**kwargs, "x": _list_chain(24)})),
                                   "references the same list twice"),
        # Depth first: 60 levels meet the depth bound before the second reference to any level.
        "official list chain 60": ("load", write("chain60.pkl", _snapshot({**kwargs, "x": _list_chain(60)})),
                                   "nested deeper than 32 levels"),
        "official shared dict": ("load", write("shared.pkl", _snapshot(kwargs, rendering_kwargs={"a": shared, "b": shared})),
                                 "rendering_kwargs references the same dict twice"),
        "official kwargs 100000 deep": ("load", write("deep.pkl", deep), "nested deeper than 32 levels"),
        "official module shared under two names": (
            "load", write("dag.pkl", _snapshot(kwargs, children={"net": _module_dag(30)})), "appears twice"),
        "official stride-0 tensor": (
            "load", write("stride0.pkl", _snapshot(kwargs, params={"w": _View(one_float, 0, (100_000_000,), (0,))})),
            "repeats its data"),
        "official overlapping tensors": (
            "load", write("overlap.pkl", _snapshot(kwargs, params={
                f"w{i}": _View(pool, i, (999_000,), (1,)) for i in range(100)})), "tensors overlap"),
        "official config far larger than its weights": (
            "load", write("big.pkl", _from_official(official, z_dim=4096, w_dim=4096, c_dim=4096)),
            "has shape (32, 512), expected (32, 4096) for this config"),
        "official NaN weight": (
            "load", write("nan.pkl", _from_official(dataclasses.replace(official, state_dict=_with_bad_value(
                official.state_dict, "decoder.net.0.weight", math.nan)))),
            "weight 'decoder.net.0.weight' holds NaN values"),
        "official fixture (control)": ("load", str(cars / "network-snapshot.pkl"), None),
        # MMagic .pth
        "mmagic stride-0 views": ("load", save("stride0.pth", _mmagic(lambda s: torch.zeros(1).expand(s))),
                                  "repeats its data"),
        "mmagic views of one storage": (
            "load", save("overlap.pth", _mmagic(lambda s: one[:math.prod(s)].view(s))),
            "tensors overlap"),
        "mmagic forbidden global": ("load", save("evil.pth", {"state_dict": {}, "x": _Evil()}),
                                    "forbidden global posix.system"),
        "mmagic infinite weight": ("load", save("inf.pth", {"state_dict": _with_bad_value(
            torch.load(cars / "mmagic.pth", weights_only=True)["state_dict"],
            "generator.renderer.decoder.net.2.bias", math.inf)}), "weight 'decoder.net.2.bias' holds infinite values"),
        "mmagic embedded config list chain 60": (
            "embedded_config", save("chain.pth", {"meta": {"eg3d_config": {"z_dim": _list_chain(60)}}}), None),
        "mmagic fixture (control)": ("load", str(cars / "mmagic.pth"), None),
        # Our own format
        "native NaN weight": ("load", str(native.save(_with_bad_value(
            G.state_dict(), "backbone.synthesis.b4.const", math.nan), G.config, d / "nan_native")),
            "weight 'backbone.synthesis.b4.const' holds NaN values"),
        "native demo model (control)": ("load", "demo", None),
        # Not regular files
        "folder as a pickle": ("official", str(d), "is a folder"),
        "character device": ("load", "/dev/zero", "is a character device"),
        # The measurement itself must see memory: 256 MiB allocated by the child.
        "control allocation": ("allocate_mib", 256, None),
    }

    zeros = save("zeros.pth", _mmagic(torch.zeros))
    _deflate(Path(zeros), d / "deflated.pth")
    os.remove(zeros)
    cases["mmagic deflated records"] = ("load", str(d / "deflated.pth"), "is compressed")

    fifo = d / "pipe.pkl"
    os.mkfifo(fifo)
    for loader in ("load", "official", "mmagic", "native", "mmagic_config"):
        cases[f"named pipe ({loader})"] = (loader, str(fifo), "is a named pipe")
    sock_path = d / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))  # the socket file stays after close
    cases["socket"] = ("load", str(sock_path), "is a socket")
    return cases


@pytest.fixture(scope="module")
def results(cases: dict[str, tuple[str, Any, str | None]]) -> dict[str, dict[str, Any]]:
    measured = _run_harness([(name, loader, arg) for name, (loader, arg, _) in cases.items()])
    for name, (_, arg, _) in cases.items():
        path = native.weights_path(DEMO_MODEL if arg == "demo" else str(arg))
        measured[name]["file_mib"] = (path.stat().st_size if path.is_file() else 0) / 2**20
    return measured


CASE_NAMES = [
    "official list chain 24", "official list chain 60", "official shared dict", "official kwargs 100000 deep",
    "official module shared under two names", "official stride-0 tensor", "official overlapping tensors",
    "official config far larger than its weights", "official NaN weight", "official fixture (control)",
    "mmagic stride-0 views", "mmagic views of one storage", "mmagic forbidden global", "mmagic infinite weight",
    "mmagic embedded config list chain 60", "mmagic deflated records", "mmagic fixture (control)", "native NaN weight",
    "native demo model (control)", "folder as a pickle", "character device", "socket",
    *(f"named pipe ({loader})" for loader in ("load", "official", "mmagic", "native", "mmagic_config")),
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_crafted_file_is_refused_within_bounds(cases: dict, results: dict, name: str) -> None:
    _, _, expected = cases[name]
    r = results[name]
    if expected is None:
        assert r["outcome"] == "ok", r
    else:
        assert r["outcome"] == "CheckpointError", r
        assert expected in r["message"], r["message"]
        assert "\n" not in r["message"], r["message"]
    assert r["cpu_s"] < MAX_CPU_S, r
    bound = BASE_MIB + PER_FILE_MIB * r["file_mib"]
    assert r["growth_mib"] < bound, f"{name}: peak RSS grew {r['growth_mib']:.0f} MiB, bound {bound:.0f} MiB"


def test_the_measurement_sees_memory(results: dict) -> None:
    r = results["control allocation"]
    assert r["outcome"] == "ok", r
    assert r["growth_mib"] >= 240, r  # 256 MiB of ones, written, so resident


def test_every_case_is_checked(cases: dict) -> None:
    assert sorted(CASE_NAMES + ["control allocation"]) == sorted(cases)


# ---------------------------------------------------------------------------------------------------
# Direct checks of the pieces
# ---------------------------------------------------------------------------------------------------

def test_size_check_refuses_a_config_larger_than_the_file(tmp_path: Path) -> None:
    """Names and shapes can all match while the weights are views of almost nothing (a format whose reader
    let such views through): the weight count must still fit in the file's bytes before anything is built."""
    config = PRESETS["shapenetcars128-64"]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Generator(config).state_dict().items()}
    views = {k: torch.zeros(()).expand(s) for k, s in shapes.items()}
    small = tmp_path / "small.bin"
    small.write_bytes(b"\0" * 1000)
    with pytest.raises(CheckpointError, match=r"the config needs 29762760 weights, more than a 1000-byte file"):
        _build(views, config, small, "cpu")


def test_plain_data_keeps_trees_and_refuses_graphs() -> None:
    tree = {"a": [1, 2.5, "x", None, True], "b": ({"c": ()}, ()), "d": [], "e": []}
    assert plain_data(tree, "kwargs") == tree
    shared = [1]
    with pytest.raises(CheckpointError, match="kwargs references the same list twice"):
        plain_data({"a": shared, "b": shared}, "kwargs")
    with pytest.raises(CheckpointError, match="nested deeper than 32"):
        plain_data(_nested(40), "kwargs")
    plain_data(_nested(31), "kwargs")
    with pytest.raises(CheckpointError, match="more than 100000 values"):
        plain_data(list(range(100_000)), "kwargs")
    with pytest.raises(CheckpointError, match="a value of type object"):
        plain_data({"a": object()}, "kwargs")


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("payload,name", [(_Evil(), "posix.system"), (Path("/tmp"), "pathlib.PosixPath")])
def test_weights_only_refusal_names_the_global_and_no_unsafe_advice(tmp_path: Path, payload: Any, name: str) -> None:
    path = tmp_path / "x.pth"
    torch.save({"state_dict": {}, "payload": payload}, path)
    with pytest.raises(Exception) as info:
        torch.load(path, weights_only=True)
    assert "weights_only` set to `False`" in str(info.value)  # what torch says, and must not be passed on
    message = weights_only_failure(info.value)
    assert message == f"it references the forbidden global {name} (only tensors and plain containers are allowed)"
    with pytest.raises(CheckpointError) as refused:
        load_generator(path)
    assert name in str(refused.value) and "weights_only" not in str(refused.value)
    assert "Re-running" not in str(refused.value) and "\n" not in str(refused.value)
