"""Camera rays, one per pixel centre of the neural rendering grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cameras import split_camera_vector


def sample_rays(c: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """c [N, 25] camera vectors -> ray origins, unit directions, each [N, R*R, 3].

    Pixel (row i, column j) has normalised coordinates ((j + 0.5) / R, (i + 0.5) / R); rays are
    ordered row-major. The intrinsics are normalised (OpenCV camera: x right, y down, z forward);
    skew is honoured. Sample depths along these unit rays are Euclidean distances.
    """
    cam2world, k = split_camera_vector(c)
    n = c.shape[0]
    coords = (torch.arange(resolution, dtype=torch.float32, device=c.device) + 0.5) / resolution
    y_pix, x_pix = torch.meshgrid(coords, coords, indexing="ij")
    x_pix = x_pix.reshape(1, -1)
    y_pix = y_pix.reshape(1, -1)
    fx, fy, cx, cy, sk = (k[:, 0, 0, None], k[:, 1, 1, None], k[:, 0, 2, None], k[:, 1, 2, None], k[:, 0, 1, None])
    y_cam = (y_pix - cy) / fy
    x_cam = (x_pix - cx + cy * sk / fy - sk * y_pix / fy) / fx
    dirs_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # [N, R*R, 3]
    dirs = F.normalize(dirs_cam @ cam2world[:, :3, :3].transpose(1, 2), dim=2)
    origins = cam2world[:, None, :3, 3].expand(n, dirs.shape[1], 3)
    return origins, dirs
