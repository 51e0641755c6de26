"""Mouse and keyboard input: drags, wheel and double-click on the view, and the keyboard shortcuts.

Both turn ImGui's input state of this frame into camera moves and named actions (``actions.ACTIONS``) on the state.
"""
from __future__ import annotations

from collections.abc import Callable

from imgui_bundle import imgui

from . import actions
from . import camera_controller as cc
from .state import AppState

SHORTCUTS: tuple[tuple[imgui.Key, str, str], ...] = (
    (imgui.Key.r, "reset_view", "R"), (imgui.Key.left_arrow, "yaw_left", "Left"),
    (imgui.Key.right_arrow, "yaw_right", "Right"), (imgui.Key.up_arrow, "pitch_up", "Up"),
    (imgui.Key.down_arrow, "pitch_down", "Down"), (imgui.Key.equal, "zoom_in", "+"),
    (imgui.Key.keypad_add, "zoom_in", "+"), (imgui.Key.minus, "zoom_out", "-"),
    (imgui.Key.keypad_subtract, "zoom_out", "-"), (imgui.Key.right_bracket, "next_seed", "]"),
    (imgui.Key.left_bracket, "prev_seed", "["), (imgui.Key.v, "cycle_view", "V"),
    (imgui.Key.space, "toggle_animation", "Space"), (imgui.Key.o, "toggle_orbit", "O"),
    (imgui.Key.p, "toggle_precision", "P"), (imgui.Key.s, "save", "S"), (imgui.Key.m, "export_mesh", "M"),
)


def view_input(state: AppState, limits: cc.CameraLimits, viewport_px: float) -> bool:
    """Mouse on the view (the last ImGui item): left drag orbits, right/middle (or Shift + left) drag pans, wheel
    zooms, double-click resets. Returns True if the mouse let go of the view this frame."""
    io = imgui.get_io()
    cam = state.camera
    released = imgui.is_item_deactivated()
    dx, dy = io.mouse_delta.x, io.mouse_delta.y
    if imgui.is_item_active() and (dx or dy):
        if imgui.is_mouse_dragging(imgui.MouseButton_.left) and not io.key_shift:
            cam = cc.orbit(cam, dx, dy, limits)
            cam.orbit_animation = False
        elif (imgui.is_mouse_dragging(imgui.MouseButton_.right) or imgui.is_mouse_dragging(imgui.MouseButton_.middle)
              or imgui.is_mouse_dragging(imgui.MouseButton_.left)):
            cam = cc.pan(cam, dx, dy, viewport_px, limits)
    if imgui.is_item_hovered():
        if io.mouse_wheel:
            cam = cc.zoom(cam, io.mouse_wheel, limits)
        if imgui.is_mouse_double_clicked(imgui.MouseButton_.left):
            cam = cc.reset(cam, limits)
    state.camera = cam
    return released


def shortcuts(state: AppState, limits: cc.CameraLimits, request_close: Callable[[], None]) -> None:
    """Apply the actions whose keys were pressed this frame (each action once); Ctrl+Q closes the window."""
    io = imgui.get_io()
    if io.want_text_input:
        return
    if io.key_ctrl:
        if imgui.is_key_pressed(imgui.Key.q, False):
            request_close()
        return
    done = set()
    for key, name, _ in SHORTCUTS:
        if name not in done and imgui.is_key_pressed(key):
            actions.ACTIONS[name](state, limits)
            done.add(name)
