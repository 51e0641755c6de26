"""Export: save the current frame (PNG image, raw render, depth PNG + .npy) and extract a mesh of the latent."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import MESH_FORMATS, MESH_RESOLUTIONS, ExportState

from .common import combo_str, status


def draw_export(state: ExportState) -> bool:
    imgui.set_next_item_width(-70)
    _, state.directory = imgui.input_text("Folder", state.directory)
    if imgui.button("Save image + depth (Ctrl+S)"):
        state.save_requested = True
    imgui.separator_text("Mesh")
    labels = [str(r) for r in MESH_RESOLUTIONS]
    index = MESH_RESOLUTIONS.index(state.mesh_resolution) if state.mesh_resolution in MESH_RESOLUTIONS else 2
    imgui.set_next_item_width(90)
    _, index = imgui.combo("Grid", index, labels)
    state.mesh_resolution = MESH_RESOLUTIONS[index]
    imgui.same_line()
    imgui.set_next_item_width(70)
    _, state.mesh_format = combo_str("##format", state.mesh_format, MESH_FORMATS)
    imgui.same_line()
    _, state.mesh_colors = imgui.checkbox("Colours", state.mesh_colors)
    imgui.begin_disabled(state.busy)
    if imgui.button("Extract mesh (M)"):
        state.mesh_requested = True
    imgui.end_disabled()
    if state.busy:
        imgui.same_line()
        imgui.progress_bar(state.progress, imgui.ImVec2(-1, 0), f"{100 * state.progress:.0f}%")
    status(state.message, error=state.error)
    return state.save_requested or state.mesh_requested
