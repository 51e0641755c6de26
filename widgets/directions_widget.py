"""Latent directions: one slider per principal direction of W (GANSpace), in standard deviations."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import DirectionsState

from .common import status


def draw_directions(state: DirectionsState, num_ws: int) -> bool:
    status(state.status)
    changed = False
    for i, amount in enumerate(state.amounts):
        c, state.amounts[i] = imgui.slider_float(f"PC {i}", amount, -5.0, 5.0, "%.2f sd")
        changed |= c
    if state.amounts:
        c, state.layer_start, state.layer_end = imgui.drag_int_range2(
            "Layers", state.layer_start, state.layer_end, 0.1, 0, num_ws, "from %d", "to %d")
        changed |= c
        imgui.set_item_tooltip("w layers the directions are added to (GANSpace edits a layer range)")
        if imgui.button("Zero all"):
            state.amounts = [0.0] * len(state.amounts)
            changed = True
    return changed
