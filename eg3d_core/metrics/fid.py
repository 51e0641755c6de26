"""FID50k and FID50k-Camera of a generator against real images, spread over ``torchrun`` processes.

The two protocols of the EG3D papers and MMagic's configs (``camera``):

* ``dataset`` (FID50k): each sample's camera is a dataset label drawn uniformly with replacement; it serves as
  both the pose conditioning and the rendering camera.
* ``random`` (FID50k-Camera): each sample's camera is drawn from the model's camera distribution
  (``fid_camera``), again used for conditioning and rendering.

Sample ``i`` uses seed ``seed + i``: ``RandomState(seed + i)`` draws its latent (the same latent as
``eg3d samples --seeds`` gives that seed) and then its camera. Backbone noise and stochastic ray jitter come from
a torch generator seeded per chunk of ``batch_size`` samples. Fake images are quantised as the original metrics
do (``x * 127.5 + 128``, clamped, truncated to uint8) and real ones are read as RGB uint8; both go through the
same Inception network (``inception.py``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cameras import CameraDistribution, camera_distribution
from ..errors import InputError
from ..generator import Generator
from ..labels import read_labels
from ..runtime import cache_dir as runtime_cache_dir
from ..settings import RenderSettings
from ..visualize import SEED_LIMIT
from .frechet import FeatureStats, feature_stats, frechet_distance, load_stats, save_stats
from .images import ImageDataset, open_dataset
from .inception import Inception
from .sharding import Distributed, RunFolder, chunk_range, sharded_features

CAMERA_MODES = ("dataset", "random")
UINT8_RULE = "clamp(x * 127.5 + 128, 0, 255), truncated to uint8"
# Stands for the toolkit's cache folder (``runtime.cache_dir()``), resolved when used: ``$EG3D_CACHE_DIR/fid`` etc.
DEFAULT_CACHE = "default"


def statistics_folder(cache_dir: str | os.PathLike[str] | None) -> Path | None:
    """Where real-image statistics are cached: ``DEFAULT_CACHE`` -> ``runtime.cache_dir() / "fid"``, None -> no cache."""
    if cache_dir is None:
        return None
    if cache_dir == DEFAULT_CACHE:
        return runtime_cache_dir() / "fid"
    return Path(cache_dir).expanduser()


def fid_camera(G: Generator, mmagic_camera: dict[str, Any] | None = None) -> CameraDistribution:
    """The camera distribution of FID50k-Camera for a model (an MMagic camera; ``CameraDistribution.draw`` samples it).

    From an MMagic config's ``camera`` section when given (``parse_mmagic_camera``). Otherwise MMagic's: face-like
    models (FFHQ/AFHQ) get yaw ~ N(pi/2, 0.35), v ~ N(pi/2 - 0.05, 0.25), fov 18.837 deg, around the model's
    average radius and pivot; ShapeNet-like models (zeroed pose conditioning, white background) get cameras
    uniformly over the whole sphere around the model's pivot at its average radius, with its default focal.
    """
    cam = camera_distribution(G.config, mmagic_camera)
    if mmagic_camera is None and cam.kind == "uniform":
        cam = replace(cam, horizontal_mean=math.pi, horizontal_std=math.pi, vertical_mean=math.pi / 2,
                      vertical_std=math.pi / 2)
    return cam


def original_render() -> RenderSettings:
    """How the original metrics render: random backbone noise and jittered depth samples, at the model's resolution."""
    return RenderSettings(noise_mode="random", deterministic=False)


@dataclass(frozen=True)
class FIDSettings:
    """Everything besides the model, the real images and the network that decides the number.

    ``truncation_cutoff`` N truncates the first N ws, None (the default) all of them, 0 none (as everywhere).
    """

    num_samples: int = 50000
    camera: str = "dataset"
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    seed: int = 0
    batch_size: int = 8
    render: RenderSettings = field(default_factory=original_render)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise InputError(f"num_samples must be >= 2, got {self.num_samples}")
        if self.camera not in CAMERA_MODES:
            raise InputError(f"camera must be one of {', '.join(CAMERA_MODES)}, got {self.camera!r}")
        if not isinstance(self.render, RenderSettings) or not self.render.superres:
            raise InputError("FID needs render settings (RenderSettings) that run the super-resolution")
        if self.truncation_cutoff is not None and self.truncation_cutoff < 0:
            raise InputError(f"truncation_cutoff must be >= 0 (or None: all ws), got {self.truncation_cutoff}")
        if self.batch_size < 1 or self.threads < 1:
            raise InputError("batch_size and threads must be >= 1")
        if not 0 <= self.seed or self.seed + self.num_samples > SEED_LIMIT:
            raise InputError(f"seeds {self.seed}..{self.seed + self.num_samples - 1} must lie in [0, 2**32)")
        if not 0.0 <= self.truncation_psi <= 2.0:
            raise InputError(f"truncation_psi must be in [0, 2], got {self.truncation_psi}")

    @property
    def metric(self) -> str:
        n = f"{self.num_samples // 1000}k" if self.num_samples % 1000 == 0 else str(self.num_samples)
        return f"fid{n}" + ("_camera" if self.camera == "random" else "")


@dataclass
class RealImages:
    """Where the real statistics come from: a dataset (images + labels) or a precomputed ``.npz``."""

    source: str
    dataset: ImageDataset | None = None
    stats: FeatureStats | None = None
    labels: np.ndarray | None = None


def open_real(source: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None) -> RealImages:
    """A dataset folder/zip or a statistics ``.npz``; ``labels`` (a ``dataset.json``) supplies cameras for the
    ``dataset`` protocol when the source has none. Raises InputError."""
    path = Path(source).expanduser()
    real = RealImages(source=str(path))
    if path.suffix.lower() == ".npz" and path.is_file():
        real.stats, _ = load_stats(path)
    else:
        real.dataset = open_dataset(path)
        real.labels = real.dataset.labels
    if labels is not None:
        _, pairs = read_labels(labels)
        real.labels = np.asarray([v for _, v in pairs], dtype=np.float32)
    return real


def model_fingerprint(G: Generator) -> str:
    """SHA-256 of the config and every weight (identifies the model in shard folders and results)."""
    h = hashlib.sha256(json.dumps(G.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    return (image.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


class FakeSampler:
    """Renders the uint8 images of any range of sample indices, reproducibly (see the module docstring)."""

    def __init__(self, G: Generator, settings: FIDSettings, labels: np.ndarray | None,
                 distribution: CameraDistribution | None, device: torch.device) -> None:
        if settings.camera == "dataset" and (labels is None or len(labels) == 0):
            raise InputError("camera 'dataset' (FID50k) needs the dataset's camera labels: give a dataset with a "
                             "dataset.json, or the labels file, or use camera 'random'")
        if settings.camera == "random" and distribution is None:
            raise InputError("camera 'random' needs a camera distribution")
        self.G, self.s, self.labels, self.distribution, self.device = G, settings, labels, distribution, device

    def draws(self, items: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [n, z_dim] and cameras [n, 25] of samples ``items``."""
        zs, cams, angles = [], [], []
        for i in items:
            rs = np.random.RandomState(self.s.seed + i)
            zs.append(rs.randn(self.G.z_dim))
            if self.s.camera == "dataset":
                cams.append(self.labels[rs.randint(len(self.labels))])
            else:
                angles.append(self.distribution.draw(rs))
        z = torch.from_numpy(np.stack(zs)).float()
        if self.s.camera == "dataset":
            c = torch.from_numpy(np.stack(cams)).float()
        else:
            yaw, pitch = (np.array(a) for a in zip(*angles, strict=True))
            c = self.distribution.cameras(yaw, pitch).float()
        return z, c

    @torch.no_grad()
    def images(self, chunk: int, items: range) -> torch.Tensor:
        """uint8 [n, 3, S, S] for the samples of ``chunk`` (its torch RNG seeded from (seed, chunk))."""
        z, c = self.draws(items)
        z, c = z.to(self.device), c.to(self.device)
        rng_seed = int(np.random.SeedSequence([self.s.seed, chunk]).generate_state(1, np.uint64)[0] >> 1)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(rng_seed)
            ws = self.G.mapping(z, c, self.s.truncation_psi, self.s.truncation_cutoff)
            out = self.G.synthesis(ws, c, **self.s.render.synthesis_kwargs(self.G.config))
        return _to_uint8(out["image"])


@dataclass
class FIDResult:
    """The distance (None on ranks other than 0) and the JSON-ready record of how it was computed."""

    fid: float | None
    record: dict[str, Any]


def _bar(ctx: Distributed, num_items: int, batch_size: int, desc: str, enabled: bool) -> Callable[[int, bool], None]:
    bar = None
    if enabled and ctx.is_main:
        from tqdm import tqdm

        suffix = f" (rank 0 of {ctx.world_size})" if ctx.world_size > 1 else ""
        share = sum(len(chunk_range(k, num_items, batch_size)) for k in ctx.own_chunks(num_items, batch_size))
        bar = tqdm(total=share, desc=desc + suffix, unit="img", dynamic_ncols=True)

    def update(n: int, resumed: bool) -> None:
        if bar is None:
            return
        if resumed:  # counted as done without entering the rate
            bar.n += n
            bar.initial += n
            bar.last_print_n = bar.n
            bar.set_postfix_str(f"{n} resumed", refresh=False)
            bar.refresh()
        else:
            bar.update(n)
        if bar.n >= bar.total:
            bar.close()

    return update


def real_statistics(ctx: Distributed, real: RealImages, inception: Inception, batch_size: int,
                    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE, progress: bool = True,
                    log: Callable[[str], None] = print) -> tuple[FeatureStats | None, dict[str, Any]]:
    """Statistics of the real images (rank 0; None elsewhere) and a description of where they came from.

    Dataset statistics are cached in ``cache_dir`` under a key of the dataset's content, its resolution and the
    Inception file, so they are computed once; all ranks share the work when they are not cached.
    """
    if real.stats is not None:
        if real.stats.dim != inception.dim:
            raise InputError(f"{real.source}: statistics of {real.stats.dim}-d features, but the Inception network "
                             f"gives {inception.dim}-d features")
        return real.stats, {"source": real.source, "kind": "statistics", "num_images": real.stats.num}
    data = real.dataset
    assert data is not None
    # Hashing reads every image: rank 0 does it, the others only need its answer.
    key = None
    if ctx.is_main:
        key = hashlib.sha256(f"{data.content_hash()}:{data.resolution}:{inception.sha256}".encode()).hexdigest()[:24]
    info = {"source": real.source, "kind": "dataset", "num_images": len(data), "resolution": data.resolution,
            "content_key": key}
    folder = statistics_folder(cache_dir)
    cache = folder / f"real-{key}.npz" if folder is not None else None
    cached = None
    if ctx.is_main and cache is not None and cache.is_file():
        try:
            cached, _ = load_stats(cache)
        except InputError:
            cached = None
    found = ctx.broadcast(cached is not None)  # every rank decides the same way before any collective work
    if found:
        if ctx.is_main:
            log(f"real statistics: cached ({cache})")
        return cached, {**info, "cache": str(cache), "cache_hit": True}
    feats, _ = sharded_features(ctx, "real", len(data), batch_size,
                                lambda k, items: inception.features(data.images(items)),
                                progress=_bar(ctx, len(data), batch_size, "real images", progress))
    if not ctx.is_main:
        return None, info
    stats = feature_stats(feats)
    if cache is not None:
        save_stats(stats, cache, {"dataset": real.source, "resolution": data.resolution, "inception": inception.sha256})
    return stats, {**info, "cache": None if cache is None else str(cache), "cache_hit": False}


def compute_fid(
    ctx: Distributed,
    G: Generator,
    real: RealImages,
    inception: Inception,
    settings: FIDSettings,
    run_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE,
    mmagic_camera: dict[str, Any] | None = None,
    keep_shards: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FIDResult:
    """FID of ``G`` against ``real`` (see the module docstring). Every rank calls this; rank 0 gets the number and
    the record (all settings, hashes and timings), the others ``FIDResult(None, {})``.

    With ``run_dir`` each finished chunk of fake features is kept there, and a rerun with the same settings (any
    number of processes) continues from them; they are deleted after success unless ``keep_shards``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _compute_fid(ctx, G, real, inception, settings, run_dir, cache_dir, mmagic_camera, keep_shards,
                            progress, log)
    finally:
        torch.set_num_threads(threads)


def _compute_fid(ctx: Distributed, G: Generator, real: RealImages, inception: Inception, settings: FIDSettings,
                 run_dir: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None,
                 mmagic_camera: dict[str, Any] | None, keep_shards: bool, progress: bool,
                 log: Callable[[str], None]) -> FIDResult:
    start = time.time()
    if real.dataset is not None and real.dataset.resolution != G.img_resolution:
        raise InputError(f"{real.source}: images are {real.dataset.resolution} px, the generator makes "
                         f"{G.img_resolution} px images")
    distribution = fid_camera(G, mmagic_camera) if settings.camera == "random" else None
    sampler = FakeSampler(G, settings, real.labels, distribution, ctx.device)
    real_stats, real_info = real_statistics(ctx, real, inception, settings.batch_size, cache_dir, progress, log)

    model_sha = model_fingerprint(G)
    labels_sha = None if real.labels is None else hashlib.sha256(np.ascontiguousarray(real.labels).tobytes()).hexdigest()
    fingerprint = {"settings": asdict(settings), "model": model_sha, "inception": inception.sha256,
                   "labels": labels_sha if settings.camera == "dataset" else None,
                   "camera_distribution": None if distribution is None else asdict(distribution)}
    run = None
    if run_dir is not None:
        run = RunFolder(run_dir, fingerprint)
        if ctx.is_main:
            run.open(create=True)
        ctx.broadcast(None)  # wait until rank 0 has checked/created the folder
        if not ctx.is_main:
            run.open(create=False)
    G.eval()
    fake_start = time.time()
    feats, resumed = sharded_features(ctx, "fake", settings.num_samples, settings.batch_size,
                                      lambda k, items: inception.features(sampler.images(k, items)), run,
                                      _bar(ctx, settings.num_samples, settings.batch_size, "generated images", progress))
    fake_seconds = time.time() - fake_start
    resumed_all = ctx.gather(resumed)
    if run is not None and not keep_shards:
        ctx.broadcast(None)  # every rank has sent its features before any shard is deleted
        run.remove("fake", list(ctx.own_chunks(settings.num_samples, settings.batch_size)))
        ctx.broadcast(None)
        if ctx.is_main:
            run.close()
    if not ctx.is_main:
        return FIDResult(None, {})
    assert feats is not None and real_stats is not None
    if feats.shape[1] != real_stats.dim:
        raise InputError(f"feature sizes differ: generated {feats.shape[1]}, real {real_stats.dim}")
    fid = frechet_distance(feature_stats(feats), real_stats)
    resumed_samples = int(sum(resumed_all or [0]))
    rate = (settings.num_samples - resumed_samples) / max(fake_seconds, 1e-9)
    record = {
        "metric": settings.metric,
        "fid": fid,
        "settings": asdict(settings),
        "seeds": [settings.seed, settings.seed + settings.num_samples - 1],
        "protocol": {
            "camera": "dataset labels drawn uniformly with replacement, used for conditioning and rendering"
            if settings.camera == "dataset" else "random cameras from camera_distribution, used for conditioning and rendering",
            "latent": "z of sample i = RandomState(seed + i).randn(z_dim); camera drawn next from the same stream",
            "uint8": UINT8_RULE,
        },
        "camera_distribution": None if distribution is None else asdict(distribution),
        "model": {"source": getattr(G, "source", None), "sha256": model_sha, "config": G.config.to_dict()},
        "inception": {"path": str(inception.path), "sha256": inception.sha256, "feature_dim": inception.dim},
        "real": real_info,
        "labels_sha256": labels_sha if settings.camera == "dataset" else None,
        "run": {"world_size": ctx.world_size, "device": str(ctx.device), "resumed_samples": resumed_samples,
                "seconds": round(time.time() - start, 3), "fake_seconds": round(fake_seconds, 3),
                "samples_per_second": round(rate, 3), "samples_per_second_per_process": round(rate / ctx.world_size, 3)},
        "software": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }
    return FIDResult(fid, record)


def evaluate_fid(
    G: Generator,
    data: str | os.PathLike[str],
    inception: str | os.PathLike[str] | None = None,
    settings: FIDSettings | None = None,
    labels: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE,
    mmagic_camera: dict[str, Any] | None = None,
    keep_shards: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FIDResult:
    """The one-call API: FID of ``G`` against ``data`` (dataset folder/zip or statistics ``.npz``) with the
    Inception file ``inception`` (default ``$EG3D_INCEPTION``). Joins the ``torchrun`` job when there is one (on
    G's device; each rank moves to its own GPU); rank 0 gets the result, other ranks ``FIDResult(None, {})``.

    >>> result = evaluate_fid(G, "datasets/cars.zip", "inception-2015-12-05.pt", FIDSettings(camera="random"))
    >>> result.fid, result.record["settings"]
    """
    from .inception import load_inception
    from .sharding import init_distributed

    settings = settings or FIDSettings()
    ctx = init_distributed(next(G.parameters()).device)
    try:
        if ctx.device != next(G.parameters()).device:
            G = G.to(ctx.device)
        real = open_real(data, labels)
        net = load_inception(inception, ctx.device)
        return compute_fid(ctx, G, real, net, settings, run_dir, cache_dir, mmagic_camera, keep_shards, progress, log)
    finally:
        ctx.close()
