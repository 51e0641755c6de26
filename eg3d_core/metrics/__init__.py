"""Evaluation metrics: FID50k / FID50k-Camera (``fid``), split into the Frechet arithmetic (``frechet``), the
Inception feature extractor (``inception``), real-image datasets (``images``) and multi-process sharding
(``sharding``)."""
from .fid import FIDResult, FIDSettings, compute_fid, evaluate_fid, fid_camera, open_real
from .frechet import FeatureStats, feature_stats, frechet_distance, load_stats, save_stats
from .inception import InceptionError, load_inception
from .sharding import init_distributed

__all__ = ["FIDResult", "FIDSettings", "FeatureStats", "InceptionError", "compute_fid",
           "evaluate_fid", "feature_stats", "fid_camera", "frechet_distance", "init_distributed", "load_inception", "load_stats",
           "open_real", "save_stats"]
