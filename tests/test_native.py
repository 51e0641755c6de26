"""The compiled radiance field (eg3d_core/kernels/field_kernel.c) against the PyTorch path it replaces, where the CPU
backend uses it, and the typed bindings' checks at the C boundary."""
from __future__ import annotations

import ctypes
import platform

import pytest
import torch

import eg3d_core.kernels.build
from eg3d_core.kernels import cpu
from eg3d_core.kernels import field as native
from eg3d_core.kernels.build import FLOATS, I64, STATUS, Function, Library
from eg3d_core.rendering.decoder import Decoder
from eg3d_core.rendering.triplane import plane_table, sample_planes

X86_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in (
    "AVX2", "AVX512")


@pytest.fixture
def fresh_library():
    """Kernels are loaded once per process: forget them before and after the test."""
    native.library.cache_clear()
    eg3d_core.kernels.build.load.cache_clear()
    yield
    native.library.cache_clear()
    eg3d_core.kernels.build.load.cache_clear()


def _decoder(channels: int, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    dec = Decoder(channels)
    with torch.no_grad():
        for q in dec.parameters():
            q.normal_()
    return dec


def _close(got: dict, ref: dict) -> None:
    for key in ("sigma", "rgb"):
        scale = 1 + ref[key].abs().max().item()
        # Float32 rounding of two summation orders: observed ~2e-7 x scale.
        torch.testing.assert_close(got[key], ref[key], atol=2e-6 * scale, rtol=0, msg=key)


@pytest.mark.skipif(not X86_AVX2, reason="the kernel is written for x86-64 AVX2")
def test_kernel_is_built_and_used_here():
    assert native.library(32) is not None and native.library(16) is not None
    planes = torch.randn(1, 3, 32, 8, 8)
    with torch.no_grad():
        assert cpu.field(torch.zeros(1, 4, 3), planes, 1.0, _decoder(32), None) is not None


@pytest.mark.skipif(not X86_AVX2, reason="the kernel is written for x86-64 AVX2")
@pytest.mark.parametrize("channels", [32, 16])
def test_kernel_matches_the_pytorch_path(channels):
    torch.manual_seed(1)
    dec = _decoder(channels)
    # Two latents, non-square planes, points inside, on the edge of and far outside the box (they read zeros).
    planes = torch.randn(2, 3, channels, 12, 20)
    coords = (torch.rand(2, 3000, 3) - 0.5) * 1.4
    coords[:, :8] = torch.tensor([0.5, -0.5, 0.0]) * torch.arange(8).reshape(8, 1) / 2
    with torch.no_grad():
        ref = dec(sample_planes(planes, coords, 1.2))
        _close(native.field(coords, planes, 1.2, dec), ref)
        _close(native.field(coords, planes, 1.2, dec, table=plane_table(planes)), ref)
        # Large pre-activations: softplus and sigmoid saturate without overflow.
        big = _decoder(channels, seed=3)
        big.net[0].bias.mul_(30)
        _close(native.field(coords, planes, 1.2, big), big(sample_planes(planes, coords, 1.2)))


def test_pytorch_path_where_the_kernel_does_not_apply(fresh_library, monkeypatch):
    dec = _decoder(32)
    planes, coords = torch.randn(1, 3, 32, 8, 8), torch.rand(1, 10, 3) - 0.5
    planes.requires_grad_(True)
    assert cpu.field(coords, planes, 1.0, dec, None) is None  # autograd
    with torch.no_grad():
        assert cpu.field(coords, torch.randn(1, 3, 12, 8, 8), 1.0, _decoder(12), None) is None  # not a multiple of 8
        assert cpu.field(coords, planes.detach().double(), 1.0, dec, None) is None  # float64
        monkeypatch.setenv("EG3D_NATIVE", "0")
        native.library.cache_clear()
        eg3d_core.kernels.build.load.cache_clear()
        assert cpu.field(coords, planes.detach(), 1.0, dec, None) is None


@pytest.mark.skipif(not X86_AVX2, reason="the kernel is written for x86-64 AVX2")
def test_the_kernel_refuses_what_does_not_fit_it():
    """The kernel's entry points check shapes, and the bindings dtype, device and layout, before a pointer is taken."""
    dec, planes, coords = _decoder(32), torch.randn(1, 3, 32, 8, 8), torch.rand(1, 10, 3) - 0.5
    with torch.no_grad():
        with pytest.raises(ValueError, match="planes must be"):
            native.field(coords, torch.randn(1, 3, 12, 8, 8), 1.0, _decoder(12))
        with pytest.raises(ValueError, match="coords must be"):
            native.field(coords[..., :2], planes, 1.0, dec)
        with pytest.raises(ValueError, match="table must be"):
            native.field(coords, planes, 1.0, dec, table=torch.zeros(1, 3, 8, 8, 32))
        with pytest.raises(ValueError, match="eg3d_field: table must be a torch.float32 CPU tensor"):
            native.field(coords, planes.double(), 1.0, dec)
        with pytest.raises(ValueError, match="importance sampler needs at least 4"):
            native.importance(torch.rand(1, 2, 3, 1), torch.rand(1, 2, 3, 1), 4, True)
    lib = native.library(32)
    depths = torch.rand(1, 2, 4, 1)
    args = [2, 4, 4, depths, depths, torch.linspace(0, 1, 4), 0, torch.empty(1, 2, 4, 1)]
    lib.eg3d_importance(*args)  # as given: fine
    for k, bad, error in ((3, depths.double(), "dc must be a torch.float32 CPU tensor"),
                          (4, depths.transpose(1, 2), "sc must be contiguous"),
                          (5, None, "u is required")):
        with pytest.raises((TypeError, ValueError), match=error):
            lib.eg3d_importance(*args[:k], bad, *args[k + 1:])
    with pytest.raises(TypeError, match="eg3d_importance takes 8 arguments"):
        lib.eg3d_importance(*args[:-1])


def test_a_failed_allocation_raises_memory_error():
    """A kernel's nonzero status becomes MemoryError (here libc's abs stands in for a kernel that returns -1)."""
    lib = Library(ctypes.CDLL(None), [Function("abs", (("x", ctypes.c_int),), STATUS)])
    assert lib.abs(0) is None
    with pytest.raises(MemoryError, match="abs: its work buffers could not be allocated"):
        lib.abs(-1)
    with pytest.raises(TypeError, match="must be a tensor"):
        Library(ctypes.CDLL(None), [Function("labs", (("x", FLOATS), ("n", I64)))]).labs([1.0], 1)


def test_a_failed_build_falls_back_with_a_warning(fresh_library, monkeypatch, tmp_path):
    monkeypatch.setenv("EG3D_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    if X86_AVX2:
        with pytest.warns(RuntimeWarning, match="compiled kernel field_kernel.c unavailable"):
            assert native.library(32) is None
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.raises(OSError, match="no C compiler"):
        eg3d_core.kernels.build.build(native.SOURCE, (("CH", 32),), tmp_path)
    assert not list(tmp_path.glob("**/*.so"))  # nothing half-written left behind


@pytest.mark.skipif(not X86_AVX2, reason="the kernel is written for x86-64 AVX2")
def test_a_large_query_split_over_threads_matches():
    dec = _decoder(32)
    planes = torch.randn(3, 3, 32, 16, 16)
    coords = (torch.rand(3, 12000, 3) - 0.5) * 1.1  # 36000 points: two parts, split inside the second latent
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            _close(native.field(coords, planes, 1.0, dec), dec(sample_planes(planes, coords, 1.0)))
    finally:
        torch.set_num_threads(threads)


def test_every_kernel_source_ships_with_the_package():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "pyproject.toml").read_text()
    section = text[text.index("[tool.setuptools.package-data]"):]
    section = section[:section.find("\n[", 1)] if "\n[" in section[1:] else section
    sources = sorted((root / "eg3d_core").rglob("*.c"))
    assert len(sources) >= 2
    for source in sources:
        package = ".".join(source.parent.relative_to(root).parts)
        entry = re.search(rf'^"{re.escape(package)}" = \[(.*)\]$', section, re.MULTILINE)
        assert entry and '"*.c"' in entry.group(1), f"{source} is not in package-data"
