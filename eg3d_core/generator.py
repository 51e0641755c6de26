"""The tri-plane generator: mapping -> backbone -> tri-planes -> volume rendering -> super-resolution."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .config import GeneratorConfig
from .errors import InputError
from .kernels import dispatch, winograd
from .networks.layers import SynthesisBlock
from .networks.mapping import MappingNetwork
from .networks.superresolution import SuperResolution
from .networks.synthesis import SynthesisNetwork
from .rendering.decoder import Decoder
from .rendering.rays import sample_rays
from .rendering.renderer import render_rays
from .rendering.triplane import PlaneTables, plane_table, sample_planes
from .settings import NOISE_MODES, PRECISIONS


def default_reduced_dtype(device: torch.device) -> torch.dtype:
    """What ``precision="reduced"`` computes in on a device.

    float16 on CUDA (as the original's fp16 layers). On CPU, bfloat16 only where the CPU has native
    bfloat16 arithmetic (AVX512-BF16 / AMX): elsewhere (e.g. AVX2-only CPUs) oneDNN emulates it and
    bfloat16 convolutions run many times *slower* than float32, so reduced precision computes in float32
    there, with faster but less exact convolution algorithms (``kernels.winograd.reduced_precision``).
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


class Backbone(nn.Module):
    """The StyleGAN2 generator that outputs the tri-planes: ``mapping`` + ``synthesis``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.synthesis = SynthesisNetwork(config.w_dim, config.triplane_resolution, 3 * config.triplane_channels,
                                          config.channel_base, config.channel_max, config.backbone_conv_clamp)
        self.mapping = MappingNetwork(config.z_dim, config.c_dim, config.w_dim, self.synthesis.num_ws,
                                      config.mapping_layers)


class Generator(nn.Module):
    """EG3D generator.

    Shapes (FFHQ 512): z [N, 512], c [N, 25] -> ws [N, 14, 512] -> planes [N, 3, 32, 256, 256]
    -> image [N, 3, 512, 512], image_raw [N, 3, 128, 128], image_depth [N, 1, 128, 128].

    ``precision="reduced"`` runs the backbone, decoder and super-resolution under autocast
    (bfloat16 on CPU, float16 on CUDA; on CPUs without native bfloat16, float32 with the larger Winograd
    tiles of ``kernels.winograd.reduced_precision``); ``"fp32"`` matches the original's CPU outputs.
    ``deterministic=True`` renders without random jitter (coarse depths exactly evenly spaced,
    importance samples from u = linspace(0, 1)); ``False`` draws them like the original.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.decoder = Decoder(config.triplane_channels, config.decoder_hidden, config.decoder_output_dim,
                               config.rendering.decoder_lr_mul)
        self.superresolution = SuperResolution(config)
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution = config.img_resolution
        self.num_ws = self.backbone.synthesis.num_ws
        # Dtype used for precision="reduced"; None picks default_reduced_dtype(device).
        self.reduced_dtype: torch.dtype | None = None
        # A camera move renders the same planes again: their table is kept (the viewer alternates two plane tensors).
        self._plane_table = PlaneTables(2)
        self.eval().requires_grad_(False)

    # ----------------------------------------------------------------------------------------
    # helpers

    @contextlib.contextmanager
    def _precision(self, precision: str, device: torch.device) -> Iterator[None]:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        dtype = torch.float32
        if precision == "reduced":
            dtype = self.reduced_dtype or default_reduced_dtype(device)
        if dtype == torch.float32:
            # Reduced precision in float32 (CPUs without native bfloat16): faster, less exact convolution algorithms.
            faster = winograd.reduced_precision() if precision == "reduced" else contextlib.nullcontext()
            with torch.autocast(device.type, enabled=False), faster:
                yield
        else:
            with torch.autocast(device.type, dtype=dtype):
                yield

    def set_memory_format(self, memory_format: torch.memory_format | None) -> Generator:
        """Layout of the convolution activations in every block: ``torch.channels_last``, ``torch.contiguous_format``
        (the plain layout), or None for each block's default (channels-last from 32x32 up, where it is faster on
        CPU). Results agree to rounding."""
        for m in self.modules():
            if isinstance(m, SynthesisBlock):
                m.memory_format = m.default_memory_format() if memory_format is None else memory_format
        return self

    def _check(self, name: str, x: torch.Tensor, shape: tuple) -> None:
        want = [s for s in shape]
        if x.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, x.shape, strict=True)):
            shown = ", ".join("N" if w is None else str(w) for w in want)
            raise InputError(f"{name} must have shape [{shown}], got {list(x.shape)}")

    # ----------------------------------------------------------------------------------------
    # public API

    def mapping(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [N, z_dim], c [N, 25] conditioning camera -> ws [N, num_ws, w_dim]."""
        self._check("z", z, (None, self.z_dim))
        self._check("c", c, (z.shape[0], self.c_dim))
        r = self.config.rendering
        if r.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * r.c_scale, truncation_psi, truncation_cutoff)

    def planes(self, ws: torch.Tensor, noise_mode: str = "const", precision: str = "fp32") -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> tri-planes [N, 3, C, H, W] (float32)."""
        self._check("ws", ws, (None, self.num_ws, self.w_dim))
        if noise_mode not in NOISE_MODES:
            raise InputError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        with self._precision(precision, ws.device):
            img = self.backbone.synthesis(ws, noise_mode)
        n, _, h, w = img.shape
        return img.float().reshape(n, 3, self.config.triplane_channels, h, w)

    def sample_planes(self, coords: torch.Tensor, planes: torch.Tensor, precision: str = "fp32",
                      table: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Raw decoder outputs at world points from cached planes.

        coords [N, M, 3], planes [N, 3, C, H, W] -> {"sigma": [N, M, 1] (before activation), "rgb": [N, M, 32]}.
        ``table`` (``rendering.triplane.plane_table(planes)``) saves re-laying out the planes on repeated calls.
        """
        box_warp = self.config.rendering.box_warp
        with self._precision(precision, coords.device):
            out = dispatch.field(coords, planes, box_warp, self.decoder, table)
            return out if out is not None else self.decoder(sample_planes(planes, coords.float(), box_warp, table))

    def sample(self, coords: torch.Tensor, ws: torch.Tensor, noise_mode: str = "const",
               precision: str = "fp32") -> dict[str, torch.Tensor]:
        """Raw decoder outputs at world points [N, M, 3] for latents ws (the original's ``sample_mixed``)."""
        self._check("coords", coords, (ws.shape[0], None, 3))
        return self.sample_planes(coords, self.planes(ws, noise_mode, precision), precision)

    def render(self, planes: torch.Tensor, c: torch.Tensor, neural_rendering_resolution: int | None = None,
               deterministic: bool = True, precision: str = "fp32", depth_resolution: int | None = None,
               depth_resolution_importance: int | None = None,
               return_opacity: bool = False) -> tuple[torch.Tensor, ...]:
        """Volume-render cached planes from cameras c [N, 25].

        Returns the feature image [N, 32, r, r] (first 3 channels = raw RGB, in about [-1, 1]) and the
        depth image [N, 1, r, r] (distance along the ray, world units); with ``return_opacity`` also the opacity
        [N, 1, r, r] (each ray's summed compositing weights: 0 empty space, 1 solid).
        """
        r = self.config.rendering
        res = neural_rendering_resolution or r.neural_rendering_resolution
        self._check("c", c, (planes.shape[0], 25))
        origins, dirs = sample_rays(c.float(), res)
        # planes that carry a gradient are laid out afresh: a cached table would keep their autograd graph alive
        # until the next render (an inversion step's whole backbone)
        table = plane_table(planes) if planes.requires_grad and torch.is_grad_enabled() else self._plane_table(planes)
        feats, depth, wsum = render_rays(
            lambda pts: self.sample_planes(pts, planes, precision, table), origins, dirs, r.ray_start, r.ray_end,
            depth_resolution or r.depth_resolution,
            r.depth_resolution_importance if depth_resolution_importance is None else depth_resolution_importance,
            r.white_back, deterministic)
        n = planes.shape[0]

        def image(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).reshape(n, -1, res, res).contiguous()

        return (image(feats), image(depth), image(wsum)) if return_opacity else (image(feats), image(depth))

    def super_resolve(self, features: torch.Tensor, ws: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """features [N, 32, r, r], ws [N, num_ws, w_dim] -> image [N, 3, S, S] (float32)."""
        with self._precision(precision, features.device):
            return self.superresolution(features[:, :3], features, ws).float()

    def render_planes(self, planes: torch.Tensor, ws: torch.Tensor, c: torch.Tensor,
                      neural_rendering_resolution: int | None = None, noise_mode: str = "const",
                      deterministic: bool = True, precision: str = "fp32", depth_resolution: int | None = None,
                      depth_resolution_importance: int | None = None,
                      sr_precision: str | None = None) -> dict[str, torch.Tensor]:
        """Like ``synthesis`` but from cached planes: a camera move costs rendering + super-resolution only.

        ``noise_mode`` is accepted for symmetry; it only affects the backbone, which is not run here.
        """
        del noise_mode
        features, depth, opacity = self.render(planes, c, neural_rendering_resolution, deterministic, precision,
                                               depth_resolution, depth_resolution_importance, return_opacity=True)
        image = self.super_resolve(features, ws, precision if sr_precision is None else sr_precision)
        return {"image": image, "image_raw": features[:, :3].clone(), "image_depth": depth, "image_mask": opacity}

    def synthesis(self, ws: torch.Tensor, c: torch.Tensor, neural_rendering_resolution: int | None = None,
                  noise_mode: str = "const", deterministic: bool = True, precision: str = "fp32",
                  depth_resolution: int | None = None, depth_resolution_importance: int | None = None,
                  sr_precision: str | None = None) -> dict[str, torch.Tensor]:
        """ws [N, num_ws, w_dim], c [N, 25] rendering camera -> {"image", "image_raw", "image_depth", "image_mask"}
        (image_mask: opacity [N, 1, r, r], 0 where a ray meets nothing).

        ``precision`` applies to every stage unless ``sr_precision`` (None: the same) sets the super-resolution's
        apart: e.g. ``precision="reduced", sr_precision="fp32"`` keeps the final image free of the slight blur that
        MMagic reports for fp16 super-resolution on FFHQ, while the backbone and the renderer run reduced.
        """
        return self.render_planes(self.planes(ws, noise_mode, precision), ws, c, neural_rendering_resolution,
                                  noise_mode, deterministic, precision, depth_resolution,
                                  depth_resolution_importance, sr_precision)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, **synthesis_kwargs) -> dict[str, torch.Tensor]:
        """Mapping then synthesis; like the original, c serves as both conditioning and rendering camera."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, c, **synthesis_kwargs)
