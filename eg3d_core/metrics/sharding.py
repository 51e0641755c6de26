"""Spreading feature extraction over processes (``torchrun``) in fixed chunks, with resumable shards.

The work is cut into chunks of ``batch_size`` items whose boundaries depend only on the item count and the
batch size, never on the number of processes; chunk ``k`` goes to rank ``k % world_size``. Each chunk is computed
as one batch from its own seeds, so its features are the same whichever process computes it (at the same
per-process thread count), and rank 0 assembles them in chunk order: any number of processes gives bit-identical
statistics. Every finished chunk is saved to the run folder (written to a temporary name, then renamed), so a
killed run continues from the chunks it has.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size``; ``device`` to compute on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def own_chunks(self, num_items: int, batch_size: int) -> range:
        """Indices of the chunks this rank computes (chunk ``k`` goes to rank ``k % world_size``)."""
        return range(self.rank, num_chunks(num_items, batch_size), self.world_size)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [value]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def rank_device(device: str | torch.device | None = None) -> torch.device:
    """The device this process computes on: CPU, or in a ``torchrun`` job with CUDA the GPU ``LOCAL_RANK``
    (a plain run keeps the given or current GPU)."""
    want = torch.device(device) if device is not None else torch.device("cpu")
    if want.type != "cuda":
        return want
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return want if want.index is not None else torch.device("cuda", torch.cuda.current_device())


def init_distributed(device: str | torch.device | None = None) -> Distributed:
    """Join the ``torchrun`` job described by the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), with gloo
    on CPU and nccl on CUDA; a plain run is rank 0 of 1. The device is ``rank_device(device)``."""
    want = rank_device(device)
    if want.type == "cuda":
        torch.cuda.set_device(want)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Distributed(device=want)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want.type == "cuda" else "gloo")
        owns = True
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=want, owns_group=owns)


def num_chunks(num_items: int, batch_size: int) -> int:
    return (num_items + batch_size - 1) // batch_size


def chunk_range(index: int, num_items: int, batch_size: int) -> range:
    return range(index * batch_size, min((index + 1) * batch_size, num_items))


class RunFolder:
    """Chunk files ``{kind}-{k:06d}.npy`` of one run, guarded by ``run.json`` (the settings they were made with)."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))

    def open(self, create: bool) -> None:
        """Check (and with ``create``, write) ``run.json``; raises InputError if the folder holds another run."""
        marker = self.path / "run.json"
        if marker.is_file():
            try:
                stored = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise InputError(f"{marker}: unreadable ({e}); delete the folder to start over") from None
            if stored != self.fingerprint:
                keys = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
                raise InputError(f"{self.path} holds the shards of a different run (differs in: {', '.join(keys)}); "
                                 "use another --run-dir or delete it")
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f".run.json.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.fingerprint, indent=1, sort_keys=True))
            os.replace(tmp, marker)

    def file(self, kind: str, index: int) -> Path:
        return self.path / f"{kind}-{index:06d}.npy"

    def load(self, kind: str, index: int, rows: int) -> np.ndarray | None:
        """A finished chunk, or None if absent or damaged (then it is recomputed)."""
        f = self.file(kind, index)
        if not f.is_file():
            return None
        try:
            arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return arr if arr.ndim == 2 and arr.shape[0] == rows else None

    def save(self, kind: str, index: int, features: np.ndarray) -> None:
        f = self.file(kind, index)
        tmp = f.with_name(f".{f.stem}.tmp-{os.getpid()}.npy")
        try:
            np.save(tmp, features)
            os.replace(tmp, f)
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, kind: str, indices: list[int]) -> None:
        for k in indices:
            self.file(kind, k).unlink(missing_ok=True)

    def close(self) -> None:
        """Delete ``run.json`` and the folder itself once no shards are left in it."""
        if self.path.is_dir() and not any(p.name != "run.json" for p in self.path.iterdir()):
            (self.path / "run.json").unlink(missing_ok=True)
            self.path.rmdir()


def sharded_features(
    ctx: Distributed,
    kind: str,
    num_items: int,
    batch_size: int,
    compute: Callable[[int, range], np.ndarray],
    run: RunFolder | None = None,
    progress: Callable[[int, bool], None] | None = None,
) -> tuple[np.ndarray | None, int]:
    """Features of ``num_items`` items, computed chunk by chunk by all ranks.

    ``compute(k, items)`` returns the float32 features [len(items), D] of chunk ``k``. ``progress(n, resumed)`` is
    called once with the item count of the chunks resumed from ``run`` and after each computed chunk. Returns
    (features [num_items, D] in item order on rank 0, None elsewhere; number of items this rank took from ``run``).
    """
    own = ctx.own_chunks(num_items, batch_size)
    mine: dict[int, np.ndarray] = {}
    # Finished chunks first, so that the progress bar's rate and ETA then reflect real work only.
    for k in own if run is not None else []:
        items = chunk_range(k, num_items, batch_size)
        feats = run.load(kind, k, len(items))
        if feats is not None:
            mine[k] = feats
    resumed = sum(len(chunk_range(k, num_items, batch_size)) for k in mine)
    if progress is not None and resumed:
        progress(resumed, True)
    for k in own:
        if k in mine:
            continue
        items = chunk_range(k, num_items, batch_size)
        mine[k] = np.ascontiguousarray(compute(k, items), dtype=np.float32)
        if run is not None:
            run.save(kind, k, mine[k])
        if progress is not None:
            progress(len(items), False)
    parts = ctx.gather(mine)
    if parts is None:
        return None, resumed
    merged: dict[int, np.ndarray] = {}
    for part in parts:
        merged.update(part)
    dims = {a.shape[1] for a in merged.values()}
    if len(dims) > 1:
        raise InputError(f"chunks of different feature sizes {sorted(dims)} (shards of another network?)")
    return np.concatenate([merged[k] for k in sorted(merged)], axis=0), resumed
