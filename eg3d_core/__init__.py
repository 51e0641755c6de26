"""eg3d_core: a clean-room PyTorch implementation of the EG3D tri-plane generator.

>>> import eg3d_core, torch
>>> G = eg3d_core.load_generator("demo")
>>> z = torch.randn(1, G.z_dim)
>>> cam = eg3d_core.cameras.camera(eg3d_core.cameras.camera_defaults(G.config), yaw=0.3)
>>> out = G(z, cam)  # {"image", "image_raw", "image_depth", "image_mask"}
"""
from . import cameras
from .checkpoints import load_generator, save_generator
from .config import GeneratorConfig, RenderingConfig
from .errors import CheckpointError
from .generator import Generator
from .presets import PRESETS

__all__ = ["CheckpointError", "Generator", "GeneratorConfig", "PRESETS", "RenderingConfig", "cameras",
           "load_generator", "save_generator"]
