"""Atomic outputs (eg3d_core.fileio): whole or absent, synced before the rename, write errors as one OutputError
line, with the permissions the umask gives new files; leftovers of killed writers removed, live writers' kept."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from eg3d_core.errors import OutputError
from eg3d_core.fileio import (
    atomic_file,
    atomic_folder,
    current_umask,
    default_mode,
    remove_stale_temporaries,
    write_json,
)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it(umask) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_files_and_folders_get_the_umask_permissions(tmp_path, umask) -> None:
    out = write_json({"a": 1}, tmp_path / "x.json")
    assert mode(out) == 0o666 & ~umask == default_mode()
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert mode(tmp_path / "model") == 0o777 & ~umask == default_mode(folder=True)
    assert os.listdir(tmp_path) == sorted(os.listdir(tmp_path)) and set(os.listdir(tmp_path)) == {"x.json", "model"}


def test_a_failure_leaves_nothing(tmp_path) -> None:
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "m") as tmp:
        (tmp / "w").write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []


def test_temporary_name_keeps_the_suffix_for_format_sniffing_writers(tmp_path) -> None:
    with atomic_file(tmp_path / "v.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp.name.startswith(".v.mp4.")
        tmp.write_bytes(b"x")


def test_unwritable_folder_is_one_line(tmp_path) -> None:
    with pytest.raises(OutputError, match="cannot write") as err, atomic_file(tmp_path / "missing" / "a.json"):
        pass
    assert "\n" not in str(err.value) and isinstance(err.value, OSError)


def test_write_errors_are_one_output_error_line_and_leave_nothing(tmp_path) -> None:
    def full_disk():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as err, atomic_file(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"half")
        full_disk()
    assert str(err.value) == f"cannot write {tmp_path / 'a.png'}: No space left on device"
    with pytest.raises(OutputError, match="No space left on device$"), atomic_folder(tmp_path / "m") as tmp:
        (tmp / "w").write_bytes(b"half")
        full_disk()
    with pytest.raises(OutputError, match=r"^cannot write \S+: already one line$"), atomic_file(tmp_path / "b"):
        raise OutputError(f"cannot write {tmp_path / 'b'}: already one line")  # not wrapped a second time
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("folder", [False, True])
def test_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch, folder) -> None:
    synced = []

    def failing_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    target = tmp_path / ("model" if folder else "x.json")
    with pytest.raises(OutputError, match="Input/output error$"):
        if folder:
            with atomic_folder(target) as tmp:
                (tmp / "w.bin").write_bytes(b"1")
        else:
            write_json({"a": 1}, target)
    assert len(synced) == 1  # the temporary file (or the file in the temporary folder), before any rename
    assert Path(synced[0]).relative_to(tmp_path.resolve()).parts[0].startswith(f".{target.name}.{os.getpid()}.")
    assert os.listdir(tmp_path) == []


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def stale_name(target: str, pid: int, suffix: str) -> str:
    return f".{target}.{pid}.abcd_123{suffix}"


def test_rerun_removes_temporaries_of_killed_writers(tmp_path) -> None:
    pid = dead_pid()
    stale = tmp_path / stale_name("x.json", pid, ".tmp.json")
    stale.write_bytes(b"half")
    stale_dir = tmp_path / stale_name("model", pid, ".tmp")
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "w.bin").write_bytes(b"half")
    write_json({"a": 1}, tmp_path / "x.json")
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert sorted(os.listdir(tmp_path)) == ["model", "x.json"]


def test_temporaries_of_live_writers_and_other_names_are_kept(tmp_path) -> None:
    pid = dead_pid()
    kept = [
        stale_name("x.json", os.getpid(), ".tmp.json"),  # this process: alive
        stale_name("x.json", 1, ".tmp.json"),  # init: alive
        stale_name("y.json", pid, ".tmp.json"),  # another output
        stale_name("x.json", pid, ".tmp.png"),  # another suffix
        f".x.json.{pid}.abcd_1234.tmp.json",  # not mkstemp's 8 characters
        ".x.json.abcd_123.tmp.json",  # no PID (earlier releases)
        f".x.json.{10**30}.abcd_123.tmp.json",  # not a PID
        "x.json.tmp",
    ]
    for name in kept:
        (tmp_path / name).write_bytes(b"someone's")
    fifo = stale_name("x.json", pid, ".tmp.json")
    os.mkfifo(tmp_path / fifo)  # opening it would block: only regular files are judged
    locked = tmp_path / stale_name("x.json", dead_pid(), ".tmp.json")
    locked.write_bytes(b"written by a live process of another PID namespace")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print(flush=True); sys.stdin.read()", str(locked)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()  # the lock is held
        write_json({"a": 1}, tmp_path / "x.json")
        assert remove_stale_temporaries(tmp_path / "x.json", ".tmp.json") == []
        assert sorted(os.listdir(tmp_path)) == sorted([*kept, fifo, locked.name, "x.json"])
    finally:
        holder.communicate(b"")
    assert remove_stale_temporaries(tmp_path / "x.json", ".tmp.json") == [locked]  # its writer is gone now


def test_temporary_names_carry_the_writer_pid_and_its_lock(tmp_path) -> None:
    with atomic_file(tmp_path / "v.mp4") as tmp:
        assert tmp.name.startswith(f".v.mp4.{os.getpid()}.")
        assert remove_stale_temporaries(tmp_path / "v.mp4", ".tmp.mp4") == []
        fd = os.open(tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        tmp.write_bytes(b"x")
    assert os.listdir(tmp_path) == ["v.mp4"]
