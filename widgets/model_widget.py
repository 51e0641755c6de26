"""Checkpoint: a path field and Load button; the load runs on the render worker, the old model stays on failure."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import ModelState

from .common import status


def draw_model(state: ModelState) -> bool:
    """Sets ``state.load_requested`` when the user asks for a load. Returns True then."""
    imgui.set_next_item_width(-70)
    entered, state.path = imgui.input_text("##checkpoint", state.path, imgui.InputTextFlags_.enter_returns_true)
    imgui.set_item_tooltip("Official EG3D .pkl, MMagic .pth, or a folder saved by eg3d_core.save_generator; "
                           "empty = the bundled demo model")
    imgui.same_line()
    imgui.begin_disabled(state.loading)
    clicked = imgui.button("Load")
    imgui.end_disabled()
    requested = (entered or clicked) and not state.loading
    if requested:
        state.load_requested = state.path.strip()
    if state.loading:
        status("loading ...")
    elif state.message:
        status(state.message, error=state.error)
    if state.loaded:
        status(f"{state.loaded}\n{state.description}")
    return requested
