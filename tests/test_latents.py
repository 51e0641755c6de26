"""eg3d_core.latents: the latent source (seeds, ws files), truncation's one meaning, the plane cache, and
``eg3d samples/video/mesh --latent`` against the seed path."""
from __future__ import annotations

import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from eg3d_core import cameras
from eg3d_core.apps.cli import main
from eg3d_core.apps.video import video_latent
from eg3d_core.errors import InputError
from eg3d_core.latents import LatentSource, PlaneCache, map_seeds, save_ws
from eg3d_core.metrics.fid import FakeSampler, FIDSettings
from eg3d_core.settings import RenderSettings
from eg3d_core.visualize import seed_to_z

# ----------------------------------------------------------------------------------------------------------------------
# Seeds and truncation


def test_seed_source_is_the_original_draw_with_the_frontal_conditioning(cars_generator) -> None:
    G = cars_generator
    z = seed_to_z([5], G.z_dim)
    with torch.no_grad():
        want = G.mapping(z, cameras.conditioning(cameras.camera_defaults(G.config)), 0.7)
    assert torch.equal(LatentSource(seed=5, psi=0.7).ws(G), want)


def test_cutoff_none_all_zero_none(cars_generator) -> None:
    """One truncation meaning: cutoff None (and num_ws or more) truncates every w, N the first N, 0 none."""
    G = cars_generator
    untruncated = LatentSource(seed=1).ws(G)
    every = LatentSource(seed=1, psi=0.5).ws(G)
    assert torch.equal(LatentSource(seed=1, psi=0.5, cutoff=G.num_ws).ws(G), every)
    assert torch.equal(LatentSource(seed=1, psi=0.5, cutoff=100).ws(G), every)
    assert torch.equal(LatentSource(seed=1, psi=0.5, cutoff=0).ws(G), untruncated)
    some = LatentSource(seed=1, psi=0.5, cutoff=3).ws(G)
    assert torch.equal(some[:, :3], every[:, :3]) and torch.equal(some[:, 3:], untruncated[:, 3:])
    assert not torch.equal(every, untruncated)


def test_keys_are_equal_exactly_for_equal_ws(cars_generator) -> None:
    n = cars_generator.num_ws
    key = LatentSource(seed=4, psi=0.6).key(n)
    assert LatentSource(seed=4, psi=0.6, cutoff=n).key(n) == key
    assert LatentSource(seed=4, psi=1.0, cutoff=3).key(n) == LatentSource(seed=4, psi=0.2, cutoff=0).key(n)
    assert LatentSource(seed=4, psi=0.6, cutoff=3).key(n) != key
    assert LatentSource(seed=4, psi=0.6, cond_yaw=0.1).key(n) != key
    assert LatentSource(seed=5, psi=0.6).key(n) != key
    ws = torch.randn(1, n, cars_generator.w_dim)
    assert LatentSource.from_ws(ws).key(n) == LatentSource.from_ws(ws.clone()).key(n)
    assert LatentSource.from_ws(ws + 1e-6).key(n) != LatentSource.from_ws(ws).key(n)
    assert LatentSource(seed=4) == LatentSource(seed=4) and hash(LatentSource.from_ws(ws)) == hash(
        LatentSource.from_ws(ws.clone()))


def test_map_seeds_batches_like_single_seeds(cars_generator) -> None:
    G = cars_generator
    cond = cameras.conditioning(cameras.camera_defaults(G.config))
    both = map_seeds(G, [2, 9], cond, 0.7)
    # One mapping pass for the batch: a different BLAS order than one at a time, so equal to rounding only.
    torch.testing.assert_close(both[1:], LatentSource(seed=9, psi=0.7).ws(G), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "a latent is either a seed or given ws"),
    ({"seed": -1}, "seed must be an integer in [0, 2**32), got -1"),
    ({"seed": 2**32}, "seed must be an integer in [0, 2**32)"),
    ({"seed": 1.0}, "seed must be an integer"),
    ({"seed": 0, "psi": float("nan")}, "truncation psi must be a finite number"),
    ({"seed": 0, "cutoff": -2}, "truncation cutoff must be an integer >= 0 (or None: all ws), got -2"),
])
def test_bad_sources_are_one_line_input_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        LatentSource(**kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_fid_cutoff_zero_means_no_truncation(demo_generator) -> None:
    """--trunc-cutoff 0 no longer means 'all' in FID: the same images as psi 1; the default (None) truncates all."""
    labels = torch.stack([cameras.camera(cameras.camera_defaults(demo_generator.config), y, 0.0)[0]
                          for y in (0.0, 0.3)]).numpy()

    def images(**kwargs) -> torch.Tensor:
        s = FIDSettings(num_samples=2, render=RenderSettings(neural_rendering_resolution=16), **kwargs)
        return FakeSampler(demo_generator, s, labels, None, torch.device("cpu")).images(0, range(2))

    plain = images(truncation_psi=1.0)
    assert torch.equal(images(truncation_psi=0.5, truncation_cutoff=0), plain)
    assert not torch.equal(images(truncation_psi=0.5), plain)
    with pytest.raises(InputError, match="truncation_cutoff must be >= 0"):
        FIDSettings(truncation_cutoff=-1)


# ----------------------------------------------------------------------------------------------------------------------
# ws files


def test_ws_file_round_trip(cars_generator, tmp_path: Path) -> None:
    ws = LatentSource(seed=3, psi=0.7).ws(cars_generator)
    path = save_ws(ws, tmp_path / "w.npz")
    source = LatentSource.from_file(path)
    assert torch.equal(source.ws(cars_generator), ws) and source.label == "w"
    assert source.key(cars_generator.num_ws) == LatentSource.from_ws(ws).key(cars_generator.num_ws)
    with np.load(path) as data:
        assert data.files == ["ws"] and data["ws"].dtype == np.float32


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing.npz", "no such latent file"),
    (lambda d: (d / "text.npz").write_text("not a zip") and d / "text.npz", "not a readable .npz latent file"),
    (lambda d: _npz(d / "other.npz", w=np.zeros((1, 2, 3), np.float32)), "no 'ws' array in the file (found w)"),
    (lambda d: _npz(d / "f64.npz", ws=np.zeros((1, 2, 3))), "ws must be float32, got float64"),
    (lambda d: _npz(d / "two.npz", ws=np.zeros((2, 2, 3), np.float32)), "ws must have shape [1, num_ws, w_dim], "
                                                                          "got [2, 2, 3]"),
    (lambda d: _npz(d / "nan.npz", ws=np.full((1, 2, 3), np.nan, np.float32)), "ws holds NaN or infinite values"),
])
def test_bad_ws_files_are_one_line_input_errors(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        LatentSource.from_file(path)
    assert str(info.value).startswith(f"{path}: {message}") and "\n" not in str(info.value)


def test_ws_of_another_model_is_refused(cars_generator, tmp_path: Path) -> None:
    G = cars_generator
    path = save_ws(torch.zeros(1, G.num_ws + 1, G.w_dim), tmp_path / "other.npz")
    with pytest.raises(InputError) as info:
        LatentSource.from_file(path).ws(G)
    assert str(info.value) == (f"{path}: {G.num_ws + 1} ws of {G.w_dim} values, but the model takes {G.num_ws} ws "
                               f"of {G.w_dim}")


# ----------------------------------------------------------------------------------------------------------------------
# The plane cache


def test_plane_cache_hits_keys_and_lru(cars_generator) -> None:
    G = cars_generator
    cache = PlaneCache(G, size=2)
    fp32 = RenderSettings()
    a, cached = cache.latent(LatentSource(seed=1), fp32)
    assert not cached and a.planes.shape == (1, 3, G.config.triplane_channels, G.config.triplane_resolution,
                                             G.config.triplane_resolution)
    with torch.no_grad():
        assert torch.equal(a.planes, G.planes(LatentSource(seed=1).ws(G)))
    # A render-only change (resolution, samples) is a hit; noise mode and precision are part of the key.
    again, cached = cache.latent(LatentSource(seed=1), RenderSettings(neural_rendering_resolution=16, sample_mult=3))
    assert cached and again is a
    assert not cache.latent(LatentSource(seed=1), RenderSettings(noise_mode="none"))[1]
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)
    cache.latent(LatentSource(seed=2), fp32)  # evicts the least recently used: seed 1 with const noise
    assert len(cache) == 2 and not cache.latent(LatentSource(seed=1), fp32)[1]
    with pytest.raises(InputError, match="plane cache size must be >= 1"):
        PlaneCache(G, size=0)


def test_plane_cache_pools_once_per_entry(cars_generator) -> None:
    entry, _ = PlaneCache(cars_generator).latent(LatentSource(seed=0), RenderSettings())
    half = entry.pooled(2)
    assert entry.pooled(1) is entry.planes and entry.pooled(2) is half
    torch.testing.assert_close(half[..., 0, 0], entry.planes[..., :2, :2].mean((-2, -1)))


def test_plane_cache_serves_concurrent_requests(cars_generator) -> None:
    """Threads asking for overlapping latents at once all get their own latent's planes, and the bound holds."""
    G = cars_generator
    cache = PlaneCache(G, size=3)
    with torch.no_grad():
        want = {seed: G.planes(LatentSource(seed=seed).ws(G)) for seed in range(4)}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(6):
                seed = (k + i) % 4
                entry, _ = cache.latent(LatentSource(seed=seed), RenderSettings())
                assert torch.equal(entry.planes, want[seed])
        except BaseException as e:  # collected: an assertion in a thread would otherwise pass silently
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 3 and cache.hits + cache.misses == 24


def test_plane_cache_timings(cars_generator) -> None:
    cache, timings = PlaneCache(cars_generator), {}
    cache.latent(LatentSource(seed=0), RenderSettings(), timings)
    assert timings["mapping"] > 0 and timings["backbone"] > 0
    cache.latent(LatentSource(seed=0), RenderSettings(), timings)
    assert timings == {"mapping": 0.0, "backbone": 0.0}


# ----------------------------------------------------------------------------------------------------------------------
# eg3d ... --latent on the demo model: the same outputs as the seed path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main([*argv, "-q"])
    return rc, capsys.readouterr().err


def test_samples_latent_file_gives_the_seed_image(demo_generator, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    latent = save_ws(LatentSource(seed=3, psi=0.7).ws(demo_generator), tmp_path / "three.npz")
    common = ["samples", "--nrr", "32", "--trunc", "0.7"]
    assert _run([*common, "--seeds", "3", "--outdir", str(tmp_path / "seed")], capsys)[0] == 0
    assert _run([*common, "--latent", str(latent), "--outdir", str(tmp_path / "file")], capsys)[0] == 0
    np.testing.assert_array_equal(iio.imread(tmp_path / "file" / "three.png"),
                                  iio.imread(tmp_path / "seed" / "seed0003.png"))


def test_video_latent_file_gives_the_seed_video(demo_generator, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    latent = save_ws(video_latent(3, 0.7).ws(demo_generator), tmp_path / "three.npz")
    common = ["video", "--nrr", "16", "--sample-mult", "1", "--w-frames", "3", "--trunc", "0.7"]
    assert _run([*common, "--seeds", "3", "--no-interpolate", "--outdir", str(tmp_path / "seed")], capsys)[0] == 0
    assert _run([*common, "--latent", str(latent), "--outdir", str(tmp_path / "file")], capsys)[0] == 0
    np.testing.assert_array_equal(iio.imread(tmp_path / "file" / "three.mp4"), iio.imread(tmp_path / "seed" / "3.mp4"))


def test_mesh_latent_file_gives_the_seed_mesh(demo_generator, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    latent = save_ws(LatentSource(seed=0).ws(demo_generator), tmp_path / "zero.npz")
    common = ["mesh", "--resolution", "32", "--format", "ply"]
    assert _run([*common, "--seeds", "0", "--outdir", str(tmp_path / "seed")], capsys)[0] == 0
    assert _run([*common, "--latent", str(latent), "--outdir", str(tmp_path / "file")], capsys)[0] == 0
    assert (tmp_path / "file" / "zero.ply").read_bytes() == (tmp_path / "seed" / "seed0000.ply").read_bytes()


def test_latent_option_errors(demo_generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = save_ws(torch.zeros(1, demo_generator.num_ws, demo_generator.w_dim + 1), tmp_path / "wrong.npz")
    rc, err = _run(["samples", "--latent", str(wrong), "--outdir", str(tmp_path / "out")], capsys)
    assert rc == 1 and err.strip().splitlines()[-1].startswith(f"error: {wrong}: {demo_generator.num_ws} ws of")
    with pytest.raises(SystemExit) as info:
        main(["mesh", "--seeds", "1", "--latent", str(wrong), "--outdir", str(tmp_path / "out")])
    assert info.value.code == 1 and "not allowed with argument" in capsys.readouterr().err
    rc, err = _run(["video", "--latent", str(wrong), "--grid", "2x1", "--outdir", str(tmp_path / "out")], capsys)
    assert rc == 1 and "error: --latent renders one latent: --grid must be 1x1, got 2x1" in err
