"""StyleGAN2 synthesis backbone that paints the tri-planes."""
from __future__ import annotations

import torch
from torch import nn

from .layers import SynthesisBlock


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> backbone image [N, 3 * plane_channels, R, R] (R = 256 in the released models).

    Blocks b4 ... bR; block k reads ws starting where the previous block's convolutions ended, so each
    ToRGB shares its w with the next block's first convolution.
    """

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.resolutions = [2 ** i for i in range(2, resolution.bit_length())]
        ch = {res: min(channel_base // res, channel_max) for res in self.resolutions}
        for res in self.resolutions:
            in_ch = 0 if res == 4 else ch[res // 2]
            self.add_module(f"b{res}", SynthesisBlock(in_ch, ch[res], w_dim, res, img_channels, conv_clamp=conv_clamp))
        self.num_ws = sum(getattr(self, f"b{r}").num_conv for r in self.resolutions) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        x = img = None
        w_idx = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], noise_mode)
            w_idx += block.num_conv
        return img
