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
