"""The small MLP that turns averaged tri-plane features into density and colour features."""
from __future__ import annotations

import torch
from torch import nn

from ..networks.layers import FullyConnected, inplace_ok, linear, softplus_, softplus_linear


class Softplus(nn.Module):
    """``softplus``, in place where autograd allows (a fresh [M, 64] result costs more than the arithmetic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softplus_(x)


class Decoder(nn.Module):
    """features [N, M, C] -> {"sigma": [N, M, 1] raw density, "rgb": [N, M, out] in (-0.001, 1.001)}.

    One hidden softplus layer; no view dependence. The colour sigmoid is widened slightly (MipNeRF).
    """

    def __init__(self, in_features: int = 32, hidden: int = 64, out_features: int = 32, lr_multiplier: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            FullyConnected(in_features, hidden, lr_multiplier=lr_multiplier),
            Softplus(),
            FullyConnected(hidden, 1 + out_features, lr_multiplier=lr_multiplier),
        )

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        n, m, c = features.shape
        fc0, _, fc1 = self.net  # (fc0, Softplus, fc1): the layout of the released weights
        h = softplus_linear(features.reshape(n * m, c), *fc0.params(features.dtype))
        # The output layer as two products (density row, colour rows): a 32-wide product is much faster than a
        # 33-wide one, and the colours come out contiguous for the in-place activation below.
        w, b = fc1.params(h.dtype)
        sigma = linear(h, w[:1], b[:1]).reshape(n, m, 1).float()
        rgb = linear(h, w[1:], b[1:], sigmoid=True).reshape(n, m, -1).float()
        if inplace_ok(rgb):
            rgb = rgb.mul_(1 + 2 * 0.001).sub_(0.001)
        else:
            rgb = rgb * (1 + 2 * 0.001) - 0.001
        return {"sigma": sigma, "rgb": rgb}
