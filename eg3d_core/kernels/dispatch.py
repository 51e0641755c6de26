"""The one point where the model's operations meet a backend.

The model modules (``networks``, ``rendering``, ``generator``) are the reference PyTorch maths. Each operation that
a backend may run faster calls the function of the same name here first; it returns the backend's result, or None,
and then the caller runs its reference code. Backends:

* ``"ref"``: nothing here; the reference PyTorch code everywhere (any device and dtype, autograd, autocast).
* ``"cpu"`` (the default): ``kernels.cpu``, float32 inference on the CPU through compiled kernels (x86-64 AVX2,
  unless ``EG3D_NATIVE=0``), oneDNN's fused operations and the memory layouts PyTorch's CPU kernels read fastest.
  Anything else (other devices or dtypes, autograd, autocast) it leaves to the reference code.
* ``"grad"``: ``kernels.grad``, the reference maths arranged for gradient steps to the latent (the inversion's): the
  modulated convolutions keep the modulation off the weight, so backward passes compute no weight gradients.

``use(name)`` chooses the backend for a block of code in this thread (or context); ``EG3D_BACKEND`` sets the
default. Every backend equals the reference to float32 rounding (tests/test_parity.py runs both).
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import torch
from torch import nn

BACKENDS = ("ref", "cpu", "grad")
# name -> module implementing the operations below (None: the reference code)
_MODULES = {"ref": None, "cpu": "eg3d_core.kernels.cpu", "grad": "eg3d_core.kernels.grad"}
_CHOICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("eg3d_backend", default=None)
_loaded: dict[str, ModuleType] = {}


def current() -> str:
    """The backend in effect here: the innermost ``use``, else ``$EG3D_BACKEND``, else ``"cpu"``."""
    name = _CHOICE.get()
    if name is None:
        name = os.environ.get("EG3D_BACKEND") or "cpu"
        if name not in BACKENDS:
            raise ValueError(f"EG3D_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Run the enclosed code with backend ``name`` (see ``BACKENDS``) in this thread or context; threads started
    inside it start from the default (the renderer hands its choice to its chunk workers)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    token = _CHOICE.set(name)
    try:
        yield
    finally:
        _CHOICE.reset(token)


def _backend() -> ModuleType | None:
    name = current()
    module = _loaded.get(name)
    if module is None and _MODULES[name] is not None:
        module = _loaded[name] = importlib.import_module(_MODULES[name])
    return module


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, up: bool,
                     noise: torch.Tensor | None, bias: torch.Tensor | None, gain: float, activate: bool,
                     limit: float | None, cache: dict | None) -> torch.Tensor | None:
    """``networks.layers.modulated_conv2d`` (same arguments) by the backend, or None."""
    backend = _backend()
    return None if backend is None else backend.modulated_conv2d(x, weight, styles, demodulate, up, noise, bias, gain,
                                                                 activate, limit, cache)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigmoid: bool) -> torch.Tensor | None:
    """``networks.layers.linear`` by the backend, or None."""
    backend = _backend()
    return None if backend is None else backend.linear(x, weight, bias, sigmoid)


def softplus_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor | None:
    """``networks.layers.softplus_linear`` by the backend, or None."""
    backend = _backend()
    return None if backend is None else backend.softplus_linear(x, weight, bias)


def field(coords: torch.Tensor, planes: torch.Tensor, box_warp: float, decoder: nn.Module,
          table: torch.Tensor | None) -> dict[str, torch.Tensor] | None:
    """``decoder(rendering.triplane.sample_planes(planes, coords, box_warp, table))`` by the backend, or None."""
    backend = _backend()
    return None if backend is None else backend.field(coords, planes, box_warp, decoder, table)


def march(depths: torch.Tensor, densities: torch.Tensor, colors: torch.Tensor, fine_depths: torch.Tensor,
          fine_densities: torch.Tensor, fine_colors: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The compositing of a chunk's coarse and fine samples (see ``rendering.renderer._render_chunk``) by the
    backend, or None."""
    backend = _backend()
    return None if backend is None else backend.march(depths, densities, colors, fine_depths, fine_densities,
                                                      fine_colors)


def importance(depths: torch.Tensor, densities: torch.Tensor, samples: int, deterministic: bool,
               u: torch.Tensor | None) -> torch.Tensor | None:
    """``rendering.renderer.importance_depths(depths, composite_weights(densities, depths), samples, deterministic,
    u)`` by the backend, or None."""
    backend = _backend()
    return None if backend is None else backend.importance(depths, densities, samples, deterministic, u)
