"""Two-pass volume renderer: stratified coarse samples, then importance samples from their weights."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from ..kernels import dispatch
from ..runtime import may_spread_work
from .marcher import composite_weights, march

# points [N, M, 3] -> {"sigma": [N, M, 1], "rgb": [N, M, C]}
FieldFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
T = TypeVar("T")

# Field queries per chunk of rays: small enough for the decoder's activations to stay in the CPU caches,
# large enough for the per-operation overhead (Python, dispatch) to stay small.
CHUNK_POINTS = 32768


def stratified_depths(n: int, rays: int, start: float, end: float, samples: int, jitter: bool,
                      device: torch.device) -> torch.Tensor:
    """Evenly spaced depths from start to end (both included) -> [N, R, S, 1]; ``jitter`` adds U[0, step)."""
    depths = torch.linspace(start, end, samples, device=device).reshape(1, 1, samples, 1).expand(n, rays, samples, 1)
    if jitter:
        depths = depths + torch.rand(n, rays, samples, 1, device=device) * ((end - start) / (samples - 1))
    return depths


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, samples: int, deterministic: bool,
                      u: torch.Tensor | None = None) -> torch.Tensor:
    """Draw depths from the smoothed coarse weights by inverse-CDF sampling.

    depths [N, R, S, 1], weights [N, R, S-1, 1] -> [N, R, samples, 1] (sorted when deterministic).
    The weights are max-pooled then average-pooled (kernel 2) and floored by 0.01. Bins are the
    midpoints of the coarse depths; like the original, the pdf uses the interior weights only, so the
    last midpoint is never an upper bin edge. Deterministic mode uses u = linspace(0, 1); otherwise u is
    drawn here, or taken from ``u`` [N*R, samples] (uniform draws made beforehand, e.g. for all rays at once).
    """
    n, r, s, _ = depths.shape
    z = depths.reshape(n * r, s)
    w = weights.reshape(n * r, 1, s - 1).float()
    w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1).reshape(n * r, s - 1) + 0.01
    bins = 0.5 * (z[:, :-1] + z[:, 1:])  # [NR, S-1]
    pdf_w = w[:, 1:-1] + 1e-5  # [NR, S-3]
    pdf = pdf_w / pdf_w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # [NR, S-2]
    if deterministic:
        u = torch.linspace(0, 1, samples, device=z.device).expand(n * r, samples).contiguous()
    elif u is None:
        u = torch.rand(n * r, samples, device=z.device)
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp_min(0)
    above = idx.clamp_max(s - 3)
    cdf0, cdf1 = cdf.gather(1, below), cdf.gather(1, above)
    bin0, bin1 = bins.gather(1, below), bins.gather(1, above)
    denom = cdf1 - cdf0
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return (bin0 + (u - cdf0) / denom * (bin1 - bin0)).reshape(n, r, samples, 1)


def _points(origins: torch.Tensor, dirs: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """origins/dirs [N, R, 3], depths [N, R, S, 1] -> points [N, R*S, 3]."""
    return (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(origins.shape[0], -1, 3)


def render_rays_reference(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, ray_start: float, ray_end: float,
                          depth_resolution: int, depth_resolution_importance: int, white_back: bool,
                          deterministic: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The plain path, as the original computes it: all rays at once, merged samples sorted with their colours.

    Same arguments and results as ``render_rays`` (kept as the reference that tests and benchmarks compare with).
    """
    n, r, _ = origins.shape
    depths = stratified_depths(n, r, ray_start, ray_end, depth_resolution, not deterministic, origins.device)
    out = field(_points(origins, dirs, depths))
    colors = out["rgb"].reshape(n, r, depth_resolution, -1)
    densities = out["sigma"].reshape(n, r, depth_resolution, 1)
    if depth_resolution_importance > 0:
        weights = composite_weights(densities, depths)
        fine = importance_depths(depths, weights, depth_resolution_importance, deterministic)
        out = field(_points(origins, dirs, fine))
        depths, order = torch.sort(torch.cat([depths, fine], dim=-2), dim=-2)
        colors = torch.cat([colors, out["rgb"].reshape(n, r, depth_resolution_importance, -1)], dim=-2)
        densities = torch.cat([densities, out["sigma"].reshape(n, r, depth_resolution_importance, 1)], dim=-2)
        colors = colors.gather(-2, order.expand(-1, -1, -1, colors.shape[-1]))
        densities = densities.gather(-2, order)
    rgb, depth, weights = march(colors, densities, depths, white_back)
    return rgb, depth, weights.sum(dim=2)


def _render_chunk(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, depths: torch.Tensor, samples_fine: int,
                  deterministic: bool, u: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Both passes for a chunk of rays, compositing the colours without sorting them.

    origins/dirs [N, R, 3], coarse depths [N, R, S, 1], u [N*R, samples_fine] or None ->
    unnormalised features [N, R, C] (before the white background and the [-1, 1] mapping),
    weighted depth sum [N, R, 1], weight sum [N, R, 1]; the sorted depths' min and max come back as the last two.

    Only the scalar densities and depths are sorted. The composite of interval midpoint colours,
    sum_k w_k (c_k + c_k+1) / 2, equals sum_j c_j (w_j-1 + w_j) / 2 over the sorted samples j: these per-sample
    weights are scattered back to the unsorted coarse and fine samples, whose colours are then reduced in place.
    """
    n, r, s, _ = depths.shape
    out = field(_points(origins, dirs, depths))
    colors = [out["rgb"].reshape(n, r, s, -1)]
    densities = out["sigma"].reshape(n, r, s, 1)
    order = None
    if samples_fine > 0:
        fine = dispatch.importance(depths, densities, samples_fine, deterministic, u)
        if fine is None:
            fine = importance_depths(depths, composite_weights(densities, depths), samples_fine, deterministic, u)
        out = field(_points(origins, dirs, fine))
        colors.append(out["rgb"].reshape(n, r, samples_fine, -1))
        fast = dispatch.march(depths, densities, colors[0], fine, out["sigma"].reshape(n, r, samples_fine, 1), colors[1])
        if fast is not None:  # the backend's compositing, without the sort below
            return (*fast, torch.minimum(depths.min(), fine.min()), torch.maximum(depths.max(), fine.max()))
        depths, order = torch.sort(torch.cat([depths, fine], dim=-2), dim=-2)
        densities = torch.cat([densities, out["sigma"].reshape(n, r, samples_fine, 1)], dim=-2).gather(-2, order)
    weights = composite_weights(densities, depths)  # [N, R, S-1, 1] on the sorted samples
    padded = F.pad(weights, [0, 0, 1, 1])
    per_sample = (padded[:, :, :-1] + padded[:, :, 1:]) / 2  # [N, R, S, 1]
    if order is not None:
        per_sample = torch.empty_like(per_sample).scatter_(-2, order, per_sample)
    rgb, start = 0, 0
    for c in colors:
        rgb = rgb + (per_sample[:, :, start:start + c.shape[2]].transpose(-1, -2) @ c).squeeze(-2)
        start += c.shape[2]
    depth_sum = torch.sum(weights * ((depths[:, :, :-1] + depths[:, :, 1:]) / 2), dim=-2)
    return rgb, depth_sum, weights.sum(dim=2), depths.min(), depths.max()


def _map_chunks(job: Callable[[int], T], starts: list[int], workers: int) -> list[T]:
    """[job(start) for start in starts], spread over ``workers`` single-threaded Python threads.

    A chunk is many small tensor operations. Run with torch's intra-op threads, each of them wakes the other cores
    (tens of microseconds per operation when idle threads sleep, as with OMP_WAIT_POLICY=PASSIVE) and they scale
    poorly; run single-threaded side by side (torch releases the GIL inside operations) they are faster
    (benchmarks/RESULTS.md). ``torch.set_num_threads(1)`` inside a worker affects that thread only (and threads
    started meanwhile); each worker restores the caller's count before it ends. Inference only: the workers run under
    ``no_grad``, with the caller's backend (``kernels.dispatch.use``).
    """
    if workers <= 1 or len(starts) <= 1:
        return [job(a) for a in starts]
    threads = torch.get_num_threads()
    results: list = [None] * len(starts)
    pending = iter(range(len(starts)))
    lock = threading.Lock()
    errors: list[BaseException] = []
    backend = dispatch.current()

    def work() -> None:
        torch.set_num_threads(1)
        try:
            with torch.no_grad(), dispatch.use(backend):
                while not errors:
                    with lock:
                        k = next(pending, None)
                    if k is None:
                        return
                    results[k] = job(starts[k])
        except BaseException as e:  # re-raised in the caller
            errors.append(e)
        finally:
            torch.set_num_threads(threads)

    pool = [threading.Thread(target=work, name=f"eg3d-render-{k}") for k in range(min(workers, len(starts)))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


def render_rays(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, ray_start: float, ray_end: float,
                depth_resolution: int, depth_resolution_importance: int, white_back: bool,
                deterministic: bool = True, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render rays through a radiance field.

    origins, dirs [N, R, 3] -> features [N, R, C], depth [N, R, 1], weight sum [N, R, 1].
    Rays are rendered in chunks of about ``CHUNK_POINTS`` field queries, which keeps the intermediates in the CPU
    caches; results equal ``render_rays_reference`` up to rounding. Random draws happen in the original's order
    (coarse jitter for all rays, then importance u for all rays), so chunking does not change them.
    ``field`` is called once per chunk (twice with importance sampling), so per-render setup such as
    ``plane_table`` belongs outside it. ``workers``: chunks rendered in parallel by single-threaded workers (see
    ``_map_chunks``); None uses ``torch.get_num_threads()`` when called from the main thread (or inside
    ``runtime.spread_work``) on CPU without autograd, else 1 (the chunks in turn, on the caller's threads). With
    several workers ``field`` must be thread-safe and set up its own autocast, which is per thread.
    """
    n, r, _ = origins.shape
    if workers is None:
        # Parallel workers only where the calling thread may spread its work (the main thread, or one inside
        # runtime.spread_work), on CPU, without autograd. Concurrent callers (a server's request threads) keep the
        # cores busy already, and worker threads spawned for each of their calls would each hold a malloc arena (the
        # resident memory of a web server grew with every burst of requests).
        cpu = origins.device.type == "cpu"
        workers = torch.get_num_threads() if may_spread_work() and cpu and not torch.is_grad_enabled() else 1
    depths = stratified_depths(n, r, ray_start, ray_end, depth_resolution, not deterministic, origins.device)
    u = None
    if depth_resolution_importance > 0 and not deterministic:
        u = torch.rand(n * r, depth_resolution_importance, device=origins.device).reshape(n, r, -1)
    step = max(1, CHUNK_POINTS // (n * max(depth_resolution, depth_resolution_importance)))

    def chunk(a: int) -> tuple[torch.Tensor, ...]:
        b = min(a + step, r)
        uc = None if u is None else u[:, a:b].reshape(-1, depth_resolution_importance).contiguous()
        return _render_chunk(field, origins[:, a:b], dirs[:, a:b], depths[:, a:b], depth_resolution_importance,
                             deterministic, uc)

    parts = _map_chunks(chunk, list(range(0, r, step)), workers)
    rgb, depth_sum, total = (torch.cat([p[k] for p in parts], dim=1) for k in range(3))
    lo = torch.stack([p[3] for p in parts]).min()
    hi = torch.stack([p[4] for p in parts]).max()
    depth = torch.nan_to_num(depth_sum / total, float("inf")).clamp(lo, hi)
    if white_back:
        rgb = rgb + 1 - total
    return rgb * 2 - 1, depth, total
