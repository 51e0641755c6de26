"""Safe reader for the official EG3D network pickles (``network-snapshot-*.pkl``, ``ffhq512-128.pkl``, ...).

The official loader (``legacy.load_network_pkl``) is a plain ``pickle.load``: it ``exec``s the module
source text embedded in every persistent object and imports ``training.*`` classes by reference, so a
network pickle can run arbitrary code. This module never does either. It uses a restricted unpickler
whose ``find_class`` only resolves a short whitelist (plain containers, tensor rebuilders and inert
stand-ins for the network classes); every other global is refused before anything is called.

What comes back is data only: the ``G_ema`` state dict under the official key names plus the
constructor kwargs and plain attributes needed to rebuild the generator (``config_from_official``).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch

from ..config import GeneratorConfig, RenderingConfig
from ..errors import CheckpointError
from .guards import check_tensor_views, one_line, plain_data, regular_file_size, weights_only_failure

__all__ = [
    "OfficialGenerator",
    "config_from_official",
    "looks_like_pickle",
    "read_official_pickle",
]

# A legacy (non-zip) ``torch.save`` file is also a protocol-2 pickle; it starts with the pickled
# torch magic number. It is not a network pickle, so the format sniffing must not claim it.
_LEGACY_TORCH_SAVE_HEAD = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

_SR_MODULES = {
    "SuperresolutionHybrid2X": "2X",
    "SuperresolutionHybrid4X": "4X",
    "SuperresolutionHybrid8X": "8X",
    "SuperresolutionHybrid8XDC": "8XDC",
}
# Output resolution each official SR class is hard-wired for.
_SR_OUTPUT_RESOLUTION = {"2X": 128, "4X": 256, "8X": 512, "8XDC": 512}

# Constructor kwargs train.py passes to TriPlaneGenerator; anything else could change the architecture
# in a way this re-implementation does not know about, so it is refused rather than ignored.
_KNOWN_INIT_KWARGS = frozenset({
    "z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "mapping_kwargs", "channel_base",
    "channel_max", "fused_modconv_default", "rendering_kwargs", "num_fp16_res", "sr_num_fp16_res",
    "sr_kwargs", "conv_clamp",
})
# mapping_kwargs keys that do not change inference (w_avg_beta only matters while training).
_KNOWN_MAPPING_KWARGS = frozenset({"num_layers", "w_avg_beta"})
# The official generator's modules nest five levels deep.
_MAX_MODULE_DEPTH = 32


# ---------------------------------------------------------------------------------------------------
# Public result type
# ---------------------------------------------------------------------------------------------------

@dataclass
class OfficialGenerator:
    """``G_ema`` of an official network pickle, reduced to plain data."""

    state_dict: dict[str, torch.Tensor]  # official key names, CPU float32, incl. all buffers
    init_kwargs: dict  # TriPlaneGenerator constructor kwargs, EasyDicts turned into plain dicts
    rendering_kwargs: dict  # the G_ema.rendering_kwargs attribute (authoritative, not init_kwargs')
    neural_rendering_resolution: int
    sr_class: str  # class name of G_ema.superresolution, e.g. 'SuperresolutionHybrid8XDC'


# ---------------------------------------------------------------------------------------------------
# Inert stand-ins for the classes a network pickle references
# ---------------------------------------------------------------------------------------------------

class _PickledModule:
    """Common shape of everything that stood for an ``nn.Module`` in the pickle: where it came from
    and its instance ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, plain attributes)."""

    module: str | None = None  # e.g. 'training.triplane'; None when the embedded source is unrecognised
    class_name: str = ""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<pickled {self.module or '?'}.{self.class_name}>"


class _PersistentObject(_PickledModule):
    """Result of ``torch_utils.persistence._reconstruct_persistent_obj``: the meta dict's data, with the
    embedded module source reduced to the module's name (the source itself is never executed)."""

    def __init__(self, module: str | None, class_name: str, state: dict[str, Any]) -> None:
        super().__init__()
        self.module = module
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state: Any) -> None:
        # The official __reduce__ carries the state inside meta; a BUILD on top of it is not EG3D data.
        raise CheckpointError("the pickle modifies a persistent object after creating it")


class _ReferencedModule(_PickledModule):
    """Base of the stand-ins for classes pickled by reference (OSGDecoder, torch's Sequential, ...).

    Pickle creates them with ``cls.__new__(cls)`` and then hands the instance ``__dict__`` to
    ``__setstate__``, exactly as it would for the real ``nn.Module``."""

    def __new__(cls, *args: Any) -> _ReferencedModule:
        if args:  # nn.Modules are pickled with copyreg.__newobj__(cls), i.e. without arguments
            raise CheckpointError(f"{cls.class_name} in the pickle is created with unexpected arguments")
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        # Protocol 2+ BUILD passes the __dict__, or (dict, slot_dict) for objects with slots.
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.class_name} in the pickle has a malformed state ({type(state).__name__})")
        self.state = state


def _referenced_stub(module: str, name: str) -> type[_ReferencedModule]:
    return type(name, (_ReferencedModule,), {"module": module, "class_name": name})


# ---------------------------------------------------------------------------------------------------
# Module identification for persistent objects
# ---------------------------------------------------------------------------------------------------

# Fixtures (and anything else that strips the embedded source) carry this one-line placeholder.
_PLACEHOLDER_RE = re.compile(r"# module source omitted \(([A-Za-z_][\w.]*)\)")
_CLASS_DEF_RE = re.compile(r"^class\s+([A-Za-z_]\w*)\s*[(:]", re.MULTILINE)

# Released pickles embed the full text of the defining file instead. Class names collide across the
# official modules (networks_stylegan2 vs networks_stylegan3), so the module is recognised from the set
# of classes its text *defines* (found with a regex; the text is never compiled or executed).
# First match wins, so the more specific signatures come first.
_MODULE_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("training.triplane", frozenset({"TriPlaneGenerator"})),
    ("training.dual_discriminator", frozenset({"DualDiscriminator"})),
    ("training.augment", frozenset({"AugmentPipe"})),
    ("training.superresolution", frozenset({"SynthesisBlockNoUp"})),  # defined next to the SR classes
    ("training.networks_stylegan3", frozenset({"SynthesisInput", "MappingNetwork"})),
    ("training.networks_stylegan2", frozenset({"MappingNetwork", "SynthesisBlock", "ToRGBLayer"})),
)


def _module_from_source(src: str, cache: dict[str, str | None]) -> str | None:
    """Name of the official module whose source (or placeholder) ``src`` is; None if unrecognised."""
    if src in cache:  # the same (large) source string backs every object of that module
        return cache[src]
    module: str | None = None
    placeholder = _PLACEHOLDER_RE.fullmatch(src.strip())
    if placeholder:
        module = placeholder.group(1)
    else:
        defined = set(_CLASS_DEF_RE.findall(src))
        for name, signature in _MODULE_SIGNATURES:
            if signature <= defined:
                module = name
                break
    cache[src] = module
    return module


# ---------------------------------------------------------------------------------------------------
# Whitelisted callables
# ---------------------------------------------------------------------------------------------------

class _Callable:
    """Wraps a whitelisted function so that pickle can call it but never modify it.

    Handing the function itself to pickle would let a crafted BUILD opcode set attributes such as
    ``__defaults__`` on it (pickle's slot-state path uses ``setattr``); this wrapper refuses BUILD."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("the pickle tries to modify a function it references")


def _load_storage_from_bytes(data: Any) -> torch.storage.TypedStorage:
    """Replacement for ``torch.storage._load_from_bytes``.

    Each storage is a nested legacy ``torch.save`` stream. torch's own function loads it without a
    map_location (fails for storages saved on a GPU) and with the unrestricted unpickler; here it goes
    through torch's weights-only unpickler and always lands on the CPU, whatever device it names."""
    if not isinstance(data, bytes | bytearray):
        raise CheckpointError(f"a tensor storage in the pickle is {type(data).__name__}, not bytes")
    failure = None
    try:
        with warnings.catch_warnings():
            # A damaged stream makes torch warn (e.g. about an unknown pickle protocol) before failing.
            warnings.simplefilter("ignore")
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # anything torch rejects is a corrupt or unsafe storage stream
        failure = weights_only_failure(e)
    if failure is not None:  # raised outside the except block, see _read
        raise CheckpointError(f"a tensor storage in the pickle cannot be loaded safely: {failure}")
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointError(f"a tensor storage in the pickle decodes to {type(storage).__name__}")
    return storage


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
    backward_hooks: Any = None, metadata: Any = None,
) -> torch.Tensor:
    """Replacement for ``torch._utils._rebuild_tensor_v2``: a strided view of a CPU storage.

    ``requires_grad``, backward hooks and metadata are ignored: they only matter for training."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointError(f"a tensor in the pickle is built from {type(storage).__name__}, not a storage")
    if not (isinstance(storage_offset, int) and storage_offset >= 0 and _is_int_tuple(size)
            and _is_int_tuple(stride) and len(size) == len(stride)):
        raise CheckpointError("a tensor in the pickle has a malformed offset, size or stride")
    # set_() silently *grows* the storage when the view does not fit (uninitialised memory, or a huge
    # allocation for a crafted size), so the extent is checked here first.
    if all(size):
        extent = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
        if extent > storage.size():
            raise CheckpointError(f"a tensor in the pickle reaches past its storage ({extent} > {storage.size()} elements)")
    return torch.empty((0,), dtype=storage.dtype).set_(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> Any:
    """Replacement for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor is enough."""
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter in the pickle wraps {type(data).__name__}, not a tensor")
    return data


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | bool:
    """Replacement for numpy's ``multiarray.scalar``: numeric scalars only, returned as Python numbers.

    The official layers store gains computed with numpy (``weight_gain = 1/np.sqrt(fan_in)``) as float64
    scalars. numpy's own function would also build object scalars from arbitrary pickled objects."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise CheckpointError("the pickle contains a numpy scalar that is not a plain number")
    if len(data) != dtype.itemsize:
        raise CheckpointError("the pickle contains a malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _numpy_dtype(spec: Any, align: Any = False, _copy: Any = True) -> np.dtype:
    """``numpy.dtype`` restricted to simple numeric types (what numpy scalars are pickled with).

    Always a copy: pickle applies the dtype's state to the returned object (BUILD), which must never
    be numpy's shared built-in float64 descriptor."""
    if not isinstance(spec, str) or len(spec) > 8:
        raise CheckpointError("the pickle contains an unsupported numpy dtype")
    try:
        dtype = np.dtype(spec, bool(align), True)
    except TypeError:
        raise CheckpointError(f"the pickle contains an unknown numpy dtype {spec!r}") from None
    if dtype.kind not in "biuf":
        raise CheckpointError(f"the pickle contains an unsupported numpy dtype {spec!r}")
    return dtype


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict subclass); converted to a plain dict afterwards."""

    def __setstate__(self, state: Any) -> None:
        # An EasyDict's attributes live in its items, so a pickled one carries no instance state;
        # anything else is unexpected but harmless to drop.
        pass


# ---------------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------------

_NON_PERSISTENT_CLASSES = (
    ("training.triplane", "OSGDecoder"),
    ("training.volumetric_rendering.renderer", "ImportanceRenderer"),
    ("training.volumetric_rendering.ray_sampler", "RaySampler"),
    ("training.volumetric_rendering.ray_marcher", "MipRayMarcher2"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.activation", "Softplus"),
)
_STUBS: dict[tuple[str, str], type[_ReferencedModule]] = {
    key: _referenced_stub(*key) for key in _NON_PERSISTENT_CLASSES
}


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from the whitelist below (spec 10.5)."""

    def __init__(self, file: _CappedReader) -> None:
        super().__init__(file)
        self._module_cache: dict[str, str | None] = {}
        self._globals: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            # Protocols <= 3 write sets (nn.Module._non_persistent_buffers_set) as set(list).
            ("builtins", "set"): set,
            ("__builtin__", "set"): set,
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("numpy", "dtype"): _Callable(_numpy_dtype),
            ("numpy.core.multiarray", "scalar"): _Callable(_numpy_scalar),  # written by numpy 1.x
            ("numpy._core.multiarray", "scalar"): _Callable(_numpy_scalar),  # written by numpy 2.x
            ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2),
            ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
            ("torch._utils", "_rebuild_parameter_with_state"): _Callable(_rebuild_parameter),
            ("torch.storage", "_load_from_bytes"): _Callable(_load_storage_from_bytes),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Callable(self._reconstruct_persistent_obj),
            **_STUBS,
        }

    def find_class(self, module: str, name: str) -> Any:
        found = self._globals.get((module, name))
        if found is None:
            what = one_line(f"{module}.{name}")
            raise CheckpointError(
                f"the pickle references a forbidden global {what}; refusing to load it "
                "(only EG3D network data is allowed)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        # Network pickles never use persistent ids (only the nested storage streams do, and torch's
        # weights-only loader handles those).
        raise CheckpointError("unexpected persistent id in the pickle")

    def _reconstruct_persistent_obj(self, meta: Any) -> _PersistentObject:
        """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``.

        The official function execs ``meta['module_src']`` and instantiates the class found there;
        this one only records which module/class the object belongs to and keeps its state."""
        if not isinstance(meta, Mapping) or meta.get("type") != "class":
            raise CheckpointError("malformed persistent object in the pickle")
        src, class_name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
        if not isinstance(src, str) or not isinstance(class_name, str) or not isinstance(state, Mapping):
            raise CheckpointError("malformed persistent object in the pickle")
        return _PersistentObject(_module_from_source(src, self._module_cache), class_name, dict(state))


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------

def looks_like_pickle(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts like a protocol 2-5 pickle that is not a
    legacy ``torch.save`` file. Network pickles are written with protocol 4 (Python 3.8+ default)."""
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    return not head.startswith(_LEGACY_TORCH_SAVE_HEAD)


class _CappedReader:
    """File wrapper whose reads never ask for more than what is left in the file.

    The unpickler turns length fields (FRAME, BINBYTES8, ...) directly into ``read(n)`` calls; capping
    them keeps a corrupt or crafted length from becoming a huge read request against the file, so it
    ends as a plain "truncated" error."""

    def __init__(self, f: IO[bytes], remaining: int) -> None:
        self._f = f
        self._remaining = remaining

    def read(self, n: int = -1) -> bytes:
        n = self._remaining if n is None or n < 0 else min(n, self._remaining)
        data = self._f.read(n)
        self._remaining -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        # Release the views at once: the unpickler frees its buffer when the read comes up short.
        with memoryview(buf) as view, view.cast("B") as flat:
            data = self.read(len(flat))
            flat[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = self._f.readline(self._remaining)
        self._remaining -= len(line)
        return line

    def tell(self) -> int:  # lets pickletools report positions in its errors
        return self._f.tell()

    @property
    def remaining(self) -> int:
        return self._remaining


def read_official_pickle(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> OfficialGenerator:
    """Read ``G_ema`` from an official EG3D network pickle without executing anything from it.

    Raises ``CheckpointError`` (one-line message) for anything that is not a readable, safe EG3D
    network pickle: missing or empty file, truncated or corrupt data, a forbidden global, a pickle
    whose content is not a TriPlaneGenerator snapshot."""
    if not isinstance(path_or_fileobj, str | os.PathLike):
        return _read(path_or_fileobj, str(getattr(path_or_fileobj, "name", "<stream>")))
    source = os.fspath(path_or_fileobj)
    regular_file_size(source)  # a named pipe or a device would block or never end
    try:
        with open(source, "rb") as f:
            return _read(f, source)
    except OSError as e:
        failure = e.strerror or _first_line(e)
    raise CheckpointError(f"cannot read {one_line(source)}: {failure}")


def _read(f: IO[bytes], source: str) -> OfficialGenerator:
    """Every error names the file once, in front; the helpers below raise messages without it.

    Errors are re-raised *after* the except block, here and below: raising inside it would chain the
    original exception, whose traceback frames hold the half-unpickled data, into a reference cycle
    that keeps all of it in memory until the next garbage collection."""
    try:
        return _read_unnamed(f)
    except CheckpointError as e:
        failure = str(e)
    raise CheckpointError(f"{one_line(source)}: {failure}")


def _read_unnamed(f: IO[bytes]) -> OfficialGenerator:
    try:
        start = f.tell()
        remaining = f.seek(0, io.SEEK_END) - start
        f.seek(start)
    except (AttributeError, OSError, ValueError):  # not seekable: its size is bounded by what it holds
        f = io.BytesIO(f.read())
        remaining = len(f.getbuffer())
    if remaining <= 0:
        raise CheckpointError("the file is empty")
    head = f.read(16)
    f.seek(-len(head), io.SEEK_CUR)
    if not looks_like_pickle(head):
        if head.startswith(_LEGACY_TORCH_SAVE_HEAD):
            reason = "it is a legacy torch.save file"
        elif head.startswith(b"PK"):
            reason = "it is a zip archive, e.g. a torch.save checkpoint"
        else:
            reason = "the data is not a protocol 2-5 pickle"
        raise CheckpointError(f"not an EG3D network pickle ({reason})")
    failure = None
    try:
        with warnings.catch_warnings():
            # pickletools warns about odd escapes in damaged text opcodes; the failure is reported anyway.
            warnings.simplefilter("ignore")
            _check_opcodes(_CappedReader(f, remaining))
    except Exception as e:  # untrusted bytes can fail in any way; each failure becomes one line
        failure = _failure(e, "corrupt pickle")
    if failure is not None:
        raise CheckpointError(failure)
    f.seek(-remaining, io.SEEK_END)
    unpickler = _RestrictedUnpickler(_CappedReader(f, remaining))
    try:
        with warnings.catch_warnings():
            # torch's legacy-storage path warns that TypedStorage is deprecated; irrelevant here.
            warnings.filterwarnings("ignore", message=r"TypedStorage is deprecated", category=UserWarning)
            data = unpickler.load()
    except Exception as e:
        failure = _failure(e, "corrupt pickle")
    del unpickler  # its memo holds every object unpickled so far
    if failure is not None:
        raise CheckpointError(failure)
    try:
        return _extract_generator(data)
    except Exception as e:  # well-formed pickle data, but not shaped like G_ema
        failure = _failure(e, "malformed EG3D generator")
    raise CheckpointError(failure)


def _check_opcodes(f: _CappedReader) -> None:
    """Walk the opcode stream once, without building anything, before the real unpickling.

    This catches truncation early, and it bounds memo indices: CPython's C unpickler sizes its memo
    array by the largest index it is asked to store (``LONG_BINPUT 2**31`` means a 16 GiB zero-filled
    array), so a few corrupt bytes could exhaust memory. A pickler numbers memo entries 0, 1, 2, ...,
    so a valid index never exceeds the number of entries stored before it."""
    memo_entries = 0
    failure = None
    try:
        for op, arg, _ in pickletools.genops(f):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not isinstance(arg, int) or not 0 <= arg <= memo_entries:
                    raise CheckpointError(f"corrupt pickle (memo index {arg!r} out of sequence)")
                memo_entries += 1
            elif op.name == "MEMOIZE":
                memo_entries += 1
    except ValueError as e:  # genops' way of reporting unknown opcodes and short data
        failure = _first_line(e)
    if failure is not None:
        if f.remaining == 0:
            raise CheckpointError(f"truncated pickle: the data ends before the pickle does ({failure})")
        raise CheckpointError(f"corrupt pickle ({failure})")


def _failure(e: Exception, what: str) -> str:
    """One-line message for an exception raised while decoding untrusted data."""
    if isinstance(e, CheckpointError):
        return str(e)
    if isinstance(e, EOFError | pickle.UnpicklingError):
        return f"truncated or {what} ({_first_line(e)})"
    if isinstance(e, RecursionError):
        return f"{what} (nested too deeply)"
    if isinstance(e, MemoryError):
        return f"{what} (asks for more memory than available)"
    return f"{what} ({type(e).__name__}: {_first_line(e)})"


def _extract_generator(data: Any) -> OfficialGenerator:
    if not isinstance(data, dict) or "G_ema" not in data:
        found = f"a dict with keys {_short_keys(data)}" if isinstance(data, dict) else _describe(data)
        raise CheckpointError(f"not an EG3D network pickle: expected a dict with 'G_ema', found {found}")
    g = data["G_ema"]
    if not (isinstance(g, _PersistentObject) and g.class_name == "TriPlaneGenerator"
            and g.module == "training.triplane"):
        raise CheckpointError(f"not an EG3D network pickle: G_ema is {_describe(g)}, "
                              "not training.triplane.TriPlaneGenerator")
    state = g.state
    init_kwargs = state.get("_init_kwargs")
    rendering_kwargs = state.get("rendering_kwargs")
    nrr = state.get("neural_rendering_resolution")
    if not isinstance(init_kwargs, dict) or not isinstance(rendering_kwargs, dict):
        raise CheckpointError("G_ema lacks its constructor kwargs or rendering_kwargs")
    if isinstance(nrr, bool) or not isinstance(nrr, int) or nrr <= 0:
        raise CheckpointError(f"G_ema has no valid neural_rendering_resolution ({nrr!r})")
    sr = _children(g).get("superresolution")
    if not isinstance(sr, _PickledModule):
        raise CheckpointError("G_ema has no superresolution module")
    return OfficialGenerator(
        state_dict=_state_dict(g),
        init_kwargs=plain_data(init_kwargs, "G_ema's constructor kwargs"),
        rendering_kwargs=plain_data(rendering_kwargs, "G_ema's rendering_kwargs"),
        neural_rendering_resolution=nrr,
        sr_class=sr.class_name,
    )


def _children(node: _PickledModule) -> dict[str, Any]:
    modules = node.state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(f"{node!r} has a malformed _modules entry")
    return modules


def _state_dict(root: _PickledModule) -> dict[str, torch.Tensor]:
    """Rebuild ``root.state_dict()`` from the pickled module tree: per module its parameters, then its
    persistent buffers, then its children recursively (the order nn.Module.state_dict uses).

    nn.Module trees are trees: a module met twice (a cycle, or one child under two names, which would
    repeat the walk below it once per path) is refused, so the walk is linear in the file. The tensors are
    checked against their storages before anything is copied."""
    found: list[tuple[str, Any]] = []
    visited: set[int] = set()

    def visit(node: _PickledModule, prefix: str, depth: int) -> None:
        where = prefix[:-1] or "G_ema"
        if id(node) in visited:
            raise CheckpointError(f"module {where} appears twice in the module tree (shared or cyclic submodules)")
        if depth > _MAX_MODULE_DEPTH:
            raise CheckpointError(f"the module tree is nested deeper than {_MAX_MODULE_DEPTH} levels")
        visited.add(id(node))
        state = node.state
        non_persistent = state.get("_non_persistent_buffers_set") or set()
        if not isinstance(non_persistent, set | frozenset):
            raise CheckpointError(f"{where} has a malformed _non_persistent_buffers_set")
        for group in ("_parameters", "_buffers"):
            entries = state.get(group) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{where} has a malformed {group} entry")
            for name, tensor in entries.items():
                if tensor is None or (group == "_buffers" and name in non_persistent):
                    continue
                found.append((prefix + str(name), tensor))
        for name, child in _children(node).items():
            if child is None:
                continue
            if not isinstance(child, _PickledModule):
                raise CheckpointError(f"submodule {prefix}{name} is {_describe(child)}, not a module")
            visit(child, f"{prefix}{name}.", depth + 1)

    visit(root, "", 0)
    for key, value in found:
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{key} is {_describe(value)}, not a tensor")
        if not value.is_floating_point():
            raise CheckpointError(f"{key} has dtype {value.dtype}, expected a floating-point tensor")
    check_tensor_views(found)
    return {key: _as_float32(value) for key, value in found}


def _as_float32(value: torch.Tensor) -> torch.Tensor:
    # Detach from the shared pickled storages (G and G_ema may share them) and own a compact copy.
    return value.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()


# ---------------------------------------------------------------------------------------------------
# Config mapping
# ---------------------------------------------------------------------------------------------------

def config_from_official(g: OfficialGenerator) -> GeneratorConfig:
    """The ``GeneratorConfig`` that rebuilds ``g``; ``CheckpointError`` if it uses options this
    implementation does not reproduce (``'auto'`` ray limits, disparity sampling, ...)."""
    try:
        return _config_from_official(g)
    except CheckpointError:
        raise
    except Exception as e:  # the values came from an untrusted file: any failure is a bad config
        failure = _first_line(e)
    raise CheckpointError(f"unsupported or malformed EG3D generator config: {failure}")


def _config_from_official(g: OfficialGenerator) -> GeneratorConfig:
    kw, rk, sd = g.init_kwargs, g.rendering_kwargs, g.state_dict

    unknown = sorted(set(kw) - _KNOWN_INIT_KWARGS)
    if unknown:
        raise CheckpointError(f"unsupported generator option(s): {one_line(', '.join(map(str, unknown)))}")
    img_channels = kw.get("img_channels", 3)
    if img_channels != 3:
        raise CheckpointError(f"unsupported img_channels {one_line(repr(img_channels))} (only RGB is supported)")

    if g.sr_class not in _SR_MODULES:
        raise CheckpointError(f"unsupported super-resolution module {one_line(g.sr_class)!r} "
                              f"(supported: {', '.join(_SR_MODULES)})")
    sr_module = _SR_MODULES[g.sr_class]
    img_resolution = _int(kw, "img_resolution")
    if img_resolution != _SR_OUTPUT_RESOLUTION[sr_module]:
        raise CheckpointError(f"img_resolution {img_resolution} does not match {g.sr_class}, "
                              f"which outputs {_SR_OUTPUT_RESOLUTION[sr_module]} px")

    # Mapping depth: the state dict is the ground truth (the MappingNetwork default would be 8, train.py
    # passes 2); an explicit num_layers must agree with it.
    mapping_kwargs = kw.get("mapping_kwargs") or {}
    unknown = sorted(set(mapping_kwargs) - _KNOWN_MAPPING_KWARGS)
    if unknown:
        raise CheckpointError(f"unsupported mapping option(s): {one_line(', '.join(map(str, unknown)))}")
    mapping_layers = 0
    while f"backbone.mapping.fc{mapping_layers}.weight" in sd:
        mapping_layers += 1
    if "num_layers" in mapping_kwargs and mapping_kwargs["num_layers"] != mapping_layers:
        raise CheckpointError(f"mapping_kwargs.num_layers={one_line(repr(mapping_kwargs['num_layers']))} but the weights "
                              f"have {mapping_layers} mapping layers")

    # The tri-plane backbone's resolution and width follow from its last block, the decoder's from
    # its two layers (these are constants in the official code, read back here rather than assumed).
    blocks = (re.match(r"backbone\.synthesis\.b(\d+)\.", k) for k in sd)
    triplane_resolution = max((int(m.group(1)) for m in blocks if m), default=0)
    torgb = _shape(sd, f"backbone.synthesis.b{triplane_resolution}.torgb.weight")
    if torgb[0] % 3:
        raise CheckpointError(f"the backbone outputs {torgb[0]} channels, not three planes")
    decoder0 = _shape(sd, "decoder.net.0.weight")
    decoder2 = _shape(sd, "decoder.net.2.weight")

    rendering = RenderingConfig(**_rendering_fields(rk, g.neural_rendering_resolution))
    sr_fp16 = kw.get("sr_num_fp16_res", 0)
    conv_clamp = kw.get("conv_clamp")
    return GeneratorConfig(
        z_dim=_int(kw, "z_dim"),
        c_dim=_int(kw, "c_dim"),
        w_dim=_int(kw, "w_dim"),
        img_resolution=img_resolution,
        mapping_layers=mapping_layers,
        channel_base=int(kw.get("channel_base", 32768)),  # SynthesisNetwork defaults
        channel_max=int(kw.get("channel_max", 512)),
        triplane_resolution=triplane_resolution,
        triplane_channels=torgb[0] // 3,
        decoder_hidden=decoder0[0],
        decoder_output_dim=decoder2[0] - 1,  # first output is density
        backbone_conv_clamp=None if conv_clamp is None else float(conv_clamp),
        sr_module=sr_module,
        sr_channels=(_shape(sd, "superresolution.block0.conv0.weight")[0],
                     _shape(sd, "superresolution.block1.conv0.weight")[0]),
        # The SR classes configure fp16 (and with it clamp 256) for all layers when sr_num_fp16_res > 0.
        sr_conv_clamp=256.0 if sr_fp16 > 0 else None,
        sr_antialias=_bool(rk, "sr_antialias"),
        sr_noise_mode=str(_require(rk, "superresolution_noise_mode")),
        rendering=rendering,
    )


def _rendering_fields(rk: dict, nrr: int) -> dict[str, Any]:
    for key in ("ray_start", "ray_end"):
        if rk.get(key) == "auto":
            raise CheckpointError(f"unsupported rendering option {key}='auto' (per-ray box limits)")
    if rk.get("disparity_space_sampling", False):
        raise CheckpointError("unsupported rendering option disparity_space_sampling=True")
    if rk.get("clamp_mode", "softplus") != "softplus":
        raise CheckpointError(f"unsupported rendering option clamp_mode={one_line(repr(rk['clamp_mode']))}")
    if float(rk.get("density_noise", 0) or 0) > 0:
        raise CheckpointError(f"unsupported rendering option density_noise={one_line(repr(rk['density_noise']))}")
    pivot = rk.get("avg_camera_pivot", (0.0, 0.0, 0.0))  # gen scripts' defaults when absent
    if len(pivot) != 3:
        raise CheckpointError(f"avg_camera_pivot must have 3 values, got {len(pivot)}")
    return {
        "ray_start": float(_require(rk, "ray_start")),
        "ray_end": float(_require(rk, "ray_end")),
        "box_warp": float(_require(rk, "box_warp")),
        "depth_resolution": _int(rk, "depth_resolution"),
        "depth_resolution_importance": _int(rk, "depth_resolution_importance"),
        "white_back": bool(rk.get("white_back", False)),
        "neural_rendering_resolution": int(nrr),
        "avg_camera_radius": float(rk.get("avg_camera_radius", 2.7)),
        "avg_camera_pivot": tuple(float(v) for v in pivot),
        "c_gen_conditioning_zero": _bool(rk, "c_gen_conditioning_zero"),
        # The original reads rendering_kwargs.get('c_scale', 0): a missing key zeroes the conditioning.
        "c_scale": float(rk.get("c_scale", 0)),
        "decoder_lr_mul": float(rk.get("decoder_lr_mul", 1)),
    }


def _require(d: dict, key: str) -> Any:
    if key not in d:
        raise CheckpointError(f"the generator config lacks {key!r}")
    return d[key]


def _int(d: dict, key: str) -> int:
    value = _require(d, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise CheckpointError(f"{key} must be an integer, got {one_line(repr(value))}")
    return int(value)


def _bool(d: dict, key: str) -> bool:
    value = _require(d, key)
    if not isinstance(value, bool | int):
        raise CheckpointError(f"{key} must be a boolean, got {one_line(repr(value))}")
    return bool(value)


def _shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"the generator weights lack {key}")
    return tuple(sd[key].shape)


# ---------------------------------------------------------------------------------------------------
# Message helpers (every CheckpointError message is a single line)
# ---------------------------------------------------------------------------------------------------

def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return one_line(lines[0] if lines else type(e).__name__)


def _describe(obj: Any) -> str:
    """What ``obj`` is, for messages: 'a training.x.Class object' or 'a value of type int'."""
    if isinstance(obj, _PickledModule):
        return f"a {obj.module or '<unrecognised module>'}.{one_line(obj.class_name, 60)} object"
    return f"a value of type {type(obj).__name__}"


def _short_keys(d: dict) -> str:
    keys = [one_line(repr(k), 40) for k in list(d)[:8]]
    return "[" + ", ".join(keys) + (", ..." if len(d) > 8 else "") + "]"


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple | torch.Size) and all(isinstance(v, int) and v >= 0 for v in value)
