"""The allocator setting that front ends make at start-up (eg3d_core.runtime)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, sys
    import torch
    from eg3d_core.runtime import reuse_freed_memory

    if sys.argv[1] == "tuned":
        assert reuse_freed_memory() is True
        assert reuse_freed_memory(max_arenas=2) is True  # again, with an arena bound: still fine
    # 64 MiB activations in turn, each written once and freed, as consecutive layers of frames do.
    pointers = []
    for k in range(20):
        x = torch.empty(16 << 20)
        x.fill_(1.0)
        pointers.append(x.data_ptr())
        del x
    heap = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                heap.append((lo, hi))
    in_heap = [any(lo <= p < hi for lo, hi in heap) for p in pointers]
    heap_mib = sum(hi - lo for lo, hi in heap) / 2**20
    print(json.dumps({"in_heap": in_heap, "heap_mib": heap_mib}))
""")


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings are Linux-only")
def test_large_blocks_are_reused_from_the_heap_instead_of_mapped_afresh() -> None:
    # By default glibc maps every 64 MiB block with mmap and unmaps it when freed, so each frame faults its pages in
    # again. With the setting the blocks come from the heap, and freed ones are reused there: twenty blocks in turn
    # leave a heap of a few blocks (2-7 seen), not twenty (1280 MiB).
    default, tuned = probe("default"), probe("tuned")
    assert not any(default["in_heap"])
    assert all(tuned["in_heap"]) and tuned["heap_mib"] < 10 * 64


def test_one_cache_root_honours_eg3d_cache_dir(monkeypatch, tmp_path) -> None:
    """Every cache (compiled kernels, latent directions, FID statistics) lives under runtime.cache_dir()."""
    from pathlib import Path

    from eg3d_core import runtime
    from eg3d_core.metrics import fid
    from eg3d_viewer.directions import default_cache_dir

    monkeypatch.setenv("EG3D_CACHE_DIR", str(tmp_path))
    assert runtime.cache_dir() == tmp_path == default_cache_dir()
    assert fid.statistics_folder(fid.DEFAULT_CACHE) == tmp_path / "fid"
    assert fid.statistics_folder(None) is None and fid.statistics_folder(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("EG3D_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "eg3d_toolkit"
    # No module names a cache folder of its own (there were two spellings once).
    root = Path(__file__).resolve().parents[1]
    for folder in ("eg3d_core", "viewer", "widgets"):
        for source in (root / folder).rglob("*.py"):
            text = source.read_text()
            assert "eg3d-toolkit/" not in text and ".cache/eg3d-" not in text, source
