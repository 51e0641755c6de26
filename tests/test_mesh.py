"""Tests for eg3d_core.mesh: grids, marching cubes, coarse-to-fine, clean-up, the original's conventions, export."""
from __future__ import annotations

import math
import os
import struct
from unittest import mock

import numpy as np
import pytest
import torch
import trimesh

from eg3d_core import mesh as M
from eg3d_core.errors import InputError, NoSurfaceError, OutputError
from eg3d_core.mesh.testing import sphere_density, torus_density


def two_spheres() -> M.DensityFn:
    """Non-convex, two components of different size: max of two sphere densities."""
    big, small = sphere_density((-0.15, 0.0, 0.0), 0.2), sphere_density((0.25, 0.1, 0.0), 0.1)
    return lambda p: torch.maximum(big(p), small(p))


def as_trimesh(mesh: M.Mesh) -> trimesh.Trimesh:
    # process=False: trimesh's vertex merging would weld vertices that marching cubes places at exactly the same spot.
    return trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=mesh.colors, process=False)


def umbrella(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Reference uniform Laplacian, slow and plain: mean of each vertex's edge neighbours minus the vertex. [V, 3]"""
    neighbours: list[set[int]] = [set() for _ in range(len(vertices))]
    for a, b, c in faces.tolist():
        neighbours[a] |= {b, c}
        neighbours[b] |= {a, c}
        neighbours[c] |= {a, b}
    v = vertices.astype(np.float64)
    return np.stack([v[sorted(nb)].mean(axis=0) for nb in neighbours]) - v


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2


# ----------------------------------------------------------------------------------------------------------------------
# Grid


def test_grid_coordinates_span_box_with_both_ends() -> None:
    c = M.grid_coordinates(9, 2.0)
    assert c.dtype == torch.float32 and c.shape == (9,)
    np.testing.assert_allclose(c.numpy(), np.linspace(-1.0, 1.0, 9), atol=1e-6)


@pytest.mark.parametrize("batch", [7, 81, 10_000])
def test_density_grid_is_ix_iy_iz_and_batch_independent(batch: int) -> None:
    n = 9
    c = M.grid_coordinates(n)
    calls: list[tuple[int, int]] = []
    got = M.density_grid(lambda p: p[:, 0] * 1000 + p[:, 1] * 10 + p[:, 2] * 0.1, n, batch_points=batch,
                         progress=lambda d, t: calls.append((d, t)))
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    np.testing.assert_array_equal(got, (x * 1000 + y * 10 + z * 0.1).numpy())
    assert got.dtype == np.float32 and got.shape == (n, n, n)
    assert calls[-1] == (n**3, n**3) and len(calls) == math.ceil(n**3 / batch)


def test_density_fn_shape_and_finiteness_checked() -> None:
    with pytest.raises(ValueError, match=r"shape \[125\] or \[125, 1\]"):
        M.density_grid(lambda p: p, 5)
    M.density_grid(lambda p: p[:, :1], 5)  # [M, 1] is accepted
    with pytest.raises(ValueError, match="non-finite"):
        M.density_grid(lambda p: p[:, 0] / 0.0, 5)


# ----------------------------------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize("n", [64, 128])
def test_sphere_extraction_accuracy(n: int) -> None:
    r = 0.3
    mesh = M.extract_mesh(sphere_density(radius=r), n)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int64 and mesh.colors is None
    voxel = 1.0 / (n - 1)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - r) < 0.5 * voxel
    assert np.abs(radii - r).max() < voxel
    tm = as_trimesh(mesh)
    assert tm.is_watertight and tm.is_winding_consistent
    # Positive volume: faces are oriented outward for a density that is high inside.
    assert tm.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)


def test_padding_closes_a_shape_that_leaves_the_box() -> None:
    n = 64
    big = sphere_density(radius=0.7)
    closed = M.extract_mesh(big, n)
    assert as_trimesh(closed).is_watertight
    pad = M.border_pad(n)
    # The surface is cut between the last pad layer and the first free one, like the original.
    last_pad, first_free = 0.5 - (pad - 1) / (n - 1), 0.5 - pad / (n - 1)
    assert first_free - 1e-6 <= np.abs(closed.vertices).max() < last_pad
    opened = M.extract_mesh(big, n, pad_borders=False)
    assert not as_trimesh(opened).is_watertight


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_no_surface_error_names_the_range(coarse_to_fine: bool) -> None:
    with pytest.raises(NoSurfaceError) as err:
        M.extract_mesh(sphere_density(radius=0.3), 32, level=1000.0, coarse_to_fine=coarse_to_fine)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("no surface at level 1000.0: density range seen [")
    lo, hi = (float(v) for v in msg.split("[")[1].rstrip("]").split(","))
    # Box corners are at distance sqrt(3)/2 -> 100*(0.3-0.866)+10 = -46.6; the voxels nearest the centre are half a
    # voxel off on every axis (N even), at distance sqrt(3)/2/31.
    assert lo == pytest.approx(-46.6, abs=0.01)
    assert hi == pytest.approx(10 + 100 * (0.3 - math.sqrt(3) / 2 / 31), abs=0.01)


def test_volume_below_the_level_has_no_surface() -> None:
    volume = np.full((8, 8, 8), 3.0, dtype=np.float32)
    with pytest.raises(NoSurfaceError, match=r"^no surface at level 10.0: density range seen \[3, 3\]$"):
        M.volume_to_mesh(volume)
    with pytest.raises(InputError, match=r"volume must be a cube \[N,N,N\], got shape \(8, 8, 4\)"):
        M.volume_to_mesh(volume[:, :, :4])


@pytest.mark.parametrize(
    "name,density,n,pad_borders",
    [
        ("sphere", sphere_density(radius=0.3), 128, True),
        ("torus", torus_density(), 128, True),
        ("torus-nopad", torus_density(), 96, False),
        ("two-spheres", two_spheres(), 128, True),
        ("cut-by-border", sphere_density((0.3, 0.1, 0.0), 0.3), 64, True),
    ],
)
def test_coarse_to_fine_equals_dense(name: str, density: M.DensityFn, n: int, pad_borders: bool) -> None:
    pad = M.border_pad(n) if pad_borders else 0
    dense = M.density_grid(density, n)
    M.pad_volume_borders(dense, pad)
    grid = M.density_grid_coarse_to_fine(density, n, pad=pad)
    # Exactly the dense values wherever the density was evaluated.
    np.testing.assert_array_equal(grid.volume[grid.evaluated], dense[grid.evaluated])
    mesh_dense = M.volume_to_mesh(dense)
    mesh_c2f = M.volume_to_mesh(grid.volume)
    np.testing.assert_array_equal(mesh_c2f.faces, mesh_dense.faces)
    np.testing.assert_array_equal(mesh_c2f.vertices, mesh_dense.vertices)
    # ... while evaluating far fewer points.
    assert grid.evaluated.sum() < 0.35 * n**3
    # The public entry point takes the same path.
    via_api = M.extract_mesh(density, n, pad_borders=pad_borders, coarse_to_fine=True)
    np.testing.assert_array_equal(via_api.vertices, mesh_dense.vertices)


def test_coarse_to_fine_progress_and_step() -> None:
    calls: list[tuple[int, int]] = []
    grid = M.density_grid_coarse_to_fine(sphere_density(), 65, coarse_step=8, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == int(grid.evaluated.sum())
    assert all(d <= t for d, t in calls)
    dense = M.density_grid(sphere_density(), 65)
    np.testing.assert_array_equal(M.volume_to_mesh(grid.volume).vertices, M.volume_to_mesh(dense).vertices)


def test_largest_component_keeps_the_big_sphere() -> None:
    n = 64
    both = M.extract_mesh(two_spheres(), n)
    big_only = M.extract_mesh(two_spheres(), n, largest_component=True)
    alone = M.extract_mesh(sphere_density((-0.15, 0.0, 0.0), 0.2), n)
    assert len(big_only.vertices) == len(alone.vertices) < len(both.vertices)
    assert chamfer(big_only.vertices, alone.vertices) < 1e-6
    assert as_trimesh(big_only).is_watertight


def test_largest_component_keeps_order_and_colours() -> None:
    both = M.extract_mesh(two_spheres(), 32, color_fn=lambda p: p / 0.5)
    big_only = M.keep_largest_component(both)
    kept = both.vertices[:, 0] < 0.1  # the big sphere ends at x = 0.05, the small one starts at x = 0.15
    assert 0 < kept.sum() < len(kept)
    # Vertices in their original order with their own colours; faces are the big sphere's, re-indexed.
    np.testing.assert_array_equal(big_only.vertices, both.vertices[kept])
    np.testing.assert_array_equal(big_only.colors, both.colors[kept])
    big_faces = both.faces[kept[both.faces[:, 0]]]
    np.testing.assert_array_equal(big_only.vertices[big_only.faces], both.vertices[big_faces])
    assert M.keep_largest_component(big_only) is big_only  # one component: unchanged


def test_smoothing_keeps_topology_and_size() -> None:
    raw = M.extract_mesh(sphere_density(), 48)
    smooth = M.extract_mesh(sphere_density(), 48, smooth_iterations=5)
    np.testing.assert_array_equal(smooth.faces, raw.faces)
    assert not np.array_equal(smooth.vertices, raw.vertices)
    assert as_trimesh(smooth).volume == pytest.approx(as_trimesh(raw).volume, rel=0.02)


def test_smoothing_is_trimesh_taubin() -> None:
    raw = M.extract_mesh(sphere_density(), 24)
    with mock.patch.object(trimesh.smoothing, "filter_taubin", wraps=trimesh.smoothing.filter_taubin) as spy:
        M.smooth_mesh(raw, 3)
    spy.assert_called_once()
    # One of our iterations is a shrink and an inflate step, each a trimesh iteration; trimesh's nu is -mu.
    assert spy.call_args.kwargs == {"lamb": 0.5, "nu": 0.53, "iterations": 6}
    assert M.smooth_mesh(raw, 0) is raw


def test_smoothing_matches_reference_taubin_on_a_closed_mesh() -> None:
    """On a closed, consistently oriented mesh trimesh's Laplacian is the symmetric uniform one.

    (On an open mesh trimesh builds it from directed face edges, so boundary vertices see one boundary neighbour.)
    """
    raw = M.extract_mesh(torus_density(), 32)
    iterations, lamb, mu = 4, 0.5, -0.53
    v = raw.vertices.astype(np.float64)
    for _ in range(iterations):
        for factor in (lamb, mu):
            v = v + factor * umbrella(v, raw.faces)
    # Both in float64, differing only in summation order; the result is rounded to float32 (ulp 3e-8 below 0.5).
    torch.testing.assert_close(M.smooth_mesh(raw, iterations, lamb, mu).vertices, v.astype(np.float32),
                               rtol=0, atol=1e-7)


def test_smoothing_reduces_roughness() -> None:
    raw = M.extract_mesh(sphere_density(), 48)
    roughness = [float(np.linalg.norm(umbrella(m.vertices, m.faces), axis=1).mean())
                 for m in (raw, *(M.smooth_mesh(raw, k) for k in (1, 5, 20)))]
    assert roughness == sorted(roughness, reverse=True) and roughness[2] < 0.5 * roughness[0]


@pytest.mark.parametrize("color_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_color_fn_applied_at_vertices(color_range: tuple[float, float]) -> None:
    lo, hi = color_range
    # Red ramps with x across the range; green fixed at the range's middle; blue at its top.
    def color_fn(p: torch.Tensor) -> torch.Tensor:
        red = lo + (p[:, 0] / 0.6 + 0.5) * (hi - lo)
        return torch.stack([red, torch.full_like(red, (lo + hi) / 2), torch.full_like(red, hi)], dim=1)

    mesh = M.extract_mesh(sphere_density(), 32, color_fn=color_fn, color_range=color_range)
    assert mesh.colors is not None and mesh.colors.dtype == np.uint8 and mesh.colors.shape == (len(mesh.vertices), 3)
    expected_red = np.clip(np.rint((mesh.vertices[:, 0].astype(np.float64) / 0.6 + 0.5) * 255), 0, 255)
    np.testing.assert_allclose(mesh.colors[:, 0], expected_red, atol=1)
    assert (mesh.colors[:, 1] == 128).all() and (mesh.colors[:, 2] == 255).all()


# ----------------------------------------------------------------------------------------------------------------------
# The original's conventions


def test_voxel_convention_on_known_points() -> None:
    n = 512
    pts = np.array([[-0.5, 0.0, 0.5], [0.5, -0.5, 0.0], [0.0, 0.0, 0.0]])
    expected = np.array([[511.0, 255.5, 511.0], [255.5, 0.0, 0.0], [255.5, 255.5, 255.5]])
    np.testing.assert_allclose(M.to_original_voxel_convention(pts, n, 1.0), expected, atol=1e-9)
    np.testing.assert_allclose(M.from_original_voxel_convention(expected, n, 1.0), pts, atol=1e-12)
    # box_warp other than 1 scales the index.
    np.testing.assert_allclose(M.to_original_voxel_convention(np.array([[0.9, 0, 0]]), 11, 1.8), [[5, 5, 0]])


def test_voxel_convention_reproduces_the_original_pipeline() -> None:
    """Emulate the original: flip x, pad, transpose (2,1,0), marching cubes in voxel units; compare vertex sets."""
    import mcubes

    n = 48
    density = sphere_density((0.12, -0.05, 0.02), 0.25)  # off-centre so the flip and transpose matter
    volume = M.density_grid(density, n)
    original_volume = M.to_original_volume_convention(volume)
    pad = M.border_pad(n)
    inner = (slice(pad, -pad),) * 3
    np.testing.assert_array_equal(original_volume[inner], volume[::-1][inner])
    assert (original_volume[:pad] == M.ORIGINAL_PAD_VALUE).all() and (original_volume[:, :, -pad:] == -1000).all()
    original_verts, _ = mcubes.marching_cubes(np.ascontiguousarray(original_volume.transpose(2, 1, 0)), 10.0)
    ours = M.extract_mesh(density, n)
    mapped = M.to_original_voxel_convention(ours.vertices, n, 1.0)
    assert len(mapped) == len(original_verts)
    assert chamfer(mapped, original_verts) < 1e-4  # voxel units; float32 world round trip


def test_original_volume_convention_flips_x() -> None:
    v = np.arange(4**3, dtype=np.float32).reshape(4, 4, 4)
    out = M.to_original_volume_convention(v, pad_borders=False)
    np.testing.assert_array_equal(out, v[::-1])
    assert out.flags.c_contiguous


# ----------------------------------------------------------------------------------------------------------------------
# Export


@pytest.fixture(scope="module")
def colored_sphere() -> M.Mesh:
    return M.extract_mesh(sphere_density(), 24, color_fn=lambda p: p / 0.3)


@pytest.mark.parametrize("ext", [".ply", ".obj", ".glb"])
def test_save_mesh_round_trip(colored_sphere: M.Mesh, tmp_path, ext: str) -> None:
    path = tmp_path / f"shape{ext}"
    M.save_mesh(colored_sphere, path)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary left behind
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.vertices) == len(colored_sphere.vertices)
    np.testing.assert_array_equal(np.asarray(loaded.faces), colored_sphere.faces)
    np.testing.assert_allclose(np.asarray(loaded.vertices), colored_sphere.vertices, atol=1e-6)
    if ext in (".ply", ".obj"):
        np.testing.assert_array_equal(np.asarray(loaded.visual.vertex_colors)[:, :3], colored_sphere.colors)


def _glb_json_and_binary(path) -> tuple[dict, bytes]:
    import json

    data = open(path, "rb").read()
    magic, version, total = struct.unpack("<III", data[:12])
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    n, kind = struct.unpack("<II", data[12:20])
    assert kind == 0x4E4F534A
    m, kind2 = struct.unpack("<II", data[20 + n:28 + n])
    assert kind2 == 0x004E4942
    return json.loads(data[20:20 + n]), data[28 + n:28 + n + m]


def test_glb_vertex_colours_are_linear_and_unlit(colored_sphere: M.Mesh, tmp_path) -> None:
    """glTF defines COLOR_0 as linear: the sRGB vertex colours are stored decoded (a viewer encodes them back to what
    the renderer showed), with an unlit material (the colours carry the field's shading already)."""
    path = tmp_path / "shape.glb"
    M.save_mesh(colored_sphere, path)
    gltf, binary = _glb_json_and_binary(path)
    prim = gltf["meshes"][0]["primitives"][0]
    acc = gltf["accessors"][prim["attributes"]["COLOR_0"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    assert (acc["componentType"], acc["type"], acc["count"]) == (5126, "VEC3", len(colored_sphere.vertices))
    stored = np.frombuffer(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.float32)
    srgb = colored_sphere.colors.astype(np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(stored.reshape(-1, 3), linear, atol=1e-6)
    assert not np.allclose(stored.reshape(-1, 3), srgb, atol=0.02)  # not the sRGB bytes read as linear
    material = gltf["materials"][prim["material"]]
    assert "KHR_materials_unlit" in material["extensions"] and "KHR_materials_unlit" in gltf["extensionsUsed"]
    # Without colours: no COLOR_0, a lit material.
    M.save_mesh(M.Mesh(colored_sphere.vertices, colored_sphere.faces), path)
    gltf, _ = _glb_json_and_binary(path)
    assert "COLOR_0" not in gltf["meshes"][0]["primitives"][0]["attributes"] and "extensionsUsed" not in gltf
    assert len(trimesh.load(path, process=False, force="mesh").faces) == len(colored_sphere.faces)


def test_save_mesh_errors_leave_no_file(colored_sphere: M.Mesh, tmp_path) -> None:
    with pytest.raises(InputError, match="unsupported mesh extension '.stl'"):
        M.save_mesh(colored_sphere, tmp_path / "a.stl")
    with pytest.raises(OutputError, match="cannot write"):
        M.save_mesh(colored_sphere, tmp_path / "missing_dir" / "a.ply")
    (tmp_path / "taken.ply").mkdir()  # the target is a directory: the final rename fails after writing
    with pytest.raises(OutputError, match="cannot write") as err:
        M.save_mesh(colored_sphere, tmp_path / "taken.ply")
    assert "\n" not in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["taken.ply"] and not os.listdir(tmp_path / "taken.ply")


def test_save_volume_npy_round_trip(tmp_path) -> None:
    v = np.random.default_rng(0).standard_normal((5, 6, 7)).astype(np.float32)
    M.save_volume(v, tmp_path / "v.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), v)
    with pytest.raises(InputError, match="unsupported volume extension"):
        M.save_volume(v, tmp_path / "v.raw")
    with pytest.raises(InputError, match=r"volume must be 3-D, got shape \(6, 7\)"):
        M.save_volume(v[0], tmp_path / "v.npy")
    for name in ("v.npy", "v.mrc"):
        with pytest.raises(OutputError, match="cannot write"):
            M.save_volume(v, tmp_path / "missing_dir" / name)
    assert sorted(os.listdir(tmp_path)) == ["v.npy"]


def test_save_volume_mrc_read_by_mrcfile(tmp_path) -> None:
    import mrcfile

    v = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(np.float32)
    path = tmp_path / "v.mrc"
    M.save_volume(v, path, voxel_size=2.0)
    assert sorted(os.listdir(tmp_path)) == ["v.mrc"]  # no temporary left behind
    with mrcfile.open(path, permissive=False) as mrc:
        np.testing.assert_array_equal(mrc.data, v)
        assert mrc.data.dtype == np.float32
        assert tuple(float(x) for x in mrc.voxel_size.item()) == (2.0, 2.0, 2.0)
        h = mrc.header
        assert (int(h.nx), int(h.ny), int(h.nz), int(h.mode)) == (7, 6, 5, 2)  # the last axis is the fastest (NX)
        assert (int(h.mapc), int(h.mapr), int(h.maps)) == (1, 2, 3)
        assert int(h.ispg) == 1  # a single volume, not an image stack
        assert float(h.dmin) == v.min() and float(h.dmax) == v.max()
        assert h.label[0].startswith(b"eg3d_core density volume")
    assert mrcfile.validate(str(path), print_file=open(os.devnull, "w"))
    # The plain layout other readers rely on: a 1024-byte little-endian header, no extended header, then the data.
    raw = path.read_bytes()
    assert len(raw) == 1024 + v.nbytes
    assert struct.unpack_from("<3i", raw, 0) == (7, 6, 5) and raw[212:214] == b"\x44\x44"
    np.testing.assert_array_equal(np.frombuffer(raw[1024:], dtype="<f4").reshape(v.shape), v)
