"""A test-only stand-in for NVIDIA's TorchScript Inception-v3 (``inception-2015-12-05.pt``).

The real weights cannot be downloaded here, so tests build this network with random weights and save it as
TorchScript. It has the real file's calling convention (``net(uint8 images [N, 3, H, W], return_features=True)``
-> pool features [N, D]; it resizes to 299 x 299 and maps [0, 255] to [-1, 1] itself) and Inception-v3's
topology as used for FID (stem, 3 x A, B, 4 x C, D, 2 x E, global average pool). ``width`` scales every layer's
channels (1.0 = the real sizes, D = 2048) so that tests can use a small, fast version of the same architecture.

    python tests/inception_standin.py OUT.pt [--width 0.25] [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int] | int, stride: int = 1,
                 padding: tuple[int, int] | int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BlockA(nn.Module):
    """35x35: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool: int, s) -> None:
        super().__init__()
        self.b1 = ConvBN(cin, s(64), 1)
        self.b5 = nn.Sequential(ConvBN(cin, s(48), 1), ConvBN(s(48), s(64), 5, padding=2))
        self.b3 = nn.Sequential(ConvBN(cin, s(64), 1), ConvBN(s(64), s(96), 3, padding=1), ConvBN(s(96), s(96), 3, padding=1))
        self.bp = ConvBN(cin, pool, 1)
        self.out_channels = s(64) + s(64) + s(96) + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(p)], 1)


class BlockB(nn.Module):
    """35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int, s) -> None:
        super().__init__()
        self.b3 = ConvBN(cin, s(384), 3, stride=2)
        self.bd = nn.Sequential(ConvBN(cin, s(64), 1), ConvBN(s(64), s(96), 3, padding=1), ConvBN(s(96), s(96), 3, stride=2))
        self.out_channels = s(384) + s(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    """17x17 with factorised 7x7 convolutions."""

    def __init__(self, cin: int, c7: int, s) -> None:
        super().__init__()
        self.b1 = ConvBN(cin, s(192), 1)
        self.b7 = nn.Sequential(ConvBN(cin, c7, 1), ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                                ConvBN(c7, s(192), (7, 1), padding=(3, 0)))
        self.bd = nn.Sequential(ConvBN(cin, c7, 1), ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                                ConvBN(c7, c7, (1, 7), padding=(0, 3)), ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                                ConvBN(c7, s(192), (1, 7), padding=(0, 3)))
        self.bp = ConvBN(cin, s(192), 1)
        self.out_channels = 4 * s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(p)], 1)


class BlockD(nn.Module):
    """17 -> 8."""

    def __init__(self, cin: int, s) -> None:
        super().__init__()
        self.b3 = nn.Sequential(ConvBN(cin, s(192), 1), ConvBN(s(192), s(320), 3, stride=2))
        self.b7 = nn.Sequential(ConvBN(cin, s(192), 1), ConvBN(s(192), s(192), (1, 7), padding=(0, 3)),
                                ConvBN(s(192), s(192), (7, 1), padding=(3, 0)), ConvBN(s(192), s(192), 3, stride=2))
        self.out_channels = s(320) + s(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """8x8 with split 1x3/3x1 branches; the last block pools with max instead of average (as the TF graph does)."""

    def __init__(self, cin: int, s, max_pool: bool) -> None:
        super().__init__()
        self.b1 = ConvBN(cin, s(320), 1)
        self.b3 = ConvBN(cin, s(384), 1)
        self.b3a = ConvBN(s(384), s(384), (1, 3), padding=(0, 1))
        self.b3b = ConvBN(s(384), s(384), (3, 1), padding=(1, 0))
        self.bd = nn.Sequential(ConvBN(cin, s(448), 1), ConvBN(s(448), s(384), 3, padding=1))
        self.bda = ConvBN(s(384), s(384), (1, 3), padding=(0, 1))
        self.bdb = ConvBN(s(384), s(384), (3, 1), padding=(1, 0))
        self.bp = ConvBN(cin, s(192), 1)
        self.max_pool = max_pool
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.b3(x)
        bd = self.bd(x)
        if self.max_pool:
            p = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            p = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(bd), self.bdb(bd), self.bp(p)], 1)


class InceptionStandIn(nn.Module):
    def __init__(self, width: float = 1.0) -> None:
        super().__init__()

        def s(c: int) -> int:
            return max(4, int(round(c * width)))

        self.stem = nn.Sequential(ConvBN(3, s(32), 3, stride=2), ConvBN(s(32), s(32), 3),
                                  ConvBN(s(32), s(64), 3, padding=1), nn.MaxPool2d(3, stride=2),
                                  ConvBN(s(64), s(80), 1), ConvBN(s(80), s(192), 3), nn.MaxPool2d(3, stride=2))
        blocks: list[nn.Module] = []
        c = s(192)
        for pool in (s(32), s(64), s(64)):
            blocks.append(BlockA(c, pool, s))
            c = blocks[-1].out_channels
        blocks.append(BlockB(c, s))
        c = blocks[-1].out_channels
        for c7 in (s(128), s(160), s(160), s(192)):
            blocks.append(BlockC(c, c7, s))
            c = blocks[-1].out_channels
        blocks.append(BlockD(c, s))
        c = blocks[-1].out_channels
        for last in (False, True):
            blocks.append(BlockE(c, s, max_pool=last))
            c = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, 1008)
        self.feature_dim = c

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.float()
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x - 128.0) / 128.0
        x = self.blocks(self.stem(x))
        features = x.mean(dim=(2, 3))
        if return_features:
            return features
        return self.fc(features)


def build(width: float = 0.25, seed: int = 0) -> torch.jit.ScriptModule:
    """A randomly initialised stand-in (deterministic for a seed), scripted and in eval mode."""
    torch.manual_seed(seed)
    net = InceptionStandIn(width).eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):  # variance-preserving, so that random features neither vanish nor explode
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return torch.jit.script(net)


def write(path: str | Path, width: float = 0.25, seed: int = 0) -> Path:
    path = Path(path)
    build(width, seed).save(str(path))
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(write(a.out, a.width, a.seed))
