"""The viewer's render path: request -> images, with tri-planes cached per latent (``eg3d_core.latents.PlaneCache``).
No GL; used by the benchmark.

Stages (timed separately for the performance panel): mapping (z -> ws, cheap), backbone (ws -> tri-planes, the
expensive part, skipped when cached), rendering (volume rendering at the request's resolution and samples per ray),
super-resolution (skipped for previews unless asked for).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import eg3d_core
from eg3d_core.cameras import camera, camera_defaults, focal_from_fov
from eg3d_core.latents import PlaneCache, generator_device, map_seeds
from eg3d_core.visualize import depth_to_color, to_uint8

from .directions import Directions
from .requests import CameraSpec, LatentSpec, RenderRequest


class Cancelled(Exception):
    """A cancellable render was abandoned because a newer request arrived."""


@dataclass
class RenderResult:
    """uint8 HWC images; ``image`` is None when super-resolution was skipped (previews)."""

    request: RenderRequest
    image: np.ndarray | None
    raw: np.ndarray
    depth: np.ndarray
    depth_values: np.ndarray  # float32 [r, r], distance along the ray
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage
    planes_cached: bool = False
    final: bool = True  # False: the volume render of a frame whose super-resolution is still running
    ws: torch.Tensor | None = field(default=None, repr=False)  # the latent rendered, [1, num_ws, w_dim] on the CPU


@torch.no_grad()
def compose_ws(G: eg3d_core.Generator, spec: LatentSpec, directions: Directions | None = None) -> torch.Tensor:
    """The latent of a spec: [1, num_ws, w_dim]. A custom latent (``spec.custom``) takes seed A's place: seed B,
    style mixing and directions apply to it as to a seed's ws (psi and the conditioning pose do not).

    Every seed (A, B, style-mix) is mapped in one pass (``latents.map_seeds``) with the same conditioning camera;
    the original visualizer conditions only one of them and maps the others with c = 0. The conditioning camera keeps
    the model's default focal, the one all training labels carry, whatever the rendering FOV.
    """
    device = generator_device(G)
    seeds = [] if spec.custom is not None else [spec.seed]
    if spec.mix > 0:
        seeds.append(spec.seed_b)
    if spec.stylemix_seed is not None:
        seeds.append(spec.stylemix_seed)
    c = camera(camera_defaults(G.config), yaw=spec.cond_yaw, pitch=spec.cond_pitch)
    ws = map_seeds(G, seeds, c, spec.psi, spec.cutoff, device) if seeds else None
    if spec.custom is not None:
        custom = spec.custom.ws.to(device=device, dtype=torch.float32)
        ws = custom if ws is None else torch.cat([custom, ws])
    assert ws is not None
    w = ws[0:1]
    if spec.mix > 0:
        w = torch.lerp(w, ws[1:2], spec.mix)
    if spec.stylemix_seed is not None:
        w = w.clone()
        w[:, spec.stylemix_layer:] = ws[-1:, spec.stylemix_layer:]
    if directions is not None and spec.directions:
        lo, hi = spec.direction_layers
        w = w.clone()
        w[:, lo:hi] += directions.offset(spec.directions).to(device)
    return w


def render_camera(G: eg3d_core.Generator, spec: CameraSpec) -> torch.Tensor:
    """Camera vector [1, 25] of a camera spec."""
    return camera(camera_defaults(G.config), yaw=spec.yaw, pitch=spec.pitch, radius=spec.radius,
                  focal=focal_from_fov(spec.fov), pivot=spec.pivot).to(generator_device(G))


class ViewerRenderer:
    """Renders requests for one generator, caching (ws, planes) for the last few latents."""

    def __init__(self, G: eg3d_core.Generator, directions: Directions | None = None, cache_size: int = 6) -> None:
        self.G = G
        self.directions = directions
        self.planes = PlaneCache(G, cache_size)
        self._local = threading.local()
        self._device = generator_device(G)
        # Cancellation points: a check before every module call. Module boundaries are the only places where the
        # generator's public API can be interrupted; the checks cost microseconds against milliseconds per module.
        self._hooks = [m.register_forward_pre_hook(self._check_cancel) for m in G.modules()]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self.planes.clear()

    def _check_cancel(self, module: torch.nn.Module, args: tuple) -> None:
        stop = getattr(self._local, "stop", None)
        if stop is not None and stop():
            raise Cancelled()

    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def set_directions(self, directions: Directions | None) -> None:
        self.directions = directions
        self.planes.clear()

    @torch.no_grad()
    def latent(self, spec: LatentSpec, precision: str = "fp32", timings: dict[str, float] | None = None,
               plane_scale: int = 1) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(ws, planes, cached) for a latent spec at a precision; computes and caches them when new. ``plane_scale``
        > 1 gives the planes average-pooled by that factor (kept with the entry)."""
        entry, cached = self.planes.get(spec, lambda: compose_ws(self.G, spec, self.directions), spec.noise_mode,
                                        precision, timings)
        return entry.ws, entry.pooled(plane_scale), cached

    @torch.no_grad()
    def render(self, request: RenderRequest, should_stop: Callable[[], bool] | None = None,
               on_partial: Callable[[RenderResult], None] | None = None) -> RenderResult:
        """Render a request. Raises ``Cancelled`` if ``should_stop`` turns true during a cancellable request.

        ``on_partial`` receives the volume-rendered frame (``final=False``) before super-resolution starts, so a
        slow super-resolution (seconds for FFHQ on a CPU) does not leave the preview on screen meanwhile.
        """
        self._local.stop = should_stop if request.cancellable else None
        try:
            return self._render(request, on_partial)
        finally:
            self._local.stop = None

    def _render(self, request: RenderRequest, on_partial: Callable[[RenderResult], None] | None) -> RenderResult:
        q, s = request.quality, request.quality.settings
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        ws, planes, cached = self.latent(request.scene.latent, s.precision, timings, q.plane_scale)
        c = render_camera(self.G, request.scene.camera)
        t0 = time.perf_counter()
        feats, depth, opacity = self.G.render(planes, c, **s.render_kwargs(self.G.config), return_opacity=True)
        self._sync()
        t1 = time.perf_counter()
        # The depth picture's colour range spans the object only, and empty space fades to white (where the raw
        # render's depth is the far end of the ray interval, not a surface).
        raw, depth_values = to_uint8(feats[0, :3]), depth[0, 0].float().cpu().numpy()
        depth_rgb = depth_to_color(depth[0], opacity[0])
        if s.superres and on_partial is not None:
            on_partial(RenderResult(request, None, raw, depth_rgb, depth_values, dict(timings, render=(t1 - t0) * 1e3),
                                    cached, final=False))
        image = None
        if s.superres:
            image = self.G.super_resolve(feats, ws, s.superres_precision)
            self._sync()
        t2 = time.perf_counter()
        out = RenderResult(request, to_uint8(image[0]) if image is not None else None, raw, depth_rgb, depth_values,
                           planes_cached=cached, ws=ws.detach().to("cpu", torch.float32))
        t3 = time.perf_counter()
        timings.update(render=(t1 - t0) * 1e3, superres=(t2 - t1) * 1e3 if s.superres else 0.0, convert=(t3 - t2) * 1e3,
                       total=(t3 - t_start) * 1e3)
        out.timings = timings
        return out
