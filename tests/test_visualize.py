"""Pictures for people: depth shown only where there is something, and the opening view per model."""
import math

import numpy as np
import torch

from eg3d_core import cameras, visualize
from eg3d_core.presets import PRESETS


def test_depth_outside_the_object_fades_to_the_background():
    depth = torch.full((1, 4, 4), 9.0)  # empty space: the renderer's far depth
    depth[0, 1:3, 1:3] = torch.tensor([[1.0, 1.5], [2.0, 1.2]])
    opacity = torch.zeros(1, 4, 4)
    opacity[0, 1:3, 1:3] = 1.0
    rgb = visualize.depth_to_color(depth, opacity)
    assert (rgb[0, 0] == 255).all() and (rgb[3, 3] == 255).all()
    # The object's own range spans the whole colour map: nearest = warmest end, farthest = coldest end.
    ends = visualize.depth_colormap(np.array([1.0, 0.0]))
    assert (rgb[1, 1] == ends[0]).all() and (rgb[2, 1] == ends[1]).all()
    # Without opacity the far background takes the scale and the object collapses into one colour.
    spread = visualize.normalize_depth(depth)[0, 1:3, 1:3]
    assert float(spread.max() - spread.min()) < 0.15
    assert float(visualize.normalize_depth(depth, opacity)[0, 1:3, 1:3].max()) == 1.0


def test_depth_with_nothing_in_view_is_all_background():
    gray = visualize.depth_to_gray(torch.rand(2, 1, 3, 3), torch.zeros(2, 1, 3, 3), background=7)
    assert gray.shape == (2, 3, 3, 3) and (gray == 7).all()


def test_generator_returns_its_opacity(cars_generator):
    G = cars_generator
    d = cameras.camera_defaults(G.config)
    ws = G.mapping(visualize.seed_to_z(0, G.config.z_dim), cameras.conditioning(d))
    out = G.synthesis(ws, cameras.camera(d, 0.4, -0.2), neural_rendering_resolution=16)
    mask = out["image_mask"]
    assert mask.shape == (1, 1, 16, 16) and float(mask.min()) >= 0 and float(mask.max()) <= 1 + 1e-5
    feats, depth, opacity = G.render(G.planes(ws), cameras.camera(d, 0.4, -0.2), 16, return_opacity=True)
    assert torch.equal(opacity, mask) and torch.equal(depth, out["image_depth"])


def test_objects_open_on_a_three_quarter_view_and_faces_frontally():
    cars = cameras.camera_defaults(PRESETS["shapenetcars128-64"])
    yaw, pitch = cars.view
    assert math.radians(30) <= abs(yaw) <= math.radians(70) and pitch < 0  # seen from the side, slightly above
    assert cameras.camera_defaults(PRESETS["ffhq512-128"]).view == (0.0, 0.0)
    # A negative pitch offset puts the camera above the object (y up).
    assert float(cameras.camera(cars, *cars.view)[0, 7]) > 0
