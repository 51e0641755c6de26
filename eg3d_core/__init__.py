"""eg3d_core: a clean-room PyTorch implementation of the EG3D tri-plane generator."""
from .config import GeneratorConfig, RenderingConfig
from .errors import CheckpointError
from .presets import PRESETS

__all__ = ["CheckpointError", "GeneratorConfig", "PRESETS", "RenderingConfig"]
