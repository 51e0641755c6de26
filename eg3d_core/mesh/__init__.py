"""Geometry extraction: density grids, marching cubes, clean-up, vertex colours, and mesh / volume export.

Everything but :mod:`.generator` works on a *density callable* ``density_fn(points [M,3]) -> [M] or [M,1]`` rather
than on a generator, so it can be tested with analytic shapes (:mod:`.testing`) and reused by the CLI, the viewer and
the web demo.  Modules, in the order the data flows:

* :mod:`.grid`: grid coordinates, the dense density grid, border padding, the original's index conventions;
* :mod:`.coarse_to_fine`: the same grid, exact where marching cubes looks, evaluated only near the surface;
* :mod:`.surface`: :class:`Mesh`, marching cubes (PyMCubes), largest component and Taubin smoothing (trimesh);
* :mod:`.color`: vertex colours from a colour callable;
* :mod:`.extract`: :func:`extract_mesh`, the whole pipeline;
* :mod:`.export`: ``.ply`` / ``.obj`` / ``.glb`` through trimesh, ``.npy`` and ``.mrc`` (mrcfile) volumes;
* :mod:`.generator`: a generator's density and colour callables and :func:`generator_mesh`.

Meshes are returned and saved in **world units** (x, y, z as the generator sees them).  The original's ``.ply`` is in
voxel units on a flipped, transposed volume; :func:`to_original_voxel_convention` maps our vertices onto it and
:func:`to_original_volume_convention` turns our volume into the array the original writes to ``.mrc``.

Reproducing ``gen_samples.py --shapes`` with a sigma callable ``f`` (raw density, ``box = box_warp``)::

    volume = density_grid(f, 512, box)                                   # [ix, iy, iz], unpadded
    save_volume(to_original_volume_convention(volume), "seed0000.mrc")   # same array as the original's .mrc
    mesh = extract_mesh(f, 512, box)                                     # world units, padded like the original
    ply_vertices = to_original_voxel_convention(mesh.vertices, 512, box) # the original's .ply vertex positions
"""
from .coarse_to_fine import CoarseToFineGrid, density_grid_coarse_to_fine
from .color import ColorFn, colorize
from .export import MESH_EXTENSIONS, VOLUME_EXTENSIONS, save_mesh, save_volume
from .extract import extract_mesh
from .generator import color_fn, density_fn, generator_mesh
from .grid import (
    ORIGINAL_LEVEL,
    ORIGINAL_PAD_VALUE,
    DensityFn,
    ProgressFn,
    border_pad,
    density_grid,
    from_original_voxel_convention,
    grid_coordinates,
    index_to_world,
    pad_value,
    pad_volume_borders,
    to_original_volume_convention,
    to_original_voxel_convention,
    world_to_index,
)
from .surface import Mesh, keep_largest_component, require_surface, smooth_mesh, volume_to_mesh

__all__ = [
    "MESH_EXTENSIONS", "ORIGINAL_LEVEL", "ORIGINAL_PAD_VALUE", "VOLUME_EXTENSIONS", "CoarseToFineGrid", "ColorFn",
    "DensityFn", "Mesh", "ProgressFn", "border_pad", "color_fn", "colorize", "density_fn", "density_grid",
    "density_grid_coarse_to_fine", "extract_mesh", "from_original_voxel_convention", "generator_mesh",
    "grid_coordinates", "index_to_world", "keep_largest_component", "pad_value", "pad_volume_borders",
    "require_surface", "save_mesh", "save_volume", "smooth_mesh", "to_original_volume_convention",
    "to_original_voxel_convention", "volume_to_mesh", "world_to_index",
]
