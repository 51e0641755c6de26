"""The ``eg3d`` command end to end, in-process (``main([...])``) except for the start-up checks.

The tiny cars fixture has random weights: its raw density spans roughly [-1, 5], so meshes use level 2 (the
original's level 10 has no surface there) and level 1000 checks the no-surface error. Tests marked ``demo``
use the bundled demo model and are skipped until ``assets/demo/model.safetensors`` exists.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

import eg3d_core
from eg3d_core.apps.cli import main
from eg3d_core.checkpoints import DEMO_MODEL
from eg3d_core.errors import CheckpointError, InputError, NoSurfaceError, OutputError
from eg3d_core.latents import LatentSource
from eg3d_core.settings import RenderSettings

FIXTURES = Path(__file__).parent / "fixtures"
PKL = str(FIXTURES / "tiny_cars128" / "network-snapshot.pkl")
PTH = str(FIXTURES / "tiny_cars128" / "mmagic.pth")
SHAPENET_CFG = str(FIXTURES / "mmagic_configs" / "eg3d" / "eg3d_cvt-official-rgb_shapenet-128x128.py")
ROOT = Path(__file__).resolve().parents[1]

needs_demo = pytest.mark.skipif(not (DEMO_MODEL / "model.safetensors").is_file(),
                                reason="the bundled demo model (assets/demo/model.safetensors) is not built yet")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err: str) -> str:
    """The error message: exactly one line starting with 'error: ', no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------------------------
# Start-up, help, errors


def test_python_m_and_console_script() -> None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    res = subprocess.run([sys.executable, "-m", "eg3d_core", "--help"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0
    for cmd in ("demo", "samples", "video", "mesh", "convert", "dataset"):
        assert cmd in res.stdout
    script = Path(sys.executable).parent / "eg3d"
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    res = subprocess.run([str(script), "mesh", "--model", "/nonexistent/model.pkl", "--outdir", "/tmp/eg3d-unused"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1 and res.stdout == ""
    assert error_line(res.stderr) == "error: cannot read /nonexistent/model.pkl: No such file or directory"


@pytest.mark.parametrize("cmd", ["demo", "samples", "video", "mesh", "convert", "dataset"])
def test_help(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([cmd, "--help"])
    assert info.value.code == 0
    assert f"usage: eg3d {cmd}" in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run(["samples", "--model", PKL, "--outdir", str(blocker / "sub"), "-q"], capsys)
    assert rc == 1 and error_line(err).startswith(f"error: cannot write to {blocker / 'sub'}")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(os.urandom(1000))
    rc, _, err = run(["mesh", "--model", str(bad), "--outdir", str(tmp_path / "m"), "-q"], capsys)
    assert rc == 1 and "not a generator checkpoint" in error_line(err)
    rc, _, err = run(["mesh", "--model", PKL, "--format", "none", "--outdir", str(tmp_path / "m"), "-q"], capsys)
    assert rc == 1 and "--volume" in error_line(err)
    rc, _, err = run(["convert", "--in", PKL, "--out", str(tmp_path / "x.pth"), "--to", "native"], capsys)
    assert rc == 1 and "folder" in error_line(err)
    rc, _, err = run(["demo", "--model-name", "stylegan2", "--result-out-dir", str(tmp_path / "d")], capsys)
    assert rc == 1 and "eg3d" in error_line(err)
    rc, _, err = run(["demo", "--model-ckpt", PKL, "--extra-parameters", "foo=1", "--result-out-dir",
                      str(tmp_path / "d")], capsys)
    assert rc == 1 and "foo" in error_line(err)
    if not torch.cuda.is_available():
        rc, _, err = run(["mesh", "--model", PKL, "--device", "cuda", "--outdir", str(tmp_path / "m")], capsys)
        assert rc == 1 and "CUDA is not available" in error_line(err)
    for argv, option in ((["mesh", "--seeds", "3-1", "--outdir", "x"], "--seeds"),
                         (["video", "--grid", "2y2", "--outdir", "x"], "--grid"),
                         (["demo", "--vis-mode", "rgb"], "--vis-mode")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 1
        assert error_line(capsys.readouterr().err).startswith(f"error: argument {option}: ")


@pytest.mark.parametrize("error", [ValueError("a bug"), TypeError("a bug"), RuntimeError("a bug")])
def test_library_bugs_keep_their_traceback(error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Only the library's user errors (EG3DError) and the system's OSError become an 'error:' line; anything else
    raised inside a command is a bug and reaches the caller with its traceback (no exit code 1, no 'error:' line)."""
    def broken(*args: object, **kwargs: object) -> None:
        raise error

    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": [["a.png", [0.0] * 25]]}))
    monkeypatch.setattr("eg3d_core.apps.datasets.write_json", broken)
    with pytest.raises(type(error), match="a bug"):
        main(["dataset", "--in-anno", str(src), "--out-anno", str(tmp_path / "out.json")])
    assert "error:" not in capsys.readouterr().err


@pytest.mark.parametrize("error", [InputError("bad value"), OutputError("cannot write x: disk full"),
                                   CheckpointError("x.pkl: truncated"), NoSurfaceError("no surface at level 3"),
                                   PermissionError(13, "Permission denied", "out.json")])
def test_user_errors_from_the_library_are_one_line(error: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise error

    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": [["a.png", [0.0] * 25]]}))
    monkeypatch.setattr("eg3d_core.apps.datasets.write_json", failing)
    rc, _, err = run(["dataset", "--in-anno", str(src), "--out-anno", str(tmp_path / "out.json")], capsys)
    want = "out.json: Permission denied" if isinstance(error, PermissionError) else str(error)
    assert rc == 1 and error_line(err) == f"error: {want}"


def test_python_m_bug_exits_with_a_traceback(tmp_path: Path) -> None:
    """The same from a shell: a bug ends in Python's traceback (exit status 1 too, but no 'error:' line)."""
    code = ("import sys, eg3d_core.apps.datasets as d\n"
            "def broken(*a, **k): raise RuntimeError('a bug')\n"
            "d.convert_labels = broken\n"
            "from eg3d_core.apps.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-c", code, "dataset", "--in-anno", "x.json", "--out-anno", "y.json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert res.returncode != 0 and "Traceback" in res.stderr and "RuntimeError: a bug" in res.stderr
    assert "error:" not in res.stderr


# ----------------------------------------------------------------------------------------------------------------
# demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--model-name", "eg3d", "--model-ckpt", PKL, "--result-out-dir", str(out), "--num-images", "4",
                 "--num-batches", "2", "--nrr", "16", "--device", "cpu"]) == 0
    return out


def test_demo_writes_mmagic_files(demo_run: Path) -> None:
    want = [f"{t}_frame{i}_seed2022.png" for t in ("combine", "depth", "fake_img") for i in range(4)]
    want += [f"{t}_seed2022.mp4" for t in ("combine", "depth", "fake_img")]
    assert names(demo_run) == sorted(want)
    # Batch 2: make_grid with 2 images per row (padding 2) for images/depth, 1 per row for [image | depth].
    img, depth, comb = (png(demo_run / f"{t}_frame1_seed2022.png") for t in ("fake_img", "depth", "combine"))
    assert img.shape == depth.shape == (132, 262, 3) and comb.shape == (262, 260, 3)
    assert np.array_equal(comb[2:130, 2:130], img[2:130, 2:130])
    assert np.array_equal(comb[2:130, 130:258], depth[2:130, 2:130])
    assert np.array_equal(comb[132:260, 2:130], img[2:130, 132:260])
    assert (depth[..., 0] == depth[..., 1]).all() and (depth[..., 0] == depth[..., 2]).all()
    # Global min/max: the nearest point of the whole sequence maps to 255 (>= 250 after the bilinear upsampling,
    # whose output pixels fall between the 16x16 depth samples, and the truncation).
    assert max(png(demo_run / f"depth_frame{i}_seed2022.png").max() for i in range(4)) >= 250
    for t in ("combine", "depth", "fake_img"):
        assert iio.imread(demo_run / f"{t}_seed2022.mp4").shape[0] == 4


def test_demo_seeding_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["demo", "--model-ckpt", PKL, "--num-batches", "1", "--nrr", "16", "--vis-mode", "IMG", "--latents", "seed",
              "--seed", "5", "-q"]
    assert run([*common, "--result-out-dir", str(a), "--num-images", "2", "--save-video", "0"], capsys)[0] == 0
    assert run([*common, "--result-out-dir", str(b), "--num-images", "3", "--save-video", "false"], capsys)[0] == 0
    assert names(a) == ["fake_img_frame0_seed5.png", "fake_img_frame1_seed5.png"]
    assert len(names(b)) == 3
    # Same z (drawn first), and frame 0 of every orbit is the same pose: identical frames.
    assert np.array_equal(png(a / "fake_img_frame0_seed5.png"), png(b / "fake_img_frame0_seed5.png"))
    assert png(a / "fake_img_frame0_seed5.png").shape == (128, 128, 3)  # a batch of one is not padded


def test_demo_mmagic_pth_with_mmagic_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["demo", "--model-ckpt", PTH, "--model-config", SHAPENET_CFG, "--result-out-dir", str(tmp_path),
                      "--num-images", "2", "--extra-parameters", "num_batches=1", "sample_model=orig", "--vis-mode",
                      "depth", "--nrr", "16", "--interpolation", "conditioning", "-q"], capsys)
    assert rc == 0 and "wrote 3 files" in out
    assert names(tmp_path) == ["depth_frame0_seed2022.png", "depth_frame1_seed2022.png", "depth_seed2022.mp4"]
    assert iio.imread(tmp_path / "depth_seed2022.mp4").shape[0] == 2


def test_demo_single_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, _ = run(["demo", "--model-ckpt", PKL, "--result-out-dir", str(tmp_path), "--num-images", "1",
                    "--num-batches", "1", "--nrr", "16", "-q"], capsys)
    assert rc == 0
    assert names(tmp_path) == ["combine_seed2022.png", "depth_seed2022.png", "fake_img_seed2022.png"]


# ----------------------------------------------------------------------------------------------------------------
# samples


def test_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(["samples", "--network", PKL, "--seeds", "0,2", "--nrr", "16", "--outdir", str(tmp_path)], capsys)
    assert rc == 0 and "seeds" in err  # the tqdm bar
    assert names(tmp_path) == ["seed0000.png", "seed0002.png"]
    image = png(tmp_path / "seed0000.png")
    assert image.shape == (128, 3 * 128, 3)
    # The middle view is the frontal yaw at pitch -0.2, rendered from the seed's latent.
    G = eg3d_core.load_generator(PKL)
    from eg3d_core import cameras
    from eg3d_core.apps.video import frame_image

    d = cameras.camera_defaults(G.config)
    ws = LatentSource(seed=0).ws(G)
    with torch.no_grad():
        want = G.synthesis(ws, cameras.camera(d, 0.0, -0.2), **RenderSettings(16).synthesis_kwargs(G.config))
    np.testing.assert_allclose(image[:, 128:256].astype(int), frame_image(want, "image")[0].astype(int), atol=1)

    out2 = tmp_path / "grid"
    rc, _, _ = run(["samples", "--model", PKL, "--seeds", "1", "--yaws", "0.3,-0.3", "--pitches=-0.2,0.2",
                    "--image-mode", "image_raw", "--nrr", "16", "--shapes", "--shape-res", "32", "--shape-format",
                    "ply", "--level", "2", "--outdir", str(out2), "-q"], capsys)
    assert rc == 0 and names(out2) == ["seed0001.ply", "seed0001.png"]
    assert png(out2 / "seed0001.png").shape == (32, 32, 3)
    mesh = trimesh.load(out2 / "seed0001.ply", process=False)
    assert len(mesh.vertices) > 0 and len(mesh.faces) > 0


def test_samples_super_resolution_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--sr-precision reaches the super-resolution (``RenderSettings.sr_precision``); bfloat16 forced on the model so
    that reduced and fp32 really differ on any CPU."""
    from eg3d_core import cameras
    from eg3d_core.apps.samples import render_outputs

    rc, _, _ = run(["samples", "--network", PKL, "--seeds", "0", "--nrr", "16", "--precision", "reduced",
                    "--sr-precision", "fp32", "--outdir", str(tmp_path), "-q"], capsys)
    assert rc == 0 and names(tmp_path) == ["seed0000.png"]
    with pytest.raises(SystemExit) as info:
        main(["samples", "--network", PKL, "--seeds", "0", "--sr-precision", "fp16", "--outdir", str(tmp_path)])
    assert info.value.code == 1 and "--sr-precision: invalid choice: 'fp16'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="super-resolution precision must be one of fp32, reduced"):
        RenderSettings(16, sr_precision="half")

    G = eg3d_core.load_generator(PKL)
    G.reduced_dtype = torch.bfloat16
    d = cameras.camera_defaults(G.config)
    c = cameras.camera(d, 0.0, -0.2)
    with torch.no_grad():
        ws = LatentSource(seed=0).ws(G)
        planes = G.planes(ws, precision="reduced")
        mixed = render_outputs(G, planes, ws, c, RenderSettings(16, precision="reduced", sr_precision="fp32"))
        reduced = render_outputs(G, planes, ws, c, RenderSettings(16, precision="reduced"))
        features, _ = G.render(planes, c, 16, precision="reduced")
        assert torch.equal(mixed["image"], G.super_resolve(features, ws, "fp32"))
    assert not torch.equal(mixed["image"], reduced["image"])


# ----------------------------------------------------------------------------------------------------------------
# video


def test_video_interpolation_grid_and_per_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["video", "--model", PKL, "--seeds", "0-1", "--w-frames", "2", "--nrr", "16", "--sample-mult",
                      "1", "--outdir", str(tmp_path / "a"), "-q"], capsys)
    assert rc == 0 and "interpolation.mp4 (4 frames)" in out
    assert iio.imread(tmp_path / "a" / "interpolation.mp4").shape == (4, 128, 128, 3)

    # One keyframe per cell: a camera-only video of a 2x1 grid.
    rc, _, _ = run(["video", "--model", PKL, "--seeds", "0-1", "--grid", "2x1", "--w-frames", "3", "--image-mode",
                    "image_raw", "--nrr", "16", "--sample-mult", "1", "--outdir", str(tmp_path / "b"), "-q"], capsys)
    video = iio.imread(tmp_path / "b" / "interpolation.mp4")
    assert rc == 0 and video.shape == (3, 16, 32, 3)

    rc, _, _ = run(["video", "--model", PKL, "--seeds", "3,5", "--no-interpolate", "--w-frames", "3", "--image-mode",
                    "image_depth", "--nrr", "16", "--sample-mult", "1", "--outdir", str(tmp_path / "c"), "-q"], capsys)
    assert rc == 0 and names(tmp_path / "c") == ["3.mp4", "5.mp4"]
    video = iio.imread(tmp_path / "c" / "3.mp4")
    assert video.shape == (3, 16, 16, 3) and video.max() > 200 and video.min() < 50


# ----------------------------------------------------------------------------------------------------------------
# mesh


def test_mesh_formats_colors_and_volumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("ply", "obj", "glb"):
        out = tmp_path / fmt
        rc, stdout, _ = run(["mesh", "--model", PKL, "--seeds", "0", "--resolution", "32", "--level", "2", "--format",
                             fmt, "--outdir", str(out), "-q"], capsys)
        assert rc == 0 and names(out) == [f"seed0000.{fmt}"] and "wrote" in stdout
        loaded = trimesh.load(out / f"seed0000.{fmt}", force="mesh", process=False)
        assert len(loaded.vertices) > 0 and len(loaded.faces) > 0
        if fmt == "ply":
            ply = loaded
    colors = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert colors.std() > 0  # coloured from the generator, not a constant default

    out = tmp_path / "vol"
    rc, _, _ = run(["mesh", "--model", PKL, "--seeds", "0,1", "--resolution", "32", "--level", "2", "--no-colors",
                    "--volume", "npy", "--outdir", str(out), "-q"], capsys)
    assert rc == 0 and names(out) == ["seed0000.npy", "seed0000.ply", "seed0001.npy", "seed0001.ply"]
    vol = np.load(out / "seed0000.npy")
    assert vol.shape == (32, 32, 32) and vol.dtype == np.float32 and (vol[:3] == -1000).all() and vol.max() > 2
    dense = trimesh.load(out / "seed0000.ply", process=False)
    assert not dense.visual.kind == "vertex" or np.asarray(dense.visual.vertex_colors).std() == 0
    # The coarse-to-fine mesh (first run) equals the one from the dense volume.
    np.testing.assert_allclose(np.sort(dense.vertices, axis=0), np.sort(ply.vertices, axis=0), atol=1e-6)

    out = tmp_path / "mrc"
    rc, _, _ = run(["mesh", "--model", PKL, "--resolution", "32", "--format", "none", "--volume", "mrc", "--outdir",
                    str(out), "-q"], capsys)
    assert rc == 0 and names(out) == ["seed0000.mrc"]
    assert (out / "seed0000.mrc").stat().st_size == 1024 + 4 * 32**3


def test_mesh_without_surface_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in ([], ["--volume", "npy"]):
        rc, _, err = run(["mesh", "--model", PKL, "--seeds", "0", "--resolution", "32", "--level", "1000",
                          "--outdir", str(tmp_path), "-q", *extra], capsys)
        line = error_line(err)
        assert rc == 1 and line.startswith("error: seed 0: no surface at level 1000") and "density range seen [" in line
        assert names(tmp_path) == []


def test_latent_of_a_pti_inversion_uses_the_tuned_model_beside_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``eg3d invert --pti`` writes DIR/x.npz and the tuned generator DIR/x/: ``mesh`` / ``video`` / ``samples``
    ``--latent DIR/x.npz`` take DIR/x/ when no --model is given (and say so), an explicit --model wins."""
    from eg3d_core.checkpoints import save_generator
    from eg3d_core.latents import save_ws

    G = eg3d_core.load_generator(PKL)
    inv = tmp_path / "inv"
    inv.mkdir()
    save_ws(LatentSource(seed=0).ws(G), inv / "car.npz")
    with torch.no_grad():  # a "tuned" generator: the same config, other weights (a sharper, brighter field)
        for name, p in G.named_parameters():
            if name.startswith("decoder."):
                p.mul_(1.5)
    save_generator(G, inv / "car")
    tuned = str(inv / "car")
    mesh = ["mesh", "--latent", str(inv / "car.npz"), "--resolution", "32", "--level", "2", "--format", "ply"]
    video = ["video", "--latent", str(inv / "car.npz"), "--w-frames", "2", "--nrr", "16", "--sample-mult", "1"]

    def made(argv: list[str], out: Path, file: str) -> tuple[np.ndarray, str]:
        rc, _, err = run([*argv, "--outdir", str(out)], capsys)
        assert rc == 0, err
        if file.endswith(".ply"):
            return np.asarray(trimesh.load(out / file, process=False).vertices), err
        return iio.imread(out / file).astype(int), err

    note = f"note: using the pivotal-tuned model {tuned}/ saved with car.npz"
    samples = ["samples", "--latent", str(inv / "car.npz"), "--nrr", "16", "--sample-mult", "1"]
    for argv, file in ((mesh, "car.ply"), (video, "car.mp4"), (samples, "car.png")):
        name = argv[0]
        beside, err = made(argv, tmp_path / f"{name}-beside", file)
        assert [line for line in err.splitlines() if "pivotal-tuned" in line] == [note + " (--model overrides)"], err
        explicit, err = made([*argv, "--model", tuned], tmp_path / f"{name}-tuned", file)
        base, err_base = made([*argv, "--model", PKL], tmp_path / f"{name}-base", file)
        assert "pivotal-tuned" not in err + err_base
        assert beside.shape == explicit.shape and (beside == explicit).all()
        assert beside.shape != base.shape or np.abs(beside - base).mean() > 1e-3
    # Quiet runs say nothing; a folder beside the file that holds no saved model is not taken for one.
    rc, _, err = run([*mesh, "--outdir", str(tmp_path / "quiet"), "-q"], capsys)
    assert rc == 0 and err == ""
    (inv / "other.npz").write_bytes((inv / "car.npz").read_bytes())
    (inv / "other").mkdir()
    rc, _, err = run([*mesh[:2], str(inv / "other.npz"), *mesh[3:], "--outdir", str(tmp_path / "other")], capsys)
    assert "pivotal-tuned" not in err and rc == 1  # the demo model: another num_ws / w_dim than this file's
    line = error_line(err)
    assert line.startswith(f"error: {inv / 'other.npz'}: ") and line.count("other.npz") == 1 and "model takes" in line


def test_failed_runs_leave_no_folder_they_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """--outdir (and its missing parents) created by a run that then fails with nothing written is removed again;
    a folder that existed before is kept, and so is one the run wrote into."""
    out = tmp_path / "new" / "meshes"
    rc, _, err = run(["mesh", "--model", PKL, "--resolution", "32", "--level", "1000", "--outdir", str(out), "-q"],
                     capsys)
    assert rc == 1 and "no surface" in error_line(err) and names(tmp_path) == []
    existing = tmp_path / "existing"
    existing.mkdir()
    rc, _, _ = run(["mesh", "--model", PKL, "--resolution", "32", "--level", "1000", "--outdir", str(existing), "-q"],
                   capsys)
    assert rc == 1 and names(tmp_path) == ["existing"] and names(existing) == []
    # fid creates the folder of --out before it finds that there is no dataset.
    rc, _, err = run(["fid", "--model", PKL, "--data", str(tmp_path / "nothing"), "--out",
                      str(tmp_path / "f" / "fid.json"), "-q"], capsys)
    assert rc == 1 and "no such dataset" in error_line(err) and names(tmp_path) == ["existing"]
    # demo and a bug instead of a user error: still removed (the traceback goes on).
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("eg3d_core.apps.mmagic_demo.render_demo", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["demo", "--model-ckpt", PKL, "--result-out-dir", str(tmp_path / "d"), "-q"])
    assert names(tmp_path) == ["existing"]
    # A run that fails after writing keeps its folder and files (seed 0's picture, then its shape has no surface).
    out = tmp_path / "partial"
    rc, _, err = run(["samples", "--model", PKL, "--seeds", "0,1", "--nrr", "16", "--shapes", "--shape-res", "32",
                      "--shape-format", "ply", "--level", "1000", "--outdir", str(out), "-q"], capsys)
    assert rc == 1 and "seed 0: no surface" in error_line(err) and names(out) == ["seed0000.png"]


# ----------------------------------------------------------------------------------------------------------------
# convert


def _image(G: eg3d_core.Generator) -> torch.Tensor:
    from eg3d_core import cameras

    d = cameras.camera_defaults(G.config)
    ws = LatentSource(seed=3).ws(G)
    with torch.no_grad():
        return G.synthesis(ws, cameras.camera(d, 0.3, -0.1), neural_rendering_resolution=16)["image"]


def test_convert_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nat, pth, nat2 = tmp_path / "native", tmp_path / "model.pth", tmp_path / "native2"
    rc, out, _ = run(["convert", "--in", PKL, "--out", str(nat)], capsys)
    assert rc == 0 and "source format: official" in out and "wrote" in out and "parameters: " in out
    assert "super-resolution 2X" in out and "neural rendering resolution: 64" in out and "2 layers" in out
    rc, out, _ = run(["convert", "--in", str(nat), "--out", str(pth)], capsys)
    assert rc == 0 and "source format: native" in out and "(mmagic)" in out
    rc, out, err = run(["convert", "--in", str(pth), "--out", str(nat2), "--to", "native"], capsys)
    assert rc == 0 and "source format: mmagic" in out and err == ""  # its own config travelled in the .pth
    G0, G1, G2 = (eg3d_core.load_generator(p) for p in (PKL, nat, nat2))
    assert G0.config == G1.config == G2.config
    sd0, sd2 = G0.state_dict(), G2.state_dict()
    assert sd0.keys() == sd2.keys() and all(torch.equal(sd0[k], sd2[k]) for k in sd0)
    assert torch.equal(_image(G0), _image(G2))


def test_convert_mmagic_input_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["convert", "--in", PTH, "--out", str(tmp_path / "a")], capsys)
    assert rc == 0 and "stores no renderer settings" in err
    rc, out, err = run(["convert", "--in", PTH, "--out", str(tmp_path / "b"), "--config", "shapenetcars128-64"], capsys)
    assert rc == 0 and err == ""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(eg3d_core.load_generator(PKL).config.to_dict()))
    rc, _, _ = run(["convert", "--in", PTH, "--out", str(tmp_path / "c"), "--config", str(cfg)], capsys)
    assert rc == 0 and eg3d_core.load_generator(tmp_path / "c").config.rendering.depth_resolution == 12
    rc, _, err = run(["convert", "--in", PTH, "--out", str(tmp_path / "d"), "--config", SHAPENET_CFG], capsys)
    assert rc == 0 and eg3d_core.load_generator(tmp_path / "d").config.rendering.box_warp == 1.7
    rc, _, err = run(["convert", "--in", PTH, "--out", str(tmp_path / "e"), "--config", "ffhq512-128"], capsys)
    assert rc == 1 and "super-resolution" in error_line(err)
    assert not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------------------------------------------
# dataset


def test_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "dataset.json", tmp_path / "labels.json"
    labels = [[f"{i:05d}.png", [float(i)] * 25] for i in range(3)]
    src.write_text(json.dumps({"labels": labels}))
    rc, out, _ = run(["dataset", "--in-anno", str(src), "--out-anno", str(dst)], capsys)
    assert rc == 0 and "3 labels (official -> mmagic)" in out
    assert json.loads(dst.read_text()) == {name: value for name, value in labels}
    labels[1][1] = [1.0] * 24
    labels[2][1] = [2.0] * 3
    src.write_text(json.dumps({"labels": labels}))
    dst.unlink()
    rc, _, err = run(["dataset", "--in-anno", str(src), "--out-anno", str(dst)], capsys)
    assert rc == 1 and "entry 1 ('00001.png'): the label has 24 values" in error_line(err)
    assert not dst.exists() and names(tmp_path) == ["dataset.json"]


# ----------------------------------------------------------------------------------------------------------------
# The bundled demo model (default when no checkpoint is given)


@needs_demo
def test_demo_model_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, _ = run(["demo", "--result-out-dir", str(tmp_path), "--num-images", "4", "-q"], capsys)
    assert rc == 0 and len(names(tmp_path)) == 15
    assert iio.imread(tmp_path / "fake_img_seed2022.mp4").shape[0] == 4
    img = png(tmp_path / "fake_img_frame0_seed2022.png")
    assert img.std() > 5  # a real picture, not a flat frame


@needs_demo
def test_demo_model_samples_video_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["samples", "--seeds", "0", "--outdir", str(tmp_path / "s"), "-q"], capsys)[0] == 0
    assert names(tmp_path / "s") == ["seed0000.png"]
    assert run(["video", "--seeds", "0-1", "--w-frames", "2", "--outdir", str(tmp_path / "v"), "-q"], capsys)[0] == 0
    assert iio.imread(tmp_path / "v" / "interpolation.mp4").shape[0] == 4
    # The original's level 10 must give a surface on the trained model.
    rc, _, err = run(["mesh", "--seeds", "0", "--resolution", "64", "--outdir", str(tmp_path / "m"), "-q"], capsys)
    assert rc == 0, err
    mesh = trimesh.load(tmp_path / "m" / "seed0000.ply", process=False)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100


@needs_demo
def test_demo_model_convert_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(["convert", "--in", "demo", "--out", str(tmp_path / "demo.pth")], capsys)
    assert rc == 0 and "source format: native" in out
    assert run(["convert", "--in", str(tmp_path / "demo.pth"), "--out", str(tmp_path / "back")], capsys)[0] == 0
    G0, G1 = eg3d_core.load_generator("demo"), eg3d_core.load_generator(tmp_path / "back")
    assert G0.config == G1.config
    sd0, sd1 = G0.state_dict(), G1.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
