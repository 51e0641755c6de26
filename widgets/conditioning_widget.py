"""Conditioning pose: the camera fed to the mapping network, separate from the rendering camera."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import ConditioningState

from .common import angle_field, status


def draw_conditioning(state: ConditioningState, used: bool) -> bool:
    """``used``: False for models trained with zeroed pose conditioning (ShapeNet cars), where it has no effect."""
    c1, state.yaw = angle_field("Cond yaw", state.yaw, -90.0, 90.0)
    c2, state.pitch = angle_field("Cond pitch", state.pitch, -60.0, 60.0)
    changed = c1 or c2
    if imgui.button("Frontal##cond"):
        state.yaw = state.pitch = 0.0
        changed = True
    if not used:
        status("this model ignores pose conditioning")
    return changed
