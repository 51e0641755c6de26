"""The allocator setting that front ends make at start-up (eg3d_core.runtime)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import resource, sys
    import torch
    from eg3d_core.runtime import reuse_freed_memory

    def faults_of_last_block():
        # 64 MiB activations in turn, each written once, as consecutive layers of frames do.
        for k in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            x = torch.empty(16 << 20)
            x.fill_(1.0)
            del x
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    if sys.argv[1] == "tuned":
        assert reuse_freed_memory() is True
        assert reuse_freed_memory(max_arenas=2) is True  # again, with an arena bound: still fine
    print(faults_of_last_block())
""")


def minor_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings are Linux-only")
def test_reused_memory_is_not_faulted_in_again() -> None:
    # 64 MiB is 16384 pages of 4 KiB: glibc maps a fresh block for each allocation of that size and faults every
    # page in again; with the setting later blocks reuse the pages of earlier ones.
    default, tuned = minor_faults("default"), minor_faults("tuned")
    assert default > 8000
    assert tuned < 1000
