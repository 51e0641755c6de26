"""``eg3d invert``: pictures -> ``DIR/<stem>.npz`` (ws, camera, losses, timings) and, with PTI, ``DIR/<stem>/``.

Resumable: a picture whose ``.npz`` exists is skipped. Under torchrun (``RANK`` / ``WORLD_SIZE`` set) each process
takes every WORLD_SIZE-th picture from its RANK on. Every picture is checked (readable, not too small, not a
decompression bomb) before any work, so a bad one ends the run with one line before anything is written.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..checkpoints import save_generator
from ..errors import InputError
from ..generator import Generator
from ..inversion import InversionResult, InversionSettings, ProgressFn, invert, load_picture


def shard(items: Sequence[Path]) -> list[Path]:
    """This process's share of ``items`` under torchrun (all of them otherwise)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InputError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK {rank} is not in [0, WORLD_SIZE {world})")
    return list(items[rank::world])


def plan(pictures: Sequence[str | os.PathLike[str]], outdir: Path) -> tuple[list[tuple[Path, Path]], int]:
    """(picture, its .npz) pairs still to do in this process, and how many were skipped as done.

    Two pictures with the same stem would write the same file: refused."""
    paths = [Path(p) for p in pictures]
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems and stems[p.stem] != p:
            raise InputError(f"{stems[p.stem]} and {p} would both write {outdir / (p.stem + '.npz')}")
        stems[p.stem] = p
    todo, skipped = [], 0
    for p in shard(list(dict.fromkeys(paths))):
        out = outdir / f"{p.stem}.npz"
        if out.exists():
            skipped += 1
        else:
            todo.append((p, out))
    return todo, skipped


def check_pictures(todo: Sequence[tuple[Path, Path]]) -> None:
    """Decode each picture once (InputError on the first bad one), before any inversion runs."""
    for picture, _ in todo:
        load_picture(picture, 8)


def invert_one(G: Generator, picture: Path, out: Path, settings: InversionSettings, yaw: float | None,
               pitch: float | None, progress: ProgressFn | None = None,
               should_stop: Callable[[], bool] | None = None) -> tuple[InversionResult, list[Path]]:
    """Invert one picture; write the tuned generator (PTI) first, then the .npz that marks the picture done."""
    result = invert(G, picture, settings, yaw, pitch, progress, should_stop)
    written = []
    if result.generator is not None:
        written.append(save_generator(result.generator, out.with_suffix("")))
    written.insert(0, result.save(out))
    return result, written
