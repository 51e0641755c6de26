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
    (imgui.Key.r, "reset_view", "R"), (imgui.Key.equal, "zoom_in", "+"),
    (imgui.Key.keypad_add, "zoom_in", "+"), (imgui.Key.minus, "zoom_out", "-"),
    (imgui.Key.keypad_subtract, "zoom_out", "-"), (imgui.Key.right_bracket, "next_seed", "]"),
    (imgui.Key.left_bracket, "prev_seed", "["), (imgui.Key.v, "cycle_view", "V"),
    (imgui.Key.space, "toggle_animation", "Space"), (imgui.Key.o, "toggle_orbit", "O"),
    (imgui.Key.p, "toggle_camera_mode", "P"), (imgui.Key.m, "export_mesh", "M"),
    (imgui.Key.k, "add_keyframe", "K"), (imgui.Key.l, "play_path", "L"),
)
# With Ctrl held (S and P are taken by flight and the camera mode).
CTRL_SHORTCUTS: tuple[tuple[imgui.Key, str, str], ...] = (
    (imgui.Key.s, "save", "Ctrl+S"), (imgui.Key.p, "toggle_precision", "Ctrl+P"),
)
# Keys that act while held (``camera_controller.key_motion``).
HELD_KEYS: dict[imgui.Key, str] = {
    imgui.Key.w: "w", imgui.Key.a: "a", imgui.Key.s: "s", imgui.Key.d: "d", imgui.Key.q: "q", imgui.Key.e: "e",
    imgui.Key.left_arrow: "left", imgui.Key.right_arrow: "right", imgui.Key.up_arrow: "up",
    imgui.Key.down_arrow: "down",
}
# (keys, what they do) for the Shortcuts panel and the README.
HELP: tuple[tuple[str, str], ...] = (
    ("W A S D", "fly forward / left / back / right"),
    ("Q E", "fly down / up"),
    ("Arrows", "orbit (fly mode: look around)"),
    ("P", "camera mode: orbit <-> fly"),
    ("R", "reset view"), ("+ -", "zoom in / out"), ("[ ]", "previous / next seed"), ("V", "cycle the view"),
    ("Space", "animate the latent"), ("O", "orbit animation"), ("M", "export mesh"),
    ("K", "add the view as a keyframe"), ("L", "play / pause the path"),
    ("Ctrl+S", "save image + depth"), ("Ctrl+P", "toggle precision"), ("Ctrl+Q", "quit"),
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
    if cam is not state.camera:
        state.keyframes.playing = False  # the user takes the camera: the path stops where it is
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
        for key, name, _ in CTRL_SHORTCUTS:
            if imgui.is_key_pressed(key, False):
                actions.ACTIONS[name](state, limits)
        return
    done = set()
    for key, name, _ in SHORTCUTS:
        if name not in done and imgui.is_key_pressed(key):
            actions.ACTIONS[name](state, limits)
            done.add(name)


def held_keys() -> frozenset[str]:
    """The flight / orbit keys down this frame (none while a text field has the keyboard or Ctrl is held)."""
    io = imgui.get_io()
    if io.want_text_input or io.key_ctrl:
        return frozenset()
    return frozenset(name for key, name in HELD_KEYS.items() if imgui.is_key_down(key))


def key_motion(state: AppState, limits: cc.CameraLimits, dt: float) -> bool:
    """Move the camera by the held keys over ``dt`` seconds; True while any is held (the app keeps drawing)."""
    held = held_keys()
    if held:
        state.camera = cc.key_motion(state.camera, held, dt, limits)
        state.camera.orbit_animation = state.keyframes.playing = False
    return bool(held)
