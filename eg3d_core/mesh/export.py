"""Writing meshes (.ply / .obj / .glb through trimesh) and density volumes (.npy, .mrc through mrcfile), atomically."""
from __future__ import annotations

import json
import os
import struct
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
    """Save as ``.ply`` (binary), ``.obj`` or ``.glb`` chosen by extension, with vertex colours when present (sRGB
    bytes in .ply / .obj; linear, with an unlit material, in .glb as glTF defines them: see ``glb_bytes``).

    Vertex order and faces are kept as is (no merging).  Atomic.  Unknown extension -> InputError; missing or
    unwritable folder -> OutputError.
    """
    import trimesh

    ext = _extension(path, MESH_EXTENSIONS, "mesh")
    if ext == ".glb":
        data = glb_bytes(mesh)
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
        return
    tm = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        vertex_colors=mesh.colors,
        process=False,
    )
    data = tm.export(file_type=ext[1:])
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """uint8 sRGB colours -> float32 linear values in [0, 1] (the sRGB transfer function, IEC 61966-2-1)."""
    c = np.asarray(colors, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def glb_bytes(mesh: Mesh) -> bytes:
    """The mesh as a binary glTF 2.0 file: float32 positions, uint32 triangles and, with colours, ``COLOR_0``.

    glTF defines vertex colours as linear: the mesh's sRGB colours (what the renderer's pictures show) are stored
    converted (float32, so dark shades keep their steps), with an unlit material (``KHR_materials_unlit``, double
    sided): the colours are the field's radiance, shading included, so a viewer shows them as rendered instead of
    lighting them again. (Written as sRGB bytes, viewers decode them as linear and show every colour washed out.)
    Without colours: a plain double-sided grey material that viewers light.
    """
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    f = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    chunks = [f.tobytes(), v.tobytes()]
    attributes = {"POSITION": 1}
    accessors: list[dict] = [
        {"bufferView": 0, "componentType": 5125, "count": int(f.size), "type": "SCALAR"},
        {"bufferView": 1, "componentType": 5126, "count": len(v), "type": "VEC3",
         "min": v.min(axis=0).tolist() if len(v) else [0.0] * 3, "max": v.max(axis=0).tolist() if len(v) else [0.0] * 3},
    ]
    material: dict = {"doubleSided": True, "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0}}
    extensions: list[str] = []
    if mesh.colors is not None:
        colors = srgb_to_linear(np.asarray(mesh.colors)[:, :3])
        chunks.append(np.ascontiguousarray(colors).tobytes())
        attributes["COLOR_0"] = 2
        accessors.append({"bufferView": 2, "componentType": 5126, "count": len(colors), "type": "VEC3"})
        material["extensions"] = {"KHR_materials_unlit": {}}
        extensions.append("KHR_materials_unlit")
    views, offset = [], 0
    for i, chunk in enumerate(chunks):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(chunk),
                      "target": 34963 if i == 0 else 34962})
        offset += len(chunk) + (-len(chunk) % 4)
    binary = b"".join(c + b"\0" * (-len(c) % 4) for c in chunks)
    gltf = {
        "asset": {"version": "2.0", "generator": "eg3d_core"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": 0, "material": 0, "mode": 4}]}],
        "materials": [material], "accessors": accessors, "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    if extensions:
        gltf["extensionsUsed"] = extensions
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(text), 0x4E4F534A), text,
                     struct.pack("<II", len(binary), 0x004E4942), binary])


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
