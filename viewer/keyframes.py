"""Camera paths in the viewer: a keyframe from the current view, the path's view at a time applied to the state
(camera and latent), playback and scrubbing, and the Keyframes panel's requests (add, save, load, render the MP4).

The path maths, its JSON and the MP4 writer are the library's (``eg3d_core.camera_path``,
``eg3d_core.apps.video.render_path_video``); this module only translates between them and the viewer's state. While
the path plays, the camera changes every frame, so the scheduler renders previews (low resolution while moving, as
for a drag) and the full-quality frame once it stops. The MP4 is rendered on its own thread (``viewer.path_video``).

Keyframes look at the model's pivot (a path has no look-at point): a panned look-at point is not kept.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from eg3d_core.camera_path import FOV, CameraPath, Keyframe, PathView, load_path, save_path
from eg3d_core.cameras import CameraDefaults
from eg3d_core.errors import EG3DError, InputError
from eg3d_core.latents import LatentSource
from eg3d_core.settings import PITCH

from . import camera_controller as cc
from .model_info import ModelInfo
from .renderer import RenderResult
from .requests import LatentSpec, full_quality, latent_spec
from .state import AppState, CustomLatent, KeyframesState

if TYPE_CHECKING:
    from .app import ViewerApp


def build_path(ks: KeyframesState) -> CameraPath:
    """The panel's keyframes and options as the library's path (validated: InputError)."""
    return CameraPath(tuple(ks.keyframes), fps=int(ks.fps), constant_speed=ks.constant_speed, loop=ks.loop)


def _plain_seed(spec: LatentSpec, info: ModelInfo) -> bool:
    """The latent is seed A alone with truncation, mapped as the library maps a seed (frontal conditioning)."""
    frontal = not info.pose_conditioned or (spec.cond_yaw == 0 and spec.cond_pitch == 0)
    return (spec.custom is None and spec.mix == 0 and spec.stylemix_seed is None and not spec.directions
            and frontal)


def keyframe_of(state: AppState, info: ModelInfo, shown: RenderResult | None) -> Keyframe:
    """The current view as a keyframe: camera, FOV, and the latent as a seed (with psi and cutoff) when it is a plain
    seed, else as ws (a custom latent's own, or those of the frame on screen: mixes, style mixing, directions)."""
    spec = latent_spec(state, info)
    cam = state.camera
    view = dict(yaw=cc.wrap_angle(cam.yaw), pitch=min(max(cam.pitch, PITCH[0]), PITCH[1]), radius=cam.radius,
                fov=min(max(cam.fov, FOV[0]), FOV[1]), duration=state.keyframes.duration)
    if _plain_seed(spec, info):
        return Keyframe(**view, seed=spec.seed, psi=spec.psi, cutoff=spec.cutoff)
    if (spec.custom is not None and spec.mix == 0 and spec.stylemix_seed is None and not spec.directions):
        return Keyframe(**view, ws=spec.custom.ws)
    if shown is not None and shown.ws is not None and shown.request.scene.latent == spec:
        return Keyframe(**view, ws=shown.ws)
    raise InputError("the current latent is still rendering: add the keyframe once its frame is shown")


def keyframe_label(k: Keyframe) -> str:
    latent = (f"seed {k.seed} psi {k.psi:.2f}" if k.seed is not None else "ws" if k.ws is not None
              else "current latent")
    return f"yaw {math.degrees(k.yaw):+.0f} pitch {math.degrees(k.pitch):+.0f}, {latent}"


def _digest(ws: torch.Tensor) -> str:
    return hashlib.sha1(ws.numpy().tobytes()).hexdigest()[:16]


def _custom(name: str, ws: torch.Tensor, digest: str | None = None) -> CustomLatent:
    return CustomLatent(name=name, digest=digest or _digest(ws), ws=ws)


def apply_latent(state: AppState, info: ModelInfo, k0: Keyframe, k1: Keyframe, weight: float) -> None:
    """Show the blend ``(1 - weight) k0 + weight k1`` of two keyframes' latents in W, with the viewer's own latent
    controls: two seeds are seeds A and B mixed by ``weight`` (psi blended too, which is exact for equal psi), ws take
    the custom latent's place. A keyframe without a latent takes the other's; neither keeps the current latent."""
    a, b = (k0 if k0.has_latent else k1), (k1 if k1.has_latent else k0)
    if not a.has_latent:
        return
    if weight <= 0.0 or a is b:
        b, weight = a, 0.0
    elif weight >= 1.0:
        a, weight = b, 0.0
    lat, trunc = state.latent, state.truncation
    lat.animate, state.stylemix.enabled = False, False
    state.directions.amounts = [0.0] * len(state.directions.amounts)
    state.conditioning.yaw = state.conditioning.pitch = 0.0
    seeded = a if a.seed is not None else b if b.seed is not None else None
    if seeded is not None:
        trunc.cutoff = seeded.cutoff if seeded.cutoff is not None else info.num_ws
    if a.seed is not None and b.seed is not None:
        lat.custom, lat.seed, lat.seed_b, lat.mix = None, a.seed, b.seed, weight if b.seed != a.seed else 0.0
        trunc.psi = a.psi + (b.psi - a.psi) * weight
    elif a.ws is not None and b.ws is not None:
        if weight == 0.0 or torch.equal(a.ws, b.ws):
            lat.custom = _custom("path", a.ws)
        else:
            lat.custom = _custom("path", torch.lerp(a.ws, b.ws, weight),
                                 f"{_digest(a.ws)}+{_digest(b.ws)}@{weight:.6f}")
        lat.mix = 0.0
    elif a.ws is not None:  # ws -> seed: the seed is seed B
        lat.custom, lat.seed_b, lat.mix, trunc.psi = _custom("path", a.ws), b.seed, weight, b.psi
    else:  # seed -> ws
        lat.custom, lat.seed_b, lat.mix, trunc.psi = _custom("path", b.ws), a.seed, 1.0 - weight, a.psi


def apply_view(state: AppState, info: ModelInfo, limits: cc.CameraLimits, path: CameraPath, view: PathView) -> None:
    """Put the state at a view of the path: its camera (looking at the model's pivot) and latent blend."""
    d: CameraDefaults = info.camera
    cam = replace(state.camera, yaw=view.yaw, pitch=view.pitch, radius=d.radius if view.radius is None else view.radius,
                  fov=d.fov if view.fov is None else view.fov, pivot=tuple(d.pivot), orbit_animation=False)
    state.camera = cc.clamped(cam, limits)
    apply_latent(state, info, path.keyframes[view.index0], path.keyframes[view.index1], view.weight)


def keyframe_view(path: CameraPath, index: int) -> PathView:
    k = path.keyframes[index]
    return PathView(path.keyframe_times[index], k.yaw, k.pitch, k.radius, k.fov, index, index, 0.0)


def update(state: AppState, info: ModelInfo, limits: cc.CameraLimits, dt: float) -> None:
    """Once per frame: go to a keyframe, follow the timeline, or advance playback by ``dt`` seconds."""
    ks = state.keyframes
    if not ks.keyframes:
        ks.playing, ks.time, ks.goto_requested, ks.scrubbed = False, 0.0, None, False
        return
    if ks.goto_requested is None and not ks.playing and not ks.scrubbed:
        return  # nothing moves: the path need not be built
    try:
        path = build_path(ks)
        if ks.goto_requested is not None:
            i = min(max(ks.goto_requested, 0), len(ks.keyframes) - 1)
            ks.goto_requested, ks.selected, ks.playing = None, i, False
            view = keyframe_view(path, i)
            ks.time = view.t
            apply_view(state, info, limits, path, view)
            return
        total = path.total_seconds
        if ks.playing:
            if total <= 0:
                ks.playing = False
                return
            t = ks.time + dt
            if t >= total and not path.loop:
                t, ks.playing = total, False
            ks.time = t % total if path.loop else t
        ks.scrubbed = False
        ks.time = min(max(ks.time, 0.0), total)
        view = path.view_at(ks.time, info.camera)
        ks.selected = view.index1 if view.weight >= 0.5 else view.index0  # the keyframe nearest the playhead
        apply_view(state, info, limits, path, view)
    except EG3DError as e:
        ks.playing, ks.scrubbed, ks.message, ks.error = False, False, str(e), True


def _check_ws(path: CameraPath, info: ModelInfo) -> None:
    for i, k in enumerate(path.keyframes):
        if k.ws is not None and tuple(k.ws.shape) != (1, info.num_ws, info.w_dim):
            raise InputError(f"keyframe {i}: ws of shape {list(k.ws.shape)}, but the model takes "
                             f"[1, {info.num_ws}, {info.w_dim}]")


def current_latent(state: AppState, info: ModelInfo, shown: RenderResult | None) -> LatentSource | torch.Tensor | None:
    """The viewer's latent, for keyframes without one: a seed as a ``LatentSource``, else the ws on screen."""
    spec = latent_spec(state, info)
    if _plain_seed(spec, info):
        return LatentSource(seed=spec.seed, psi=spec.psi, cutoff=spec.cutoff)
    if shown is not None and shown.ws is not None and shown.request.scene.latent == spec:
        return shown.ws
    return None


def handle_requests(app: ViewerApp) -> None:
    """The Keyframes panel's requests, once per frame on the UI thread (a path file is a few kilobytes: read and
    written here; the MP4 goes to the video thread). Problems end up as one line in the panel."""
    from .path_video import PathVideoJob

    s, info = app.state, app.info
    ks = s.keyframes
    if ks.cancel_requested:
        ks.cancel_requested = False
        app.video.cancel()
    requested = ks.add_requested or ks.save_requested or ks.load_requested or ks.render_requested
    if not requested:
        return
    add, save, load, render = ks.add_requested, ks.save_requested, ks.load_requested, ks.render_requested
    ks.add_requested = ks.save_requested = ks.load_requested = ks.render_requested = False
    if info is None or app.generator is None:
        ks.message, ks.error = "no model loaded yet", True
        return
    try:
        if add:
            k = keyframe_of(s, info, app.shown)
            at = ks.selected + 1 if 0 <= ks.selected < len(ks.keyframes) else len(ks.keyframes)
            ks.keyframes = (*ks.keyframes[:at], k, *ks.keyframes[at:])
            ks.selected, ks.playing = at, False
            ks.time = build_path(ks).keyframe_times[at]
            panned = any(abs(p - q) > 1e-6 for p, q in zip(s.camera.pivot, info.camera.pivot, strict=True))
            ks.message = f"keyframe {at + 1} of {len(ks.keyframes)}: {keyframe_label(k)}" + (
                " (paths look at the model's pivot: the panned look-at point is not kept)" if panned else "")
            ks.error = False
        if save:
            path = build_path(ks)
            if not path.keyframes:
                raise InputError("no keyframes to save: add the current view first (K)")
            Path(ks.file).parent.mkdir(parents=True, exist_ok=True)
            written = save_path(path, ks.file)
            ks.message, ks.error = f"saved {len(path.keyframes)} keyframes to {written}", False
        if load:
            path = load_path(ks.file)
            _check_ws(path, info)
            ks.keyframes, ks.fps, ks.constant_speed, ks.loop = path.keyframes, path.fps, path.constant_speed, path.loop
            ks.selected, ks.time, ks.playing = (0 if path.keyframes else -1), 0.0, False
            if path.keyframes:
                ks.goto_requested = 0
            ks.message, ks.error = (f"loaded {len(path.keyframes)} keyframes ({path.total_seconds:.1f} s) from "
                                    f"{ks.file}"), False
        if render:
            if ks.busy:
                raise InputError("a video is being rendered already: cancel it first")
            path = build_path(ks)
            if not path.keyframes:
                raise InputError("no keyframes to render: add the current view first (K)")
            _check_ws(path, info)
            settings = full_quality(s.render).settings
            Path(ks.video_file).parent.mkdir(parents=True, exist_ok=True)
            app.video.submit(PathVideoJob(app.generator, path, ks.video_file, settings,
                                          current_latent(s, info, app.shown)))
            ks.busy, ks.progress, ks.error = True, 0.0, False
            ks.message = f"rendering {path.num_frames} frames to {ks.video_file} ..."
    except EG3DError as e:
        ks.message, ks.error = str(e), True
    except OSError as e:  # e.g. a folder that cannot be made
        ks.message, ks.error = f"{e.filename or ''}: {e.strerror or e}".lstrip(": "), True
