"""A procedural family of toy cars with an analytic, batched sphere-tracing renderer.

This is the training data of the bundled demo generator: every parameter vector in ``[0, 1]^PARAM_DIM``
decodes to one car (body, cabin with windows, four wheels, optional rear wing, head/tail lights,
colours), given as a signed distance function (SDF). ``render`` sphere-traces it from EG3D
camera vectors, so the training script can draw fresh (params, camera, image) triples every step.

Conventions (those of EG3D's ShapeNet-cars setting, see ``eg3d_core.cameras``):

* World +y up; the car is centred at the origin (its bounding box centred vertically), its length
  along z with the front towards +z (the frontal camera sees the front), its wheels standing on
  ``y = ground`` (no ground plane is drawn). Every car fits in ``[-0.45, 0.45]^3``, well inside the
  ``[-0.8, 0.8]^3`` tri-plane box (box_warp 1.6), and in the view of a radius-1.7 camera with focal 1.7074.
* Rays exactly as EG3D's ray sampler: pixel centres ``((j + 0.5) / R, (i + 0.5) / R)``, OpenCV camera
  (x right, y down, z forward), ``dir = normalize(R_c2w @ ((x - cx) / fx, (y - cy) / fy, 1))``,
  ``origin = pose[:3, 3]``; rays live in ``[RAY_START, RAY_END] = [0.1, 2.6]``.
* ``depth`` is the Euclidean distance along the unit ray (EG3D's ``image_depth``); pixels whose ray misses
  the car get ``RAY_END``.
* Shading is view-independent (albedo x (ambient + sky + two diffuse lights), no specular, no shadows):
  EG3D's decoder has no view direction input, so view-dependent effects could only be faked.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..cameras import SHAPENET_FOCAL, camera_vector, intrinsics_from_focal, lookat_pose, split_camera_vector
from ..fileio import atomic_folder

RAY_START = 0.1
RAY_END = 2.6
CAMERA_RADIUS = 1.7
# Pitch (the sampler's v angle) range of ``random_cameras``: mostly from slightly above the horizon.
PITCH_RANGE = (math.pi / 2 - 0.55, math.pi / 2 + 0.1)

# Every parameter, in order: (name, low, high). Parameter value p in [0, 1] decodes to low + p * (high - low)
# (lengths in world units, colours in HSV). The ranges are chosen so that every combination is a valid car:
# cabin inside the body, wheel arches below the body top, everything inside the bounding cube.
PARAM_SPECS: tuple[tuple[str, float, float], ...] = (
    ("body_half_length", 0.31, 0.42),
    ("body_half_width", 0.13, 0.19),
    ("body_height", 0.10, 0.17),
    ("ground_clearance", 0.025, 0.05),
    ("hood_slope_fraction", 0.05, 0.35),  # length of the sloped nose, fraction of the half length
    ("cabin_half_length_fraction", 0.30, 0.60),  # of the body half length
    ("cabin_offset_fraction", -0.35, 0.15),  # cabin centre z, fraction of the body half length (+ = forward)
    ("cabin_height", 0.07, 0.16),
    ("cabin_width_fraction", 0.70, 0.95),  # of the body width
    ("windshield_rake", 0.25, 0.60),  # how far the roof front is set back, fraction of the cabin half length
    ("rear_window_rake", 0.0, 0.40),
    ("wheel_radius_fraction", 0.30, 0.42),  # of the body top height above the ground
    ("wheel_width", 0.035, 0.06),
    ("wheelbase_fraction", 0.55, 0.72),  # axle distance from the centre, fraction of the body half length
    ("spoiler", 0.0, 1.0),  # rear wing height; no wing below 0.5 (it rises out of the body continuously)
    ("body_hue", 0.0, 1.0),
    ("body_saturation", 0.55, 1.0),
    ("body_value", 0.6, 1.0),
    ("roof_accent_mix", 0.0, 1.0),  # roof/wing colour: 0 = body colour, 1 = accent colour
    ("accent_hue_offset", 0.25, 0.75),  # accent hue = body hue + offset, so it always contrasts
    ("hub_accent_mix", 0.0, 1.0),  # hub caps: 0 = silver, 1 = accent colour
    ("corner_radius", 0.012, 0.04),
)
PARAM_NAMES: tuple[str, ...] = tuple(s[0] for s in PARAM_SPECS)
PARAM_DIM: int = len(PARAM_SPECS)

_LOW = torch.tensor([s[1] for s in PARAM_SPECS])
_HIGH = torch.tensor([s[2] for s in PARAM_SPECS])

# World-space lights (unit vectors towards the light): key light from above-front-right, weak fill from behind-left.
_KEY_LIGHT = (0.35, 0.85, 0.55)
_FILL_LIGHT = (-0.55, 0.35, -0.75)


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------

def params_from_latent(z: torch.Tensor) -> torch.Tensor:
    """The fixed map from latents to car parameters: ``Phi(z[:, :PARAM_DIM])``, the standard normal CDF of the
    first PARAM_DIM coordinates (the remaining ones are ignored). So ``z ~ N(0, I)`` gives independent,
    uniformly distributed parameters, and the map is smooth.

    z: [N, z_dim >= PARAM_DIM] -> [N, PARAM_DIM] in [0, 1].
    """
    if z.ndim != 2 or z.shape[1] < PARAM_DIM:
        raise ValueError(f"latents must have shape [N, >={PARAM_DIM}], got {list(z.shape)}")
    u = 0.5 * (1.0 + torch.erf(z[:, :PARAM_DIM].float() / math.sqrt(2.0)))
    return u.clamp(0.0, 1.0)


def _decode(params: torch.Tensor) -> dict[str, torch.Tensor]:
    """params [N, P] -> {name: [N]} in physical units."""
    if params.ndim != 2 or params.shape[1] != PARAM_DIM:
        raise ValueError(f"params must have shape [N, {PARAM_DIM}], got {list(params.shape)}")
    p = params.float().clamp(0.0, 1.0)
    v = _LOW.to(p.device) + p * (_HIGH - _LOW).to(p.device)
    return dict(zip(PARAM_NAMES, v.unbind(1), strict=True))


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[N] each (h periodic in [0, 1)) -> [N, 3] in [0, 1]; continuous in h across 0/1."""
    k = torch.stack([(5.0 + h * 6.0) % 6.0, (3.0 + h * 6.0) % 6.0, (1.0 + h * 6.0) % 6.0], dim=1)
    f = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v[:, None] - (v * s)[:, None] * f


def _colours(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Decoded params -> {body, accent, roof, hub}: [N, 3] each, in [0, 1]."""
    body = _hsv_to_rgb(d["body_hue"], d["body_saturation"], d["body_value"])
    accent_hue = (d["body_hue"] + d["accent_hue_offset"]) % 1.0
    accent = _hsv_to_rgb(accent_hue, torch.full_like(accent_hue, 0.85), torch.full_like(accent_hue, 0.9))
    m = d["roof_accent_mix"][:, None]
    roof = (1 - m) * body + m * accent
    mh = d["hub_accent_mix"][:, None]
    hub = (1 - mh) * torch.tensor([0.78, 0.78, 0.82], device=body.device) + mh * accent
    return {"body": body, "accent": accent, "roof": roof, "hub": hub}


# Names of the per-car geometry scalars that the SDF needs, in the row order of ``_geometry``'s output.
_GEO_KEYS = (
    "ground", "W", "L", "rr", "body_cy", "body_hh", "nose_z", "nose_y", "nose_nz", "nose_ny",
    "axle", "wr", "arch_r", "well_x", "wx", "ww_half", "wrr",
    "cab_z", "cab_w", "cab_l", "cab_cy", "cab_hh", "rc", "belt", "cab_top",
    "wf_nz", "wf_ny", "wb_nz", "wb_ny",
    "sp_z", "sp_w", "sp_y", "sp_base", "post_x",
    "bx", "by", "bz",
)


def _geometry(params: torch.Tensor) -> torch.Tensor:
    """params [N, P] -> geometry rows [len(_GEO_KEYS), N]; coordinates in the "ground frame" (y = 0 on the
    ground) except ``ground`` itself (world y of the ground) and the bounding box half extents bx, by, bz."""
    d = _decode(params)
    W, L, hb, c = d["body_half_width"], d["body_half_length"], d["body_height"], d["ground_clearance"]
    rr = d["corner_radius"]
    top = c + hb  # body top (belt line)
    hc = d["cabin_height"]
    H = top + hc  # total height
    g: dict[str, torch.Tensor] = {"ground": -0.5 * H, "W": W, "L": L, "rr": rr, "body_cy": c + 0.5 * hb,
                                  "body_hh": 0.5 * hb}
    # Sloped nose: a plane through (z = L - nose, y = top) and (z = L, y = c + 0.55 hb), normal towards +z +y.
    nose = d["hood_slope_fraction"] * L
    drop = 0.45 * hb
    nn = torch.sqrt(drop**2 + nose**2)
    g.update(nose_z=L - nose, nose_y=top, nose_nz=drop / nn, nose_ny=nose / nn)
    # Wheels: radius relative to the body top so that the arches (radius wr + margin) never cut through it.
    wr = d["wheel_radius_fraction"] * top
    ww = d["wheel_width"]
    g.update(axle=d["wheelbase_fraction"] * L, wr=wr, arch_r=1.12 * wr + 0.004, well_x=W - ww - 0.003,
             wx=W - 0.5 * ww + 0.012, ww_half=0.5 * ww, wrr=torch.minimum(0.3 * ww, 0.3 * wr))
    # Cabin: a rounded box from half the body height (buried, so it always joins the body) to the roof,
    # cut by the windshield and rear-window planes that pass through its belt-line edges.
    cl = d["cabin_half_length_fraction"] * L
    base = c + 0.5 * hb
    fi = d["windshield_rake"] * cl
    bi = d["rear_window_rake"] * cl
    nf = torch.sqrt(hc**2 + fi**2)
    nb = torch.sqrt(hc**2 + bi**2)
    g.update(cab_z=d["cabin_offset_fraction"] * L, cab_w=d["cabin_width_fraction"] * W, cab_l=cl,
             cab_cy=0.5 * (base + H), cab_hh=0.5 * (H - base), rc=torch.minimum(rr, torch.full_like(rr, 0.025)),
             belt=top, cab_top=H, wf_nz=hc / nf, wf_ny=fi / nf, wb_nz=-hc / nb, wb_ny=bi / nb)
    # Rear wing: a plate on two posts that rises continuously out of the body for spoiler > 0.5.
    s = (2.0 * d["spoiler"] - 1.0).clamp(min=0.0)
    sp_base = top - 0.05
    g.update(sp_z=-L + 0.05, sp_w=0.9 * W, sp_y=sp_base + s * 0.115, sp_base=sp_base, post_x=0.55 * W)
    # Bounding box (centred at the origin), with a margin.
    g.update(bx=torch.maximum(W, g["wx"] + g["ww_half"]) + 0.02, by=0.5 * H + 0.03,
             bz=torch.maximum(L, g["axle"] + wr) + 0.02)
    return torch.stack([g[k] for k in _GEO_KEYS], dim=0)


def describe(params: torch.Tensor | Sequence[Sequence[float]]) -> list[dict]:
    """Human-readable decoded parameters, one dict per car: world-unit dimensions and hex colours.

    params: [N, P] (tensor or nested sequence).
    """
    p = torch.as_tensor(params, dtype=torch.float32)
    if p.ndim == 1:
        p = p[None]
    d = _decode(p)
    geo = dict(zip(_GEO_KEYS, _geometry(p).unbind(0), strict=True))
    cols = _colours(d)

    def hexcol(rgb: torch.Tensor) -> str:
        r, g_, b = (int(round(float(x) * 255)) for x in rgb)
        return f"#{r:02x}{g_:02x}{b:02x}"

    out = []
    for i in range(p.shape[0]):
        out.append({
            "body_length": round(2 * float(d["body_half_length"][i]), 4),
            "body_width": round(2 * float(d["body_half_width"][i]), 4),
            "body_height": round(float(d["body_height"][i]), 4),
            "ground_clearance": round(float(d["ground_clearance"][i]), 4),
            "total_height": round(float(geo["cab_top"][i]), 4),
            "hood_slope_length": round(float(d["hood_slope_fraction"][i] * d["body_half_length"][i]), 4),
            "cabin_length": round(2 * float(geo["cab_l"][i]), 4),
            "cabin_width": round(2 * float(geo["cab_w"][i]), 4),
            "cabin_height": round(float(d["cabin_height"][i]), 4),
            "cabin_center_z": round(float(geo["cab_z"][i]), 4),
            "wheel_radius": round(float(geo["wr"][i]), 4),
            "wheel_width": round(float(d["wheel_width"][i]), 4),
            "wheelbase": round(2 * float(geo["axle"][i]), 4),
            # wing top above the body top (0 = no wing: it is hidden inside the body)
            "spoiler_height": round(max(float(geo["sp_y"][i] + 0.011 - geo["belt"][i]), 0.0), 4),
            "body_colour": hexcol(cols["body"][i]),
            "roof_colour": hexcol(cols["roof"][i]),
            "accent_colour": hexcol(cols["accent"][i]),
            "hub_colour": hexcol(cols["hub"][i]),
        })
    return out


# --------------------------------------------------------------------------------------------------------------
# Signed distance function
# --------------------------------------------------------------------------------------------------------------

def _box(qx: torch.Tensor, qy: torch.Tensor, qz: torch.Tensor) -> torch.Tensor:
    """Exact box SDF from q = |p - centre| - half_extents (each [N, M]; consumed: modified in place)."""
    inside = torch.maximum(torch.maximum(qx, qy), qz).clamp_(max=0)
    px, py, pz = qx.clamp_(min=0), qy.clamp_(min=0), qz.clamp_(min=0)
    return torch.sqrt_(px.mul_(px).addcmul_(py, py).addcmul_(pz, pz)).add_(inside)


def _sdf_parts(g: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-part signed distances (body, cabin, wheels, wing), each [N, M], at world points x, y, z [N, M];
    g holds the per-car geometry scalars [N, 1]. Each part is a distance bound (Lipschitz <= 1).

    This is the renderer's hot loop (~90 elementwise ops per point): in-place ops where a temporary is dead,
    and per-car constants combined on the [N, 1] side of each op.
    """
    yg = y - g["ground"]
    ax = x.abs()
    az = z.abs()
    rr = g["rr"]
    # Body: rounded box, cut by the nose plane and the wheel arches.
    body = _box(ax - (g["W"] - rr), (yg - g["body_cy"]).abs_().sub_(g["body_hh"] - rr), az - (g["L"] - rr)).sub_(rr)
    nose = (z - g["nose_z"]).mul_(g["nose_nz"]).addcmul_(yg - g["nose_y"], g["nose_ny"])
    body = torch.maximum(body, nose)
    dz = az - g["axle"]
    dy = yg - g["wr"]
    axle_dist = torch.sqrt_(dz.mul_(dz).addcmul_(dy, dy))
    # Wheel wells: the arch cylinder only cuts the body outside |x| = well_x, so nothing can be seen through it.
    body = torch.maximum(body, torch.minimum(g["arch_r"] - axle_dist, ax - g["well_x"]))
    # Cabin: rounded box cut by the windshield and rear-window planes.
    cz = z - g["cab_z"]
    rc = g["rc"]
    cab = _box(ax - (g["cab_w"] - rc), (yg - g["cab_cy"]).abs_().sub_(g["cab_hh"] - rc),
               cz.abs().sub_(g["cab_l"] - rc)).sub_(rc)
    yb = yg - g["belt"]
    cab = torch.maximum(cab, (cz - g["cab_l"]).mul_(g["wf_nz"]).addcmul_(yb, g["wf_ny"]))
    cab = torch.maximum(cab, (cz + g["cab_l"]).mul_(g["wb_nz"]).addcmul_(yb, g["wb_ny"]))
    # Wheels: rounded cylinders along x (four by symmetry in |x| and |z|).
    wrr = g["wrr"]
    dr = axle_dist - (g["wr"] - wrr)
    dx = (ax - g["wx"]).abs_().sub_(g["ww_half"] - wrr)
    inside = torch.maximum(dr, dx).clamp_(max=0)
    pr, px = dr.clamp_(min=0), dx.clamp_(min=0)
    wheel = torch.sqrt_(pr.mul_(pr).addcmul_(px, px)).add_(inside).sub_(wrr)
    # Rear wing: plate + two posts. Small parts, so the cheap box bound max(q) (exact inside, an underestimate
    # near edges, which sphere tracing tolerates) instead of the exact box distance.
    wz = (z - g["sp_z"]).abs_()
    plate = torch.maximum(torch.maximum(ax - g["sp_w"], (yg - g["sp_y"]).abs_().sub_(0.008)), wz - 0.03)
    post_hh = 0.5 * (g["sp_y"] - g["sp_base"])
    post = torch.maximum(torch.maximum((ax - g["post_x"]).abs_().sub_(0.01),
                                       (yg - (g["sp_base"] + post_hh)).abs_().sub_(post_hh)), wz.sub_(0.015))
    wing = torch.minimum(plate, post)
    return body, cab, wheel, wing


def _sdf(g: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The car's signed distance [N, M] (union of the parts) at world points x, y, z [N, M]."""
    body, cab, wheel, wing = _sdf_parts(g, x, y, z)
    return torch.minimum(torch.minimum(body, cab), torch.minimum(wheel, wing))


def _rows_to_dict(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return dict(zip(_GEO_KEYS, rows.unbind(0), strict=True))


def sdf(params: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Signed distance (a Lipschitz-1 bound, exact near the surface) of each car at world points.

    params [N, P], points [N, M, 3] -> [N, M] (negative inside).
    """
    g = _rows_to_dict(_geometry(params).to(points.device)[:, :, None])  # [N, 1] each, broadcast over points
    pts = points.float()
    return _sdf(g, pts[..., 0], pts[..., 1], pts[..., 2])


# --------------------------------------------------------------------------------------------------------------
# Cameras and rays
# --------------------------------------------------------------------------------------------------------------

def random_cameras(n: int, generator: torch.Generator | None = None, radius: float = CAMERA_RADIUS,
                   focal: float = SHAPENET_FOCAL) -> torch.Tensor:
    """ShapeNet-cars-like cameras: yaw uniform over the full circle, pitch (sampler angle v) uniform in
    ``PITCH_RANGE`` (mostly from slightly above), on a sphere of ``radius`` looking at the origin.

    Returns [n, 25] camera vectors.
    """
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    yaw = 2 * math.pi * u[:, 0]
    pitch = PITCH_RANGE[0] + (PITCH_RANGE[1] - PITCH_RANGE[0]) * u[:, 1]
    pose = lookat_pose(yaw.numpy(), pitch.numpy(), radius=radius)
    return camera_vector(pose, intrinsics_from_focal(focal))


def camera_rays(c: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EG3D's ray sampler: c [N, 25] -> (origins [N, 3], unit directions [3, N, R*R]); pixels row-major
    (pixel (i, j) at (x, y) = ((j + 0.5) / R, (i + 0.5) / R) in normalised image coordinates)."""
    pose, k = split_camera_vector(c.float())
    ar = (torch.arange(resolution, dtype=torch.float32, device=c.device) + 0.5) / resolution
    ys = ar.repeat_interleave(resolution)[None]  # row i -> y
    xs = ar.repeat(resolution)[None]  # column j -> x
    fx, fy, cx, cy, sk = k[:, 0, 0, None], k[:, 1, 1, None], k[:, 0, 2, None], k[:, 1, 2, None], k[:, 0, 1, None]
    x_cam = (xs - cx + cy * sk / fy - sk * ys / fy) / fx  # [N, R*R]
    y_cam = (ys - cy) / fy
    # R @ (x, y, 1) / |(x, y, 1)|: a rotation keeps the norm, so normalise in camera space (cheaper than a bmm).
    inv_norm = torch.rsqrt(x_cam * x_cam + y_cam * y_cam + 1.0)
    rot = pose[:, :3, :3]
    dirs = torch.stack([(rot[:, a, 0, None] * x_cam + rot[:, a, 1, None] * y_cam + rot[:, a, 2, None]) * inv_norm
                        for a in range(3)])
    return pose[:, :3, 3], dirs


# --------------------------------------------------------------------------------------------------------------
# Sphere tracing and shading
# --------------------------------------------------------------------------------------------------------------

def _compact(keep: torch.Tensor, tensors: Sequence[torch.Tensor], pads: Sequence[float | int]) -> list[torch.Tensor]:
    """Row-wise stream compaction: keep [N, M] bool, tensors [N, M] each -> [N, M'] each, where row n holds the
    kept entries of row n in order, padded with ``pads`` up to M' = the largest kept count.

    Rays stay grouped by car (one row per car) so that the per-car geometry broadcasts as [N, 1] columns:
    gathering ~36 geometry values per ray would cost far more than the SDF itself on CPU.
    """
    n, m = keep.shape
    new_m = max(int(keep.sum(1).max()), 1)
    pos = keep.cumsum(1) - 1
    base = torch.arange(n, device=keep.device)[:, None] * new_m
    dst = torch.where(keep, base + pos, n * new_m).reshape(-1)  # dropped entries go to a dummy last slot
    out = []
    for t, pad in zip(tensors, pads, strict=True):
        buf = torch.full((n * new_m + 1,), pad, dtype=t.dtype, device=t.device)
        buf.scatter_(0, dst, t.reshape(-1))
        out.append(buf[:-1].view(n, new_m))
    return out


def _trace(g: dict[str, torch.Tensor], origin: torch.Tensor, dirs: torch.Tensor, t0: torch.Tensor,
           t1: torch.Tensor, pix: torch.Tensor, steps: int, eps: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sphere-trace N x M rays (row n belongs to car n), compacting the active set as rays finish.

    g: per-car geometry [N, 1] each; origin [N, 3]; dirs [3, N, M] unit; t0, t1 [N, M] ray segment (t0 > t1
    means no segment); pix [N, 1] pixel footprint per unit distance.
    Returns (t [N, M]: hit distance, or the closest-approach distance for misses; hit [N, M] bool;
    coverage [N, M] in [0, 1]). Coverage is 1 for hits; for misses it is the cone-traced silhouette coverage
    ``0.5 - d_min / (t pix)`` (clamped), which anti-aliases the outline at no extra cost.
    """
    n, m = t0.shape
    dev = t0.device
    ox, oy, oz = (origin[:, a, None] for a in range(3))
    total = n * m
    # One dummy slot at the end receives the padding entries' results.
    t_out = torch.zeros(total + 1, device=dev)
    hit_out = torch.zeros(total + 1, dtype=torch.bool, device=dev)
    ratio_out = torch.full((total + 1,), 1e9, device=dev)
    idx = torch.arange(total, device=dev).view(n, m)
    dx, dy, dz, t, tf, idx = _compact(t0 < t1, [dirs[0], dirs[1], dirs[2], t0, t1, idx], [0.0, 0.0, 0.0, 1.0, 0.0, total])
    br = torch.full_like(t, 1e9)  # best (smallest) distance / footprint ratio so far, and where
    bt = t.clone()
    for step in range(steps):
        x = torch.addcmul(ox, t, dx)
        y = torch.addcmul(oy, t, dy)
        z = torch.addcmul(oz, t, dz)
        dist = _sdf(g, x, y, z)
        ratio = dist / (t * pix)
        better = ratio < br
        br = torch.where(better, ratio, br)
        bt = torch.where(better, t, bt)
        conv = dist < eps
        t_next = t + dist
        beyond = t_next > tf  # leaving the box: a miss (the car is inside the box)
        done = conv | beyond
        # Finished rays are frozen until the next compaction (their SDF value, ratio, ... stay the same), so
        # results do not depend on when compaction happens, i.e. on the other cars in the batch.
        last = step == steps - 1
        if last:
            # Out of steps: count rays that got close as hits (grazing rays creep along the surface).
            conv = (dist < 10 * eps) & ~beyond
        else:
            t = torch.where(done, t, t_next)
        # Compaction costs about as much as an SDF evaluation: only do it once it would shrink the (row-padded)
        # active set to <= 70% of its width.
        width = int((~done).sum(1).max())
        if last or width == 0 or width <= 0.7 * done.shape[1]:
            # Write every ray's current result; unfinished rays are overwritten when they finish.
            flat = idx.reshape(-1)
            t_out.scatter_(0, flat, torch.where(conv, t, bt).reshape(-1))
            hit_out.scatter_(0, flat, conv.reshape(-1))
            ratio_out.scatter_(0, flat, torch.where(conv, -1.0, br).reshape(-1))
            if last or width == 0:
                break
            dx, dy, dz, t, tf, br, bt, idx = _compact(~done, [dx, dy, dz, t, tf, br, bt, idx],
                                                      [0.0, 0.0, 0.0, 1.0, 0.0, 1e9, 0.0, total])
    hit = hit_out[:total].view(n, m)
    coverage = torch.where(hit, 1.0, (0.5 - ratio_out[:total]).clamp(0.0, 1.0).view(n, m))
    return t_out[:total].view(n, m), hit, coverage


def _normals(g: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, f0: torch.Tensor,
             h: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit SDF gradients (nx, ny, nz), each [N, M], by forward differences from f0 = SDF at the points."""
    nx = _sdf(g, x + h, y, z) - f0
    ny = _sdf(g, x, y + h, z) - f0
    nz = _sdf(g, x, y, z + h) - f0
    inv = torch.rsqrt(nx * nx + ny * ny + nz * nz + 1e-20)
    return nx * inv, ny * inv, nz * inv


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _shade(g: dict[str, torch.Tensor], cols: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
           z: torch.Tensor) -> torch.Tensor:
    """Colour [3, N, M] in [0, 1] of surface points at world x, y, z [N, M]; g: per-car geometry [N, 1] each;
    cols: per-car colours [3, N, 1] each."""
    # Material = the closest part (argmin by comparisons: argmin over a stacked dim is slow on CPU).
    parts = _sdf_parts(g, x, y, z)
    f0 = parts[0]
    mat = torch.zeros_like(x, dtype=torch.uint8)
    for i in (1, 2, 3):
        closer = parts[i] < f0
        mat = torch.where(closer, i, mat)
        f0 = torch.where(closer, parts[i], f0)
    nx, ny, nz = _normals(g, x, y, z, f0)
    yg = y - g["ground"]
    ax = x.abs()
    W = g["W"]
    hb = 2 * g["body_hh"]
    c = g["body_cy"] - g["body_hh"]

    def const(*rgb: float) -> torch.Tensor:
        return torch.tensor(rgb, device=x.device)[:, None, None]

    # Body: base colour, dark lower skirt/bumper band, headlights at the front, tail lights at the back.
    body = cols["body"]
    skirt = 1 - _smoothstep(0.0, 0.012, yg - (c + 0.22 * hb))
    body = body + skirt * (const(0.16, 0.16, 0.18) - body)
    well = 1 - _smoothstep(0.0, 0.006, torch.sqrt((z.abs() - g["axle"]) ** 2 + (yg - g["wr"]) ** 2) - g["arch_r"])
    body = body + well * (const(0.1, 0.1, 0.11) - body)  # dark wheel-well lining
    lamp_x = ((ax - 0.62 * W) / (0.22 * W)) ** 2
    head = (1 - _smoothstep(0.6, 1.0, lamp_x + ((yg - (c + 0.40 * hb)) / (0.14 * hb)) ** 2)) \
        * _smoothstep(0.25, 0.5, nz) * (z > 0).float()
    body = body + head * (const(1.0, 0.97, 0.78) - body)
    tail = (1 - _smoothstep(0.6, 1.0, lamp_x + ((yg - (c + 0.66 * hb)) / (0.12 * hb)) ** 2)) \
        * _smoothstep(0.25, 0.5, -nz) * (z < 0).float()
    body = body + tail * (const(0.9, 0.1, 0.08) - body)

    # Cabin: glass all around between the belt line and the roof edge, roof colour above.
    cabin = cols["roof"]
    glass_band = _smoothstep(0.008, 0.016, yg - g["belt"]) * (1 - _smoothstep(-0.022, -0.014, yg - g["cab_top"]))
    glass = glass_band * (1 - _smoothstep(0.75, 0.9, ny))
    sky = ny.clamp(min=0)
    glass_col = torch.stack([0.10 + 0.12 * sky, 0.13 + 0.15 * sky, 0.20 + 0.2 * sky])
    cabin = cabin + glass * (glass_col - cabin)

    # Wheels: dark tyre with a hub cap on the outer face.
    radial = torch.sqrt((z.abs() - g["axle"]) ** 2 + (yg - g["wr"]) ** 2) / g["wr"]
    hub = (1 - _smoothstep(0.5, 0.6, radial)) * _smoothstep(0.6, 0.8, nx * torch.sign(x))
    tyre = const(0.08, 0.08, 0.09)
    wheel = tyre + hub * (cols["hub"] - tyre)

    albedo = torch.where(mat == 0, body, torch.where(mat == 1, cabin, torch.where(mat == 2, wheel, cols["roof"])))

    key = torch.nn.functional.normalize(torch.tensor(_KEY_LIGHT), dim=0).tolist()
    fill = torch.nn.functional.normalize(torch.tensor(_FILL_LIGHT), dim=0).tolist()
    light = (0.30 + 0.15 * ny  # ambient + sky (brighter on top, darker underneath)
             + 0.55 * (key[0] * nx + key[1] * ny + key[2] * nz).clamp(min=0)
             + 0.20 * (fill[0] * nx + fill[1] * ny + fill[2] * nz).clamp(min=0))
    return (albedo * light).clamp(0.0, 1.0)


@torch.no_grad()
def render(params: torch.Tensor, c: torch.Tensor, resolution: int, background: float = 1.0,
           steps: int = 64) -> dict[str, torch.Tensor]:
    """Render cars ``params`` [N, P] from cameras ``c`` [N, 25] at ``resolution``.

    Returns {'image': [N, 3, R, R] in [-1, 1] (background = ``background``, 1.0 = white),
    'depth': [N, 1, R, R] Euclidean ray distance, RAY_END (2.6) where the ray misses the car,
    'mask': [N, 1, R, R] in [0, 1]: 1 on the car, anti-aliased (cone-traced) coverage on the outline, 0 off it}.
    Outline pixels with 0 < mask < 1 have the far depth. Works on any device (params, c on the same one).

    Speed (CPU, batch 64): ~300 images/s at 64 px, ~90 at 128 px on one core. It runs many small elementwise
    ops, so on a shared CPU use one thread or OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads compete for the cores).
    """
    n = params.shape[0]
    if c.ndim != 2 or c.shape != (n, 25):
        raise ValueError(f"cameras must have shape [{n}, 25], got {list(c.shape)}")
    device = params.device
    rr = resolution * resolution
    rows = _geometry(params).to(device)[:, :, None]  # [K, N, 1]
    g = _rows_to_dict(rows)
    cols = {k: v.T[:, :, None] for k, v in _colours(_decode(params)).items()}  # [3, N, 1] each
    origin, dirs = camera_rays(c.to(device), resolution)  # [N, 3], [3, N, RR]

    # Clip every ray to its car's bounding box (slab test) and the ray range; only rays that enter it march.
    t_near = torch.full((n, rr), RAY_START, device=device)
    t_far = torch.full((n, rr), RAY_END, device=device)
    for a, key in enumerate(("bx", "by", "bz")):
        inv = 1.0 / torch.where(dirs[a].abs() < 1e-9, 1e-9, dirs[a])
        ta = (-g[key] - origin[:, a, None]) * inv
        tb = (g[key] - origin[:, a, None]) * inv
        t_near = torch.maximum(t_near, torch.minimum(ta, tb))
        t_far = torch.minimum(t_far, torch.maximum(ta, tb))

    pix = 1.0 / (resolution * c[:, 16, None].float().abs().clamp(min=1e-6)).to(device)  # [N, 1]
    t, hit, cov = _trace(g, origin, dirs, t_near, t_far, pix, steps=steps, eps=5e-4)

    depth = torch.where(hit, t, RAY_END)
    image = torch.full((3, n * rr + 1), float(background), device=device)  # + a dummy column for the padding

    # Shade the covered rays at their hit (or closest-approach) point, compacted per car like the tracing.
    vis = cov > 0
    if bool(vis.any()):
        idx = torch.arange(n * rr, device=device).view(n, rr)
        vt, vdx, vdy, vdz, va, vidx = _compact(vis, [t, dirs[0], dirs[1], dirs[2], cov, idx],
                                               [1.0, 0.0, 0.0, 0.0, 0.0, n * rr])
        rgb = _shade(g, cols, torch.addcmul(origin[:, 0, None], vt, vdx), torch.addcmul(origin[:, 1, None], vt, vdy),
                     torch.addcmul(origin[:, 2, None], vt, vdz))  # [3, N, M'] in [0, 1]
        pix_rgb = va * (rgb * 2 - 1) + (1 - va) * float(background)
        image.scatter_(1, vidx.reshape(1, -1).expand(3, -1), pix_rgb.reshape(3, -1))

    return {
        "image": image[:, :-1].reshape(3, n, resolution, resolution).permute(1, 0, 2, 3).contiguous(),
        "depth": depth.reshape(n, 1, resolution, resolution),
        "mask": cov.reshape(n, 1, resolution, resolution),
    }


# --------------------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------------------

def to_uint8(image: torch.Tensor) -> np.ndarray:
    """image [N, 3, R, R] in [-1, 1] -> uint8 [N, R, R, 3]."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_dataset(out_dir: str | os.PathLike, num_images: int, resolution: int, seed: int,
                  progress: bool = True, batch_size: int = 64) -> Path:
    """Write an EG3D-layout dataset of random cars from random cameras (one car per image).

    Layout (flat): ``img00000000.png`` ... plus ``dataset.json`` = {"labels": [[name, [25 floats]], ...]}
    (the camera vectors, as EG3D's dataset tool writes them) and ``params.npy`` [num_images, PARAM_DIM]
    (float32, row i for image i). Params come from ``params_from_latent`` of standard normal latents, cameras
    from ``random_cameras``, both from one ``torch.Generator`` seeded with ``seed`` (so the output is
    reproducible). Written into a temporary sibling folder and renamed into place at the end, so ``out_dir``
    either does not exist or is complete; raises FileExistsError if ``out_dir`` exists and is not empty.
    """
    from PIL import Image
    from tqdm import tqdm

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()  # empty (checked above); a rename cannot replace a folder on every platform
    with atomic_folder(out) as tmp:
        # Draw everything up front so that the dataset depends on the seed only, not on the batch size.
        gen = torch.Generator().manual_seed(seed)
        all_params = params_from_latent(torch.randn(num_images, PARAM_DIM, generator=gen))
        all_cams = random_cameras(num_images, gen)
        labels: list[list] = []
        bar = tqdm(total=num_images, disable=not progress, desc="toy cars", unit="img")
        for start in range(0, num_images, batch_size):
            params = all_params[start:start + batch_size]
            cams = all_cams[start:start + batch_size]
            imgs = to_uint8(render(params, cams, resolution)["image"])
            for i in range(len(imgs)):
                name = f"img{start + i:08d}.png"
                Image.fromarray(imgs[i]).save(tmp / name)
                labels.append([name, [float(v) for v in cams[i].tolist()]])
            bar.update(len(imgs))
        bar.close()
        with open(tmp / "dataset.json", "w") as f:
            json.dump({"labels": labels}, f)
        np.save(tmp / "params.npy", all_params.numpy().astype(np.float32))
    return out
