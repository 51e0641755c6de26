"""Weight modulation moved around the convolution, for the fast paths that convolve with the raw weight.

A modulated convolution is linear in each input and output channel, so instead of scaling the weight per call
(styles on its input channels, demodulation and gain on its output channels) the fast paths scale the input by the
styles and the output by ``output_scale``, and keep what they derive from the raw weight in a per-layer cache
(``cached``) while the weight is unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

import torch


def cached(cache: dict | None, name: Hashable, weight: torch.Tensor,
           build: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """``build(weight as float32)``, kept in ``cache[name]`` (None: not kept) while the weight is unchanged: the same
    storage, in-place version and shape."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape))
    entry = None if cache is None else cache.get(name)
    if entry is None or entry[0] != key:
        entry = (key, *build(weight.float()))
        if cache is not None:
            cache[name] = entry
    return entry[1:]


def sum_of_squares(weight: torch.Tensor) -> torch.Tensor:
    """weight [O, I, k, k] -> [O, I]: each filter's sum of squares (for ``output_scale``)."""
    return weight.square().sum(dim=(2, 3))


def output_scale(sumsq: torch.Tensor, styles: torch.Tensor | None, demodulate: bool, gain: float) -> torch.Tensor:
    """The output channels' scale [O]: ``gain``, divided by the modulated weight's norm when demodulating (its sum of
    squares is sum over i of styles[i]^2 * sumsq[o, i]; styles [I], None: ones)."""
    if not demodulate:
        return torch.full((sumsq.shape[0],), float(gain))
    s2 = sumsq.new_ones(sumsq.shape[1]) if styles is None else styles.float().square()
    return ((sumsq @ s2 + 1e-8).rsqrt() * gain).contiguous()
