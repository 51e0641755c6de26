"""Named state transitions shared by keyboard shortcuts, scripts and the app (pure: no GL, no torch).

Every action takes the app state and the current camera limits and edits the state in place.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import camera_controller as cc
from .model_info import ModelInfo
from .state import PRECISIONS, VIEWS, AppState, CameraState

Action = Callable[[AppState, cc.CameraLimits], None]


def _set_camera(state: AppState, new: CameraState) -> None:
    state.camera = new


def reset_view(state: AppState, limits: cc.CameraLimits) -> None:
    _set_camera(state, cc.reset(state.camera, limits))
    state.camera.orbit_animation = False


def _orbit(dx: float, dy: float) -> Action:
    # Keyboard steps are expressed as the drag that would give the same angle step.
    def act(state: AppState, limits: cc.CameraLimits) -> None:
        k = cc.ControllerConfig()
        _set_camera(state, cc.orbit(state.camera, dx * k.key_angle_step / k.orbit_rad_per_px,
                                    dy * k.key_angle_step / k.orbit_rad_per_px, limits))
    return act


def _zoom(steps: float) -> Action:
    def act(state: AppState, limits: cc.CameraLimits) -> None:
        _set_camera(state, cc.zoom(state.camera, steps, limits))
    return act


def step_seed(state: AppState, delta: int) -> None:
    """Next/previous seed; seed B follows so that the A -> B interpolation keeps meaning "this seed to the next"."""
    lat = state.latent
    lat.custom = None  # stepping the seed goes back from a custom latent to seeds
    follow = lat.seed_b == (lat.seed + 1) % 2**32
    lat.seed = (lat.seed + delta) % 2**32
    if follow:
        lat.seed_b = (lat.seed + 1) % 2**32


# Pictures fitted when opened or dropped on the window (by suffix); ``.npz`` files are latents, anything else a model.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def open_path(state: AppState, path: str) -> None:
    """A file dropped on the window (or a script's ``drop``): a picture is fitted (picture -> 3D), a ``.npz`` loaded as
    the latent, anything else loaded as a model."""
    suffix = Path(path).suffix.lower()
    inv = state.invert
    if suffix in IMAGE_SUFFIXES:
        inv.image_path, inv.fit_requested, state.panel.invert = path, True, True
    elif suffix == ".npz":
        inv.latent_path, inv.load_requested, state.panel.invert = path, True, True
    else:
        state.model.path = state.model.load_requested = path


def cycle_view(state: AppState, limits: cc.CameraLimits) -> None:
    state.render.view = VIEWS[(VIEWS.index(state.render.view) + 1) % len(VIEWS)] if state.render.view in VIEWS else VIEWS[0]


def toggle_precision(state: AppState, limits: cc.CameraLimits) -> None:
    state.render.precision = PRECISIONS[(PRECISIONS.index(state.render.precision) + 1) % len(PRECISIONS)]


def toggle_animation(state: AppState, limits: cc.CameraLimits) -> None:
    state.latent.animate = not state.latent.animate


def toggle_orbit(state: AppState, limits: cc.CameraLimits) -> None:
    state.camera.orbit_animation = not state.camera.orbit_animation


def toggle_camera_mode(state: AppState, limits: cc.CameraLimits) -> None:
    """Arrow keys orbit the look-at point <-> turn the view in place (fly), as viser's ``p``."""
    modes = cc.CAMERA_MODES
    state.camera.mode = modes[(modes.index(state.camera.mode) + 1) % len(modes)] if state.camera.mode in modes else modes[0]


def _keyframes_request(name: str) -> Action:
    def act(state: AppState, limits: cc.CameraLimits) -> None:
        setattr(state.keyframes, name, True)
    return act


def toggle_path_playback(state: AppState, limits: cc.CameraLimits) -> None:
    """Play / pause the camera path; playing from its end starts again."""
    ks = state.keyframes
    ks.playing = not ks.playing and len(ks.keyframes) > 1
    if ks.playing and ks.time >= sum(k.duration for k in (ks.keyframes if ks.loop else ks.keyframes[:-1])) - 1e-9:
        ks.time = 0.0


def clear_path(state: AppState, limits: cc.CameraLimits) -> None:
    ks = state.keyframes
    ks.keyframes, ks.selected, ks.playing, ks.time = (), -1, False, 0.0


def request_save(state: AppState, limits: cc.CameraLimits) -> None:
    state.export.save_requested = True


def request_mesh(state: AppState, limits: cc.CameraLimits) -> None:
    state.export.mesh_requested = True


ACTIONS: dict[str, Action] = {
    "reset_view": reset_view,
    "yaw_left": _orbit(-1, 0),
    "yaw_right": _orbit(1, 0),
    "pitch_up": _orbit(0, -1),
    "pitch_down": _orbit(0, 1),
    "zoom_in": _zoom(1),
    "zoom_out": _zoom(-1),
    "next_seed": lambda s, lim: step_seed(s, 1),
    "prev_seed": lambda s, lim: step_seed(s, -1),
    "cycle_view": cycle_view,
    "toggle_precision": toggle_precision,
    "toggle_animation": toggle_animation,
    "toggle_orbit": toggle_orbit,
    "toggle_camera_mode": toggle_camera_mode,
    "add_keyframe": _keyframes_request("add_requested"),
    "play_path": toggle_path_playback,
    "clear_path": clear_path,
    "save_path": _keyframes_request("save_requested"),
    "load_path": _keyframes_request("load_requested"),
    "render_path_video": _keyframes_request("render_requested"),
    "cancel_path_video": _keyframes_request("cancel_requested"),
    "save": request_save,
    "export_mesh": request_mesh,
}


def animate(state: AppState, dt: float) -> None:
    """Advance the latent walk (A -> B, then B -> B+1 ...) and the camera orbit by dt seconds."""
    lat = state.latent
    if lat.animate:
        lat.mix += lat.speed * dt
        while lat.mix >= 1.0:
            lat.mix -= 1.0
            lat.seed, lat.seed_b = lat.seed_b, (lat.seed_b + 1) % 2**32
    if state.camera.orbit_animation:
        state.camera = cc.animate_orbit(state.camera, dt)


def apply_model(state: AppState, info: ModelInfo) -> cc.CameraLimits:
    """Settings that depend on the model, set when one is loaded: camera defaults, full quality = the model's own
    settings, layer counts. Latent choices (seeds, psi) are kept so that models can be compared."""
    limits = cc.CameraLimits.for_model(info)
    zoom_mode, mode = state.camera.zoom_mode, state.camera.mode
    state.camera = CameraState.from_defaults(info.camera)
    state.camera.zoom_mode, state.camera.mode = zoom_mode, mode
    r = state.render
    r.full_resolution = info.neural_rendering_resolution
    r.full_samples, r.full_importance = info.depth_resolution, info.depth_resolution_importance
    # Previews: a quarter of the samples along the ray but at least 16 (fewer show depth banding), no importance pass
    # (its samples cost as much as the coarse ones), tri-planes pooled to <= 128 texels, half the resolution to start.
    # benchmarks/bench_viewer.py measures these choices; its figures are in benchmarks/RESULTS.md.
    r.preview_samples = min(info.depth_resolution, max(16, info.depth_resolution // 4))
    r.preview_importance = 0
    r.preview_resolution = max(32, info.neural_rendering_resolution // 2)
    r.preview_plane_scale = max(1, min(4, info.triplane_resolution // 128))
    t = state.truncation
    t.cutoff = info.num_ws
    state.stylemix.layer = min(state.stylemix.layer, info.num_ws - 1)
    d = state.directions
    d.amounts, d.layer_start, d.layer_end, d.status = [], 0, info.num_ws, "computing principal directions ..."
    m = state.model
    m.loaded, m.description, m.loading, m.error = info.source, info.description, False, False
    m.message = ""
    if not m.path:
        m.path = info.source
    return limits
