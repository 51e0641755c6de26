"""Honest outputs (issue 20): a command that cannot finish its output says so in one ``error:`` line and leaves
neither the output nor a temporary file; a command killed mid-write leaves nothing a rerun does not clean up.

A full disk is simulated without root: the commands run in a subprocess under ``RLIMIT_FSIZE`` with SIGXFSZ
ignored, so every write past the limit fails with ``EFBIG`` ("File too large"), in Python, in safetensors' Rust
writer and in torch's zip writer alike; ffmpeg gets the default SIGXFSZ back (Python restores it for its children)
and dies of it, as an encoder killed mid-file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest

from eg3d_core.apps.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
PKL = str(FIXTURES / "tiny_cars128" / "network-snapshot.pkl")
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
# Every output below is larger (an 8-frame video, a PNG of three views, a 32^3 mesh, the weights).
LIMIT = 16 * 1024

DRIVER = """
import contextlib, io, json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from eg3d_core.apps.cli import main
results = []
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    results.append({"rc": rc, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def full_disk_cases(root: Path) -> dict[str, tuple[list[str], Path]]:
    """name -> (argv, the output the command must not leave), each in its own folder under ``root``."""
    model = ["--model", PKL, "--seeds", "0", "-q"]
    return {
        "video": (["video", *model, "--no-interpolate", "--w-frames", "8", "--nrr", "16", "--outdir",
                   str(root / "video" / "out")], root / "video" / "out" / "0.mp4"),
        "samples": (["samples", *model, "--nrr", "16", "--outdir", str(root / "samples" / "out")],
                    root / "samples" / "out" / "seed0000.png"),
        "mesh": (["mesh", *model, "--resolution", "32", "--level", "2", "--outdir", str(root / "mesh" / "out")],
                 root / "mesh" / "out" / "seed0000.ply"),
        "convert": (["convert", "--in", PKL, "--out", str(root / "convert" / "native")], root / "convert" / "native"),
        "convert-mmagic": (["convert", "--in", PKL, "--out", str(root / "convert-mmagic" / "m.pth")],
                           root / "convert-mmagic" / "m.pth"),
    }


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """Every case run once, in one subprocess under the file-size limit: name -> {rc, stderr}."""
    root = tmp_path_factory.mktemp("full")
    cases = full_disk_cases(root)
    for _, output in cases.values():
        (root / output.relative_to(root).parts[0]).mkdir()
    argvs = [argv for argv, _ in cases.values()]
    res = subprocess.run([sys.executable, "-c", DRIVER, str(LIMIT), json.dumps(argvs)], capture_output=True,
                         text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout.splitlines()[-1])
    return root, dict(zip(cases, results, strict=True))


def error_line(err: str) -> str:
    """The error message: exactly one line starting with 'error: ', no traceback, nothing else."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", list(full_disk_cases(Path("/"))))
def test_full_disk_is_one_error_line_and_leaves_nothing(full_disk, name: str) -> None:
    root, results = full_disk
    _, output = full_disk_cases(root)[name]
    assert results[name]["rc"] == 1
    line = error_line(results[name]["stderr"])
    assert line.startswith(f"error: cannot write {output}: "), line
    reason = "ffmpeg was stopped (File size limit exceeded)" if name == "video" else "File too large"
    assert reason in line
    # Neither the output nor a hidden temporary; the output folder the command created is gone again.
    assert sorted(p.name for p in (root / name).iterdir()) == []


def hidden_temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp*")) if folder.is_dir() else []


def processes_writing(paths: list[Path]) -> list[int]:
    """PIDs of the processes (ffmpeg) whose command line names one of ``paths``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(os.fsencode(p) in cmdline for p in paths):
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_video_killed_mid_write_then_rerun_leaves_only_the_output(tmp_path: Path, sig: signal.Signals,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "videos"
    argv = ["video", "--model", PKL, "--seeds", "0", "--no-interpolate", "--nrr", "16", "-q", "--outdir", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "eg3d_core", *argv, "--w-frames", "5000"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (temps := hidden_temporaries(out)) or temps[0].stat().st_size == 0:  # ffmpeg is writing
            assert proc.poll() is None and time.monotonic() < deadline, "the video did not start"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert error_line(err) == "error: terminated"
        assert processes_writing(temps) == []  # ffmpeg was stopped
        assert not out.exists()  # no temporary, and the folder the command created is removed again
    else:
        assert proc.returncode == -signal.SIGKILL
        assert hidden_temporaries(out) == temps  # what the rerun has to clean up
    assert main([*argv, "--w-frames", "3"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["0.mp4"]
    assert iio.imread(out / "0.mp4").shape[0] == 3
