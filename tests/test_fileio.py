"""Atomic outputs (eg3d_core.fileio): whole or absent, with the permissions the umask gives new files."""
from __future__ import annotations

import os
import stat

import pytest

from eg3d_core.errors import OutputError
from eg3d_core.fileio import atomic_file, atomic_folder, current_umask, default_mode, write_json


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
