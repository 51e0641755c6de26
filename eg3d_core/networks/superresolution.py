"""Super-resolution modules: raw render + feature image -> final image (2X, 4X, 8X, 8XDC)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SR_INPUT_RESOLUTION, GeneratorConfig
from .layers import SynthesisBlock


class SuperResolution(nn.Module):
    """rgb [N, 3, r, r], features [N, C, r, r], ws [N, num_ws, w_dim] -> image [N, 3, S, S].

    Two StyleGAN2 blocks driven by the last w only. 8X/8XDC upsample in both blocks (128 -> 512);
    2X/4X keep the first block at the input resolution. The input is first resized (bilinear,
    antialiased) to the resolution the module was built for.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.kind = config.sr_module
        self.input_resolution = SR_INPUT_RESOLUTION[self.kind]
        self.antialias = config.sr_antialias
        self.noise_mode = config.sr_noise_mode
        hidden, out = config.sr_channels
        first_up = self.kind in ("8X", "8XDC")
        res0 = self.input_resolution * (2 if first_up else 1)
        common = dict(w_dim=config.w_dim, img_channels=3, conv_clamp=config.sr_conv_clamp, noise_buffers=False)
        self.block0 = SynthesisBlock(config.decoder_output_dim, hidden, resolution=res0, up=first_up, **common)
        self.block1 = SynthesisBlock(hidden, out, resolution=res0 * 2, up=True, **common)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        ws = ws[:, -1:].expand(-1, 3, -1)
        size = x.shape[-1]
        if (size < self.input_resolution) if self.kind == "4X" else (size != self.input_resolution):
            resize = dict(size=(self.input_resolution,) * 2, mode="bilinear", align_corners=False,
                          antialias=self.antialias)
            x = F.interpolate(x, **resize)
            rgb = F.interpolate(rgb, **resize)
        x, img = self.block0(x, rgb, ws, self.noise_mode)
        x, img = self.block1(x, img, ws, self.noise_mode)
        return img
