"""What the UI thread needs to know about the loaded model, without touching the model itself."""
from __future__ import annotations

from dataclasses import dataclass

import eg3d_core
from eg3d_core.cameras import CameraDefaults, camera_defaults


@dataclass(frozen=True)
class ModelInfo:
    source: str
    z_dim: int
    w_dim: int
    num_ws: int
    triplane_resolution: int
    img_resolution: int
    neural_rendering_resolution: int
    depth_resolution: int
    depth_resolution_importance: int
    sr_module: str
    camera: CameraDefaults
    ray_start: float
    ray_end: float
    box_warp: float
    pose_conditioned: bool  # False for models trained with zeroed conditioning (ShapeNet cars)

    @classmethod
    def of(cls, G: eg3d_core.Generator, source: str) -> ModelInfo:
        r = G.config.rendering
        return cls(source=source, z_dim=G.z_dim, w_dim=G.w_dim, num_ws=G.num_ws, triplane_resolution=G.config.triplane_resolution,
                   img_resolution=G.img_resolution,
                   neural_rendering_resolution=r.neural_rendering_resolution, depth_resolution=r.depth_resolution,
                   depth_resolution_importance=r.depth_resolution_importance, sr_module=G.config.sr_module,
                   camera=camera_defaults(G.config), ray_start=r.ray_start, ray_end=r.ray_end, box_warp=r.box_warp,
                   pose_conditioned=not r.c_gen_conditioning_zero)

    @property
    def description(self) -> str:
        return (f"{self.img_resolution}px, SR {self.sr_module}, neural render {self.neural_rendering_resolution}px, "
                f"{self.depth_resolution}+{self.depth_resolution_importance} samples/ray, "
                f"z {self.z_dim}, w {self.num_ws}x{self.w_dim}")
