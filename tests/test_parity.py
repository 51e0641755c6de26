"""Parity with the original implementation's outputs (reference.npz, computed by the official code on CPU fp32).

Tolerance: max abs error 1e-4 on every output. The official code and ours differ only in floating-point
operation order (grouped vs plain convolution, fused multiply-adds, reductions), which the fixtures' own
batch-1-vs-batch-2 comparison puts at a few 1e-6; 1e-4 is the project's stated bound for images in [-1, 1].
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import CONFIGS, FIXTURES, reference

import eg3d_core
from eg3d_core import kernels, save_generator
from eg3d_core.kernels import build, field, fir, winograd

TOL = 1e-4

# (fixture, source, backend): official pickle for all three, MMagic .pth where the fixtures have one, and a round
# trip through our own format, on the default backend; the official pickles also on the reference path ("ref": what
# autograd, autocast and CUDA run) and on the CPU backend without compiled kernels ("no-kernels", EG3D_NATIVE=0:
# what CPUs other than x86-64 AVX2 run). The same bound holds for each.
CASES = [(n, "pkl", "cpu") for n in CONFIGS] + [("tiny_cars128", "mmagic", "cpu"), ("tiny_ffhq512", "mmagic", "cpu")] \
    + [(n, "native", "cpu") for n in CONFIGS] + [(n, "pkl", b) for b in ("ref", "no-kernels") for n in CONFIGS]


def _forget_kernels() -> None:
    for cached in (build.load, field.library, fir.library, winograd.library):
        cached.cache_clear()


@contextlib.contextmanager
def _backend(name: str) -> Iterator[None]:
    if name != "no-kernels":
        with kernels.use(name):
            yield
        return
    with pytest.MonkeyPatch.context() as m:
        m.setenv("EG3D_NATIVE", "0")
        _forget_kernels()
        try:
            assert winograd.library() is None and field.library() is None
            yield
        finally:
            m.undo()
            _forget_kernels()


def _load(name: str, source: str, tmp_path_factory) -> eg3d_core.Generator:
    pkl = FIXTURES / name / "network-snapshot.pkl"
    if source == "pkl":
        return eg3d_core.load_generator(pkl)
    official = eg3d_core.load_generator(pkl)
    if source == "mmagic":
        # An MMagic file stores weights only; the renderer settings of this tiny model come from its config.
        return eg3d_core.load_generator(FIXTURES / name / "mmagic.pth", config=official.config)
    folder = tmp_path_factory.mktemp(name) / "model"
    save_generator(official, folder)
    return eg3d_core.load_generator(folder)


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{s}" + ("" if b == "cpu" else f"-{b}") for n, s, b in CASES])
def run(request, tmp_path_factory):
    name, source, backend = request.param
    G = _load(name, source, tmp_path_factory)
    ref = reference(name)
    z, c_cond, c_render = (torch.from_numpy(ref[k]) for k in ("z", "c_cond", "c_render"))
    with torch.no_grad(), _backend(backend):
        ws = G.mapping(z, c_cond, truncation_psi=0.7, truncation_cutoff=14)
        ws1 = G.mapping(z, c_cond)
        planes = G.planes(ws)
        out = G.render_planes(planes, ws, c_render)
        out1 = G.synthesis(ws1, c_render)
        coords = torch.from_numpy(ref["sample_coords"])
        sample = G.sample(coords, ws)
        sample1 = G.sample(coords, ws1)
    got = {
        "ws_psi0p7": ws, "ws_psi1": ws1,
        "planes_psi0p7_stride8": planes[..., ::8, ::8], "planes_psi0p7_crop": planes[..., 120:136, 120:136],
        "planes_psi0p7_mean": planes.mean(dim=(-1, -2)), "planes_psi0p7_std": planes.std(dim=(-1, -2)),
        "raw": out["image_raw"], "image_depth_psi0p7": out["image_depth"], "image_psi0p7": out["image"],
        "raw_psi1": out1["image_raw"], "image_depth_psi1": out1["image_depth"],
        "sample_sigma_psi0p7": sample["sigma"], "sample_rgb_psi0p7": sample["rgb"],
        "sample_mixed_sigma_psi1": sample1["sigma"], "sample_mixed_rgb_psi1": sample1["rgb"],
    }
    if "image_psi1" in ref:
        got["image_psi1"] = out1["image"]
    # Our image_raw is the true raw render: the official returned image_raw equals it for 8X/8XDC models,
    # but is overwritten by an in-place add in 2X/4X models (see the fixtures README), so compare with
    # the feature image's first three channels.
    ref = dict(ref, raw=ref["feature_image_psi0p7"][:, :3])
    if G.config.sr_module in ("8X", "8XDC"):
        ref["raw_psi1"] = ref["image_raw_psi1"]
    return name, source, got, ref


KEYS = ["ws_psi0p7", "ws_psi1", "planes_psi0p7_stride8", "planes_psi0p7_crop", "planes_psi0p7_mean",
        "planes_psi0p7_std", "raw", "raw_psi1", "image_depth_psi0p7", "image_depth_psi1", "image_psi0p7",
        "image_psi1", "sample_sigma_psi0p7", "sample_rgb_psi0p7", "sample_mixed_sigma_psi1", "sample_mixed_rgb_psi1"]


@pytest.mark.parametrize("key", KEYS)
def test_matches_original(run, key):
    name, source, got, ref = run
    if key not in got or key not in ref:
        assert key in ("image_psi1", "raw_psi1"), key  # only these are absent for some configs
        return
    expected = ref[key]
    actual = got[key].numpy()
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    err = float(np.abs(actual - expected).max())
    assert err < TOL, f"{name}/{source} {key}: max abs error {err:.3g} >= {TOL}"


def test_official_raw_differs_from_true_raw_in_2x_models():
    """Documents why ``raw`` is compared with the feature image: the official 2X image_raw is not the raw render."""
    ref = reference("tiny_cars128")
    assert np.abs(ref["image_raw_psi0p7"] - ref["feature_image_psi0p7"][:, :3]).max() > 0.1
