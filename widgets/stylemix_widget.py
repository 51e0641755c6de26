"""Style mixing: layers from a chosen one onwards take their w from a second seed."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import StyleMixState


def draw_stylemix(state: StyleMixState, num_ws: int) -> bool:
    c1, state.enabled = imgui.checkbox("Style mix", state.enabled)
    imgui.begin_disabled(not state.enabled)
    c2, seed = imgui.input_int("Mix seed", state.seed)
    state.seed = seed % 2**32
    c3, state.layer = imgui.slider_int("From layer", state.layer, 0, num_ws - 1)
    imgui.set_item_tooltip(f"w[{state.layer}:{num_ws}] come from the mix seed: early layers = coarse shape, "
                           "late layers = fine detail and colour")
    imgui.end_disabled()
    return c1 or c2 or c3
