"""Rendering camera: yaw, pitch, radius, FOV, look-at point, zoom mode, reset and an automatic orbit."""
from __future__ import annotations

import math

from imgui_bundle import imgui

from eg3d_viewer.camera_controller import CAMERA_MODES, PITCH_LIMIT, CameraLimits, clamped, reset
from eg3d_viewer.state import ZOOM_MODES, CameraState

from .common import angle_field, combo_str


def draw_pose(state: CameraState, limits: CameraLimits) -> bool:
    changed = False
    c, yaw = angle_field("Yaw", state.yaw, -180.0, 180.0)
    if c:
        state.yaw, changed = yaw, True
    lim = math.degrees(PITCH_LIMIT)
    c, pitch = angle_field("Pitch", state.pitch, -lim, lim)
    if c:
        state.pitch, changed = pitch, True
    c, state.radius = imgui.drag_float("Radius", state.radius, 0.005, limits.radius_min, limits.radius_max, "%.3f",
                                       imgui.SliderFlags_.always_clamp)
    imgui.set_item_tooltip(f"Camera distance. The model renders depths {limits.radius_min:.2f} .. {limits.radius_max:.2f} "
                           "only, so the range is limited to keep the object inside it.")
    changed |= c
    c, state.fov = imgui.drag_float("FOV", state.fov, 0.05, limits.fov_min, limits.fov_max, "%.2f deg",
                                    imgui.SliderFlags_.always_clamp)
    imgui.set_item_tooltip("Field of view with the original's FOV -> focal rule (18.837 deg = FFHQ's focal 4.26)")
    changed |= c
    c, pivot = imgui.drag_float3("Look at", list(state.pivot), 0.002, -limits.pivot_max, limits.pivot_max, "%.3f")
    if c:
        state.pivot, changed = tuple(pivot), True
    c, state.zoom_mode = combo_str("Wheel zooms", state.zoom_mode, ZOOM_MODES, {"fov": "FOV", "radius": "radius (dolly)"})
    changed |= c
    _, state.mode = combo_str("Arrows (P)", state.mode, CAMERA_MODES,
                              {"orbit": "orbit the look-at point", "fly": "fly: look around"})
    imgui.set_item_tooltip("W A S D / Q E fly the camera in both modes (speed in model radii per second); the arrows "
                           "orbit the look-at point, or turn the view in place in fly mode")
    if imgui.button("Reset view (R)"):
        vars(state).update(vars(reset(state, limits)))
        state.orbit_animation = False
        changed = True
    imgui.same_line()
    c, state.orbit_animation = imgui.checkbox("Orbit (O)", state.orbit_animation)
    changed |= c
    if changed:
        vars(state).update(vars(clamped(state, limits)))
    return changed
