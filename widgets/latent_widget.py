"""Seed (with step buttons), interpolation towards a second seed, and an animation walking through seeds."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import LatentState

from .common import status


def draw_latent(state: LatentState) -> bool:
    back = False
    if state.custom is not None:
        status(f"Latent A: {state.custom.name} (a fitted picture or a loaded .npz), in place of the seed", ok=True)
        back = imgui.button("Back to seeds")
    c1, seed = imgui.input_int("Seed", state.seed)
    imgui.set_item_tooltip("[ and ] step the seed")
    c2, seed_b = imgui.input_int("Seed B", state.seed_b)
    c3, state.mix = imgui.slider_float("Mix A -> B", state.mix, 0.0, 1.0, "%.3f")
    c4, state.animate = imgui.checkbox("Animate (Space)", state.animate)
    imgui.same_line()
    imgui.set_next_item_width(-1)
    c5, state.speed = imgui.slider_float("##speed", state.speed, 0.02, 2.0, "%.2f seeds/s", imgui.SliderFlags_.logarithmic)
    state.seed, state.seed_b = seed % 2**32, seed_b % 2**32
    if back or c1:
        state.custom = None
    return back or c1 or c2 or c3 or c4 or c5
