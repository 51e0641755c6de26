"""FID: the arithmetic, statistics files, the Inception loader, real-image datasets, the per-sample draws, and the
whole ``eg3d fid`` run on the demo model with a random Inception stand-in: 1 vs 2 torchrun processes, kill and
resume."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from eg3d_core.apps.cli import main as cli_main
from eg3d_core.errors import EG3DError
from eg3d_core.metrics.fid import FakeSampler, FIDSettings, fid_camera, open_real
from eg3d_core.metrics.frechet import FeatureStats, feature_stats, frechet_distance, load_stats, save_stats
from eg3d_core.metrics.images import open_dataset
from eg3d_core.metrics.inception import INCEPTION_URL, InceptionError, load_inception
from eg3d_core.visualize import seed_to_z

sys.path.insert(0, str(Path(__file__).parent))
import inception_standin  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NUM_FAKE = 200
BATCH = 8
# A cheaper neural rendering resolution keeps the end-to-end runs short; the protocol is the same.
FID_ARGS = ["--num-samples", str(NUM_FAKE), "--batch-size", str(BATCH), "--nrr", "32", "--seed", "5", "-q"]


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's general matrix square root, independent of our implementation."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic and statistics files


@pytest.mark.parametrize("n,d,shift", [(500, 16, 0.0), (400, 64, 0.7), (3000, 32, 2.0)])
def test_frechet_distance_matches_scipy_sqrtm(n, d, shift):
    rng = np.random.default_rng(d)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = rng.normal(size=(n, d)) @ mix
    b = rng.normal(size=(n, d)) @ (mix + 0.3 * rng.normal(size=(d, d)) / np.sqrt(d)) + shift
    ours = frechet_distance(feature_stats(a), feature_stats(b))
    ref = scipy_fid(a, b)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert ours > 0.05


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    stats = feature_stats(a)
    assert abs(frechet_distance(stats, stats)) < 1e-9
    # A pure mean shift adds exactly |shift|^2.
    shifted = FeatureStats(stats.mu + 0.5, stats.sigma, stats.num)
    assert frechet_distance(stats, shifted) == pytest.approx(8 * 0.25, rel=1e-9)
    b = feature_stats(rng.normal(size=(300, 8)) * 2)
    assert frechet_distance(stats, b) == pytest.approx(frechet_distance(b, stats), rel=1e-9)


def test_rank_deficient_covariances_stay_finite():
    """Fewer samples than feature dimensions (as in small test runs) give singular covariances."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 0.1
    ours = frechet_distance(feature_stats(a), feature_stats(b))
    assert np.isfinite(ours) and ours == pytest.approx(scipy_fid(a, b), rel=1e-5)


def test_feature_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        feature_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_stats_files_round_trip_and_pytorch_fid_layout(tmp_path):
    rng = np.random.default_rng(2)
    stats = feature_stats(rng.normal(size=(50, 6)))
    path = save_stats(stats, tmp_path / "s.npz", {"dataset": "x"})
    back, meta = load_stats(path)
    assert np.array_equal(back.mu, stats.mu) and np.array_equal(back.sigma, stats.sigma) and back.num == 50
    assert meta == {"dataset": "x"}
    np.savez(tmp_path / "pf.npz", mu=stats.mu, sigma=stats.sigma)  # what pytorch-fid writes
    assert np.array_equal(load_stats(tmp_path / "pf.npz")[0].sigma, stats.sigma)
    np.savez(tmp_path / "bad.npz", mean=stats.mu)
    with pytest.raises(ValueError, match="needs arrays 'mu' and 'sigma'"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", mu=stats.mu, sigma=stats.sigma[:3])
    with pytest.raises(ValueError, match="not a mean and its covariance"):
        load_stats(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read statistics"):
        load_stats(tmp_path / "junk.npz")


# ---------------------------------------------------------------------------------------------------------------
# Inception


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return inception_standin.write(tmp_path_factory.mktemp("inception") / "standin.pt", width=0.25)


def test_standin_has_inception_v3_architecture():
    """At full width: Inception-v3's 21.8 M convolution/batch-norm parameters and 2048-d pool features."""
    net = inception_standin.InceptionStandIn(1.0)
    body = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("fc."))
    assert body == 21_785_568
    assert net.feature_dim == 2048


def test_load_inception(standin, monkeypatch):
    net = load_inception(standin)
    assert net.dim == 512 and len(net.sha256) == 64
    imgs = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    f = net.features(imgs)
    assert f.shape == (3, 512) and f.dtype == np.float32 and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        net.features(imgs.float())
    monkeypatch.setenv("EG3D_INCEPTION", str(standin))
    assert load_inception(None).sha256 == net.sha256


def test_missing_or_wrong_inception_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("EG3D_INCEPTION", raising=False)
    with pytest.raises(InceptionError, match="no Inception network given") as e:
        load_inception(None)
    assert INCEPTION_URL in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, EG3DError)  # a user error: front ends show it as one line
    with pytest.raises(InceptionError, match="not found at") as e:
        load_inception(tmp_path / "nope.pt")
    assert INCEPTION_URL in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not torchscript")
    with pytest.raises(InceptionError, match="is not a TorchScript network") as e:
        load_inception(junk)
    assert "\n" not in str(e.value)
    # TorchScript, but not a feature extractor with Inception's calling convention.
    scripted = torch.jit.script(torch.nn.Linear(3, 3))
    scripted.save(str(tmp_path / "linear.pt"))
    with pytest.raises(InceptionError, match="does not work as an Inception feature extractor"):
        load_inception(tmp_path / "linear.pt")


# ---------------------------------------------------------------------------------------------------------------
# Real images


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from eg3d_core.training.toycars import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "toycars", 160, 128, seed=3, progress=False)


def test_dataset_folder_and_zip_agree(dataset, tmp_path):
    folder = open_dataset(dataset)
    assert len(folder) == 160 and folder.resolution == 128 and folder.labels.shape == (160, 25)
    zpath = tmp_path / "toycars.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(dataset.iterdir()):
            zf.write(f, f.name)
    packed = open_dataset(zpath)
    assert packed.names == folder.names
    assert np.array_equal(packed.labels, folder.labels)
    assert torch.equal(packed.images(range(4)), folder.images(range(4)))
    assert folder.images([0]).dtype == torch.uint8 and folder.images([0]).shape == (1, 3, 128, 128)
    # The cache key follows the content: stable, and different for different pixels.
    assert folder.content_hash() == open_dataset(dataset).content_hash()
    other = tmp_path / "other"
    other.mkdir()
    for f in dataset.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    from PIL import Image

    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(other / folder.names[7])
    assert open_dataset(other).content_hash() != folder.content_hash()
    packed.close()


def test_bad_datasets_are_refused(tmp_path):
    from PIL import Image

    with pytest.raises(ValueError, match="no such dataset"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        open_dataset(tmp_path / "empty")
    d = tmp_path / "mixed"
    d.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "b.png")
    data = open_dataset(d)
    with pytest.raises(ValueError, match="'b.png' is 8x8"):
        data.images(range(2))
    (d / "dataset.json").write_text(json.dumps({"labels": [["a.png", [0.0] * 25]]}))
    with pytest.raises(ValueError, match="no label for 1 image"):
        open_dataset(d)


# ---------------------------------------------------------------------------------------------------------------
# Per-sample draws


def test_draws_follow_seeds_and_ignore_chunking(demo_generator):
    labels = np.random.default_rng(0).normal(size=(10, 25)).astype(np.float32)
    s = FIDSettings(num_samples=40, seed=11, camera="dataset")
    sampler = FakeSampler(demo_generator, s, labels, None, torch.device("cpu"))
    z, c = sampler.draws(range(0, 12))
    z2, c2 = sampler.draws(range(8, 12))
    assert torch.equal(z[8:], z2) and torch.equal(c[8:], c2)
    assert torch.equal(z, seed_to_z(list(range(11, 23)), demo_generator.z_dim))
    assert all(any(torch.equal(row, torch.from_numpy(lab)) for lab in labels) for row in c)

    rnd = FakeSampler(demo_generator, FIDSettings(num_samples=40, camera="random"), None,
                      fid_camera(demo_generator), torch.device("cpu"))
    _, cams = rnd.draws(range(40))
    origins = cams[:, [3, 7, 11]]
    radius = demo_generator.config.rendering.avg_camera_radius
    assert torch.allclose(origins.norm(dim=1), torch.full((40,), radius), atol=1e-4)
    assert origins[:, 1].min() < -0.2 * radius < 0.2 * radius < origins[:, 1].max()  # whole sphere for cars
    with pytest.raises(ValueError, match="needs the dataset's camera labels"):
        FakeSampler(demo_generator, s, None, None, torch.device("cpu"))


def test_face_camera_distribution_is_mmagics():
    from eg3d_core import PRESETS, Generator

    dist = fid_camera(Generator(PRESETS["ffhq512-128"]))
    assert dist.kind == "gaussian" and dist.horizontal_std == 0.35 and dist.vertical_std == 0.25
    assert dist.focal == pytest.approx(4.26339, abs=1e-5) and dist.radius == 2.7


def test_settings_validation():
    with pytest.raises(ValueError, match="camera must be one of"):
        FIDSettings(camera="orbit")
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\*\*32\)"):
        FIDSettings(seed=2**32 - 5, num_samples=10)
    assert FIDSettings().metric == "fid50k" and FIDSettings(camera="random").metric == "fid50k_camera"


# ---------------------------------------------------------------------------------------------------------------
# End to end: eg3d fid, 1 vs 2 processes, kill and resume


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(nproc: int, args: list[str], **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "eg3d_core", "fid", *args]
    return subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kwargs)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (they run in sessions of their own), as a crash or a scheduler would."""
    import psutil

    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)
    proc.wait()


@pytest.fixture(scope="module")
def fid_run(dataset, standin, tmp_path_factory):
    """One uninterrupted single-process run (in-process, through the CLI) and its common arguments."""
    root = tmp_path_factory.mktemp("fid")
    common = ["--data", str(dataset), "--inception", str(standin), "--cache-dir", str(root / "cache"), *FID_ARGS]
    out = root / "single.json"
    assert cli_main(["fid", *common, "--out", str(out)]) == 0
    return common, json.loads(out.read_text()), root


def test_single_process_result_record(fid_run, dataset, standin):
    _, record, root = fid_run
    assert record["metric"] == "fid200" and np.isfinite(record["fid"]) and record["fid"] > 0
    assert record["settings"]["num_samples"] == NUM_FAKE and record["seeds"] == [5, 5 + NUM_FAKE - 1]
    assert record["settings"]["camera"] == "dataset" and record["settings"]["render"]["neural_rendering_resolution"] == 32
    assert record["real"]["num_images"] == 160 and record["real"]["cache_hit"] is False
    assert Path(record["real"]["cache"]).is_file()
    assert record["inception"]["feature_dim"] == 512
    assert record["run"]["world_size"] == 1 and record["run"]["resumed_samples"] == 0
    assert not (root / "single.json.parts").exists()  # shards are removed after success


def test_two_torchrun_processes_give_the_same_number(fid_run):
    common, record, root = fid_run
    out = root / "two.json"
    proc = _torchrun(2, [*common, "--out", str(out)])
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    two = json.loads(out.read_text())
    assert two["run"]["world_size"] == 2
    assert two["real"]["cache_hit"] is True  # the real statistics were cached by the first run
    assert two["fid"] == record["fid"]


def test_killed_run_resumes_to_the_same_number(fid_run):
    common, record, root = fid_run
    out = root / "killed.json"
    parts = root / "killed.json.parts"
    proc = _torchrun(2, [*common, "--out", str(out)])
    deadline = time.time() + 300
    try:
        while len(list(parts.glob("fake-*.npy"))) < 4:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "no shards appeared"
            time.sleep(0.05)
    finally:
        kill_tree(proc)
    done = len(list(parts.glob("fake-*.npy")))
    assert 4 <= done < NUM_FAKE // BATCH and not out.exists()
    # Resume in a single process: the shards do not depend on the number of processes.
    assert cli_main(["fid", *common, "--out", str(out)]) == 0
    resumed = json.loads(out.read_text())
    assert resumed["run"]["resumed_samples"] >= 4 * BATCH
    assert resumed["fid"] == record["fid"]
    # A run folder of other settings is refused rather than mixed in.
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps({"settings": {"seed": 1}}))
    assert cli_main(["fid", *common, "--out", str(out)]) == 1


def test_random_camera_protocol_and_statistics_file(fid_run, dataset, tmp_path, capsys):
    common, record, root = fid_run
    cache = Path(record["real"]["cache"])
    out = tmp_path / "cam.json"
    args = ["fid", "--data", str(cache), "--inception", common[common.index("--inception") + 1], *FID_ARGS,
            "--num-samples", "24", "--camera", "random", "--out", str(out)]
    assert cli_main(args) == 0
    cam = json.loads(out.read_text())
    assert cam["metric"] == "fid24_camera" and cam["camera_distribution"]["kind"] == "uniform"
    assert cam["real"]["kind"] == "statistics" and np.isfinite(cam["fid"])
    # FID50k needs labels: an .npz has none unless --labels is given.
    capsys.readouterr()
    assert cli_main([*args[:-2], "--camera", "dataset", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "needs the dataset's camera labels" in err and "\n" not in err
    assert cli_main([*args[:-2], "--camera", "dataset", "--labels", str(dataset / "dataset.json"),
                     "--out", str(tmp_path / "lab.json")]) == 0


def test_cli_errors_are_one_line(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EG3D_INCEPTION", raising=False)
    assert cli_main(["fid", "--data", str(dataset), "--num-samples", "4", "--out", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Inception network given") and INCEPTION_URL in err and "\n" not in err
    assert cli_main(["fid", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 1
    assert "no such dataset" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_statistics_of_another_network_are_refused(standin, tmp_path, capsys):
    save_stats(feature_stats(np.random.default_rng(0).normal(size=(10, 6))), tmp_path / "six.npz")
    real = open_real(tmp_path / "six.npz")
    assert real.stats is not None and real.dataset is None and real.labels is None
    args = ["fid", "--data", str(tmp_path / "six.npz"), "--inception", str(standin), "--camera", "random",
            "--num-samples", "4", "--out", str(tmp_path / "x.json"), "-q"]
    assert cli_main(args) == 1
    assert "statistics of 6-d features, but the Inception network gives 512-d features" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_evaluate_fid_api(demo_generator, fid_run):
    """The one-call API on an in-memory model: the same number as the CLI gives for the same settings."""
    from eg3d_core.metrics import FIDSettings, evaluate_fid
    from eg3d_core.metrics.fid import original_render

    common, record, _ = fid_run
    data, inception = common[common.index("--data") + 1], common[common.index("--inception") + 1]
    render = dataclasses.replace(original_render(), neural_rendering_resolution=32)
    settings = FIDSettings(num_samples=NUM_FAKE, batch_size=BATCH, render=render, seed=5)
    result = evaluate_fid(demo_generator, data, inception, settings, cache_dir=common[common.index("--cache-dir") + 1],
                          progress=False, log=lambda _: None)
    assert result.fid == record["fid"] and result.record["real"]["cache_hit"] is True


def test_chunk_ownership_and_rank_devices(monkeypatch):
    from eg3d_core.metrics.sharding import Distributed, rank_device

    owned = [list(Distributed(rank=r, world_size=3).own_chunks(50, 8)) for r in range(3)]
    assert owned == [[0, 3, 6], [1, 4], [2, 5]]  # 7 chunks of 8 (the last of 2), each exactly once
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("cuda") == torch.device("cuda", 1) == rank_device("cuda:0")  # each rank on its own GPU
    assert rank_device("cpu") == torch.device("cpu") and rank_device(None) == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert rank_device("cuda:0") == torch.device("cuda", 0)
