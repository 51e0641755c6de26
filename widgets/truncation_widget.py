"""Truncation psi and cutoff, and the backbone's noise mode."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_core.settings import NOISE_MODES
from eg3d_viewer.state import TruncationState

from .common import combo_str


def draw_truncation(state: TruncationState, num_ws: int) -> bool:
    c1, state.psi = imgui.slider_float("Psi", state.psi, -1.0, 2.0, "%.2f")
    imgui.set_item_tooltip("1 = no truncation; smaller values pull w towards the average (safer, less varied)")
    c2, state.cutoff = imgui.slider_int("Cutoff", state.cutoff, 0, num_ws)
    imgui.set_item_tooltip(f"truncate w[0:cutoff]; {num_ws} = all layers (the scripts' default)")
    c3, state.noise_mode = combo_str("Noise", state.noise_mode, NOISE_MODES)
    return c1 or c2 or c3
