"""Mapping network: (z, camera label) -> intermediate latents w, with truncation."""
from __future__ import annotations

import torch
from torch import nn

from .layers import FullyConnected


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each row by its root mean square. x: [N, D]."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim].

    z and the embedded label are each RMS-normalised and concatenated (z first), then passed through
    ``num_layers`` leaky-ReLU layers with learning-rate multiplier 0.01.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.embed = FullyConnected(c_dim, w_dim)
        features = [z_dim + w_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            self.add_module(f"fc{idx}", FullyConnected(features[idx], features[idx + 1], lr_multiplier=0.01, lrelu=True))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        x = torch.cat([normalize_2nd_moment(z.float()), normalize_2nd_moment(self.embed(c.float()))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            # cutoff None truncates every w; cutoff k only the first k (0 means none), as in the original.
            k = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :k] = self.w_avg.lerp(ws[:, :k], truncation_psi)
        return ws
