"""Every numeric option of ``eg3d`` has a range; requests beyond the memory there is are refused up front; label files
are read within a bound. A refusal is exit status 1, exactly one ``error:`` line naming the problem, no traceback and
nothing written (not even the output folder)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from eg3d_core import budget, labels
from eg3d_core.apps.cli import main
from eg3d_core.checkpoints import load_generator
from eg3d_core.errors import InputError
from eg3d_core.settings import RenderSettings

FIXTURES = Path(__file__).parent / "fixtures"
PKL = str(FIXTURES / "tiny_cars128" / "network-snapshot.pkl")
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``eg3d argv``; it must exit 1 with one 'error:' line and no traceback. Returns that line."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refusals exit from parse_args
        rc = e.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and out == "", (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------------------------------
# Ranges of the options (argparse: no model is loaded)

BAD_VALUES = [
    # the cases
    (["samples", "--nrr", "100000"], "--nrr"),
    (["samples", "--nrr", "2048"], "--nrr"),
    (["samples", "--sample-mult", "1000"], "--sample-mult"),
    (["samples", "--trunc", "1e308"], "--trunc"),
    (["mesh", "--resolution", "2048"], "--resolution"),
    (["mesh", "--resolution", "100000"], "--resolution"),
    (["samples", "--trunc", "nan"], "--trunc"),
    (["samples", "--focal", "nan"], "--focal"),
    (["samples", "--yaws=nan,inf"], "--yaws"),
    (["mesh", "--smooth=-5"], "--smooth"),
    # the rest of each command's numbers
    (["samples", "--trunc", "-inf"], "--trunc"),
    (["samples", "--trunc", "2.5"], "--trunc"),
    (["samples", "--trunc-cutoff", "-1"], "--trunc-cutoff"),
    (["samples", "--focal", "0"], "--focal"),
    (["samples", "--focal", "-4"], "--focal"),
    (["samples", "--focal", "1e6"], "--focal"),
    (["samples", "--yaws=0.4,inf"], "--yaws"),
    (["samples", "--yaws=0,7"], "--yaws"),
    (["samples", "--yaws=" + ",".join(["0"] * 17)], "--yaws"),
    (["samples", "--pitches=1.6"], "--pitches"),
    (["samples", "--pitches=nan"], "--pitches"),
    (["samples", "--pitches="], "--pitches"),
    (["samples", "--nrr", "2"], "--nrr"),
    (["samples", "--sample-mult", "0"], "--sample-mult"),
    (["samples", "--shape-res", "4096"], "--shape-res"),
    (["samples", "--level", "nan"], "--level"),
    (["samples", "--seeds", "1-99999999999"], "--seeds"),
    (["mesh", "--level", "inf"], "--level"),
    (["mesh", "--level", "1e9"], "--level"),
    (["mesh", "--smooth", "100000"], "--smooth"),
    (["mesh", "--resolution", "1"], "--resolution"),
    (["video", "--fps", "0"], "--fps"),
    (["video", "--fps", "100000"], "--fps"),
    (["video", "--w-frames", "0"], "--w-frames"),
    (["video", "--w-frames", "10000000"], "--w-frames"),
    (["video", "--num-keyframes", "0"], "--num-keyframes"),
    (["video", "--grid", "100x100"], "--grid"),
    (["video", "--grid", "0x1"], "--grid"),
    (["video", "--bitrate", "fast"], "--bitrate"),
    (["video", "--bitrate", "10G"], "--bitrate"),
    (["video", "--bitrate", "1"], "--bitrate"),
    (["video", "--shuffle-seed", "-1"], "--shuffle-seed"),
    (["video", "--focal", "inf"], "--focal"),
    (["demo", "--seed", "-1"], "--seed"),
    (["demo", "--seed", str(2**32)], "--seed"),
    (["demo", "--num-images", "0"], "--num-images"),
    (["demo", "--num-images", "1000000"], "--num-images"),
    (["demo", "--num-batches", "1000"], "--num-batches"),
    (["demo", "--nrr", "nan"], "--nrr"),
    (["fid", "--data", "x", "--num-samples", "1"], "--num-samples"),
    (["fid", "--data", "x", "--num-samples", "100000000"], "--num-samples"),
    (["fid", "--data", "x", "--batch-size", "0"], "--batch-size"),
    (["fid", "--data", "x", "--batch-size", "100000"], "--batch-size"),
    (["fid", "--data", "x", "--threads", "0"], "--threads"),
    (["fid", "--data", "x", "--seed", "-5"], "--seed"),
    (["fid", "--data", "x", "--nrr", "5000"], "--nrr"),
    (["fid", "--data", "x", "--trunc", "nan"], "--trunc"),
]


@pytest.mark.parametrize(("argv", "option"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_one_line_naming_the_option(argv: list[str], option: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    where = ["--out", str(out / "fid.json")] if argv[0] == "fid" else \
        ["--result-out-dir", str(out)] if argv[0] == "demo" else ["--outdir", str(out)]
    line = refused([*argv, *where, "--model" if argv[0] != "demo" else "--model-ckpt", PKL], capsys)
    assert line.startswith(f"error: argument {option}"), line
    assert not out.exists()


def test_values_at_the_bounds_are_accepted() -> None:
    """The ranges are inclusive and every default is inside them (parsing only)."""
    from eg3d_core.apps.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["samples", "--outdir", "x", "--trunc", "-1", "--focal", "50", "--yaws=-3.14159,3.14159",
                              "--pitches=-1.48,1.48", "--nrr", "1024", "--sample-mult", "16", "--shape-res", "1024"])
    assert args.trunc == -1 and args.focal == 50 and args.nrr == 1024 and args.sample_mult == 16
    args = parser.parse_args(["video", "--outdir", "x", "--bitrate", "800k", "--fps", "240", "--grid", "16x16"])
    assert args.bitrate == "800k" and args.grid == (16, 16)
    for command in (["samples", "--outdir", "x"], ["video", "--outdir", "x"], ["mesh", "--outdir", "x"], ["demo"],
                    ["fid", "--data", "x"]):
        parser.parse_args(command)


def test_extra_parameters_num_batches_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["demo", "--model-ckpt", PKL, "--extra-parameters", "num_batches=1000", "--result-out-dir",
                    str(tmp_path / "d")], capsys)
    assert line == "error: num_batches must be an integer in [1, 64], got '1000'"
    assert not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------------------------------------------
# Memory


@pytest.mark.parametrize("argv", [
    ["samples", "--nrr", "256"],
    ["samples", "--shapes", "--shape-res", "256", "--nrr", "16", "--yaws", "0"],
    ["mesh", "--resolution", "256"],
    ["video", "--nrr", "256"],
    ["demo", "--nrr", "256"],
], ids=lambda a: " ".join(a))
def test_requests_over_the_memory_limit_are_refused_up_front(argv: list[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A small EG3D_MEMORY_LIMIT: refused after loading the model and before anything is allocated or written."""
    monkeypatch.setenv("EG3D_MEMORY_LIMIT", "100M")
    out = tmp_path / "out"
    where = ["--result-out-dir", str(out), "--model-ckpt", PKL] if argv[0] == "demo" else \
        ["--outdir", str(out), "--model", PKL]
    line = refused([*argv, *where, "-q"], capsys)
    option = "--shape-res 256" if "--shapes" in argv else "--resolution 256" if argv[0] == "mesh" else "--nrr 256"
    assert line.startswith(f"error: {option}") and " needs about " in line
    assert line.endswith("more than EG3D_MEMORY_LIMIT=100 MB")
    assert not out.exists()


def test_memory_refusal_against_the_available_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without EG3D_MEMORY_LIMIT the limit is a fraction of what the system has: with 1 GB available, a 1024^3 grid
    (over 10 GB) is refused with both figures and the way out."""
    monkeypatch.delenv("EG3D_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr(budget, "system_available", lambda: 10**9)
    line = refused(["mesh", "--model", PKL, "--resolution", "1024", "--outdir", str(tmp_path / "m")], capsys)
    assert line == ("error: --resolution 1024 needs about 17.2 GB, more than the 800 MB available "
                    "(set EG3D_MEMORY_LIMIT to override)")
    line = refused(["samples", "--model", PKL, "--nrr", "1024", "--yaws", "0", "--outdir", str(tmp_path / "s")], capsys)
    assert line.startswith("error: --nrr 1024 needs about ") and line.endswith(
        "more than the 800 MB available (set EG3D_MEMORY_LIMIT to override)")
    assert not (tmp_path / "m").exists() and not (tmp_path / "s").exists()


def test_a_bad_memory_limit_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EG3D_MEMORY_LIMIT", "lots")
    line = refused(["mesh", "--model", PKL, "--resolution", "32", "--outdir", str(tmp_path / "m")], capsys)
    assert line == "error: EG3D_MEMORY_LIMIT must be a size like 6G, 512M or a number of bytes, got 'lots'"


def test_within_the_limit_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The same small request passes a limit above its estimate."""
    G = load_generator(PKL)
    need = budget.render_bytes(G.config, RenderSettings(neural_rendering_resolution=16))
    monkeypatch.setenv("EG3D_MEMORY_LIMIT", str(need))
    assert main(["samples", "--model", PKL, "--nrr", "16", "--yaws", "0", "--seeds", "0", "--outdir",
                 str(tmp_path / "s"), "-q"]) == 0
    monkeypatch.setenv("EG3D_MEMORY_LIMIT", str(need - 1))
    assert main(["samples", "--model", PKL, "--nrr", "16", "--yaws", "0", "--seeds", "0", "--outdir",
                 str(tmp_path / "t"), "-q"]) == 1
    capsys.readouterr()


def test_sizes() -> None:
    assert budget.parse_size("6G") == 6 * 10**9 and budget.parse_size("6GiB") == 6 * 2**30
    assert budget.parse_size("512m") == 512 * 10**6 and budget.parse_size("1.5 GB") == 15 * 10**8
    assert budget.parse_size("1234") == 1234
    for bad in ("", "-1", "6X", "1e9", "nan"):
        with pytest.raises(InputError, match="EG3D_MEMORY_LIMIT"):
            budget.parse_size(bad)
    assert budget.format_size(7_912_000_000) == "7.9 GB" and budget.format_size(420_000_000) == "420 MB"
    assert budget.format_size(12_000) == "12 kB"


def test_estimates_grow_with_what_is_materialised(cars_generator) -> None:
    """Quadratic in the neural rendering resolution, linear in the batch and (beyond the feature image) in the samples
    per ray; cubic in the mesh resolution, more coarse-to-fine (its masks) than dense."""
    cfg = cars_generator.config
    base = RenderSettings(neural_rendering_resolution=64, superres=False)
    one = budget.render_bytes(cfg, base)
    assert budget.render_bytes(cfg, RenderSettings(neural_rendering_resolution=128, superres=False)) == 4 * one
    assert budget.render_bytes(cfg, base, batch=3) == 3 * one
    assert budget.render_bytes(cfg, RenderSettings(neural_rendering_resolution=64, sample_mult=2, superres=False)) > one
    assert budget.render_bytes(cfg, RenderSettings(neural_rendering_resolution=64)) > one  # + super-resolution
    assert budget.mesh_bytes(512) == 8 * budget.mesh_bytes(256) and budget.mesh_bytes(256, dense=True) < \
        budget.mesh_bytes(256)


# ----------------------------------------------------------------------------------------------------------------
# Label files


def _dataset(src: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "out" / "mmagic.json"
    line = refused(["dataset", "--in-anno", src, "--out-anno", str(out)], capsys)
    assert not out.parent.exists()
    return line


def test_dataset_refuses_dev_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    assert _dataset("/dev/zero", tmp_path, capsys) == "error: /dev/zero: not a regular file"
    assert time.monotonic() - start < 10


def test_dataset_refuses_a_named_pipe_without_waiting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Opening a FIFO for reading blocks until a writer comes; here nobody ever writes."""
    fifo = tmp_path / "labels.json"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert _dataset(str(fifo), tmp_path, capsys) == f"error: {fifo}: not a regular file"
    assert time.monotonic() - start < 10


def test_dataset_refuses_a_label_file_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": [[f"{i}.png", [0.0] * 25] for i in range(20)]}))
    monkeypatch.setattr(labels, "MAX_LABEL_BYTES", src.stat().st_size - 1)
    line = _dataset(str(src), tmp_path, capsys)
    assert line.startswith(f"error: {src}: larger than ") and "label file" in line
    monkeypatch.setattr(labels, "MAX_LABEL_BYTES", src.stat().st_size)
    assert main(["dataset", "--in-anno", str(src), "--out-anno", str(tmp_path / "ok.json")]) == 0
    capsys.readouterr()
