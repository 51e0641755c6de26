"""Writing meshes (.ply / .obj / .glb through trimesh) and density volumes (.npy, .mrc through mrcfile), atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import atomic_file
from .surface import Mesh

MESH_EXTENSIONS = (".ply", ".obj", ".glb")
VOLUME_EXTENSIONS = (".npy", ".mrc")


def _extension(path: str | os.PathLike, allowed: tuple[str, ...], what: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in allowed:
        raise InputError(f"unsupported {what} extension {ext or '(none)'!r} for {path}; use one of {', '.join(allowed)}")
    return ext


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> None:
    """Save as ``.ply`` (binary), ``.obj`` or ``.glb`` chosen by extension, with vertex colours when present.

    Vertex order and faces are kept as is (no merging).  Atomic.  Unknown extension -> InputError; missing or
    unwritable folder -> OutputError.
    """
    import trimesh

    ext = _extension(path, MESH_EXTENSIONS, "mesh")
    tm = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        vertex_colors=mesh.colors,
        process=False,
    )
    data = tm.export(file_type=ext[1:])
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def save_volume(volume: np.ndarray, path: str | os.PathLike, voxel_size: float = 1.0) -> None:
    """Save volume [N0,N1,N2] as ``.npy`` or ``.mrc`` (MRC2014 through mrcfile: mode 2 float32, one volume).  Atomic.

    The array is written as given (pass :func:`to_original_volume_convention` output to reproduce the original's
    ``.mrc``).  In the MRC file the array's last axis is the fastest (NX) one, as mrcfile lays out any array.
    Unknown extension or not 3-D -> InputError; missing or unwritable folder -> OutputError.
    """
    ext = _extension(path, VOLUME_EXTENSIONS, "volume")
    if volume.ndim != 3:
        raise InputError(f"volume must be 3-D, got shape {volume.shape}")
    if ext == ".npy":
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, volume)
        return
    import mrcfile

    # atomic_file has created the temporary file empty already: mrcfile must overwrite it.
    with atomic_file(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))  # no copy when already float32, C order
        mrc.voxel_size = voxel_size
        mrc.header.label[0] = b"eg3d_core density volume"
        mrc.header.nlabl = 1
