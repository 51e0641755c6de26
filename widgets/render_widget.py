"""Render settings: precision, sampling, output view, and the full / preview (moving camera) qualities."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_core.settings import PRECISIONS
from eg3d_viewer.state import PLANE_SCALES, VIEW_LABELS, VIEWS, RenderState

from .common import combo_str


def draw_render(state: RenderState, max_resolution: int) -> bool:
    """``max_resolution``: the model's neural rendering resolution times 2 (more only costs time)."""
    c = [False] * 16
    c[0], state.view = combo_str("View (V)", state.view, VIEWS, VIEW_LABELS)
    c[1], state.precision = combo_str("Precision", state.precision, PRECISIONS)
    imgui.set_item_tooltip("Ctrl+P toggles. reduced = float16 autocast on CUDA, bfloat16 on CPUs with native bfloat16; "
                           "other CPUs keep float32 with faster, slightly less exact convolutions (Winograd F(6x6, 3x3))")
    c[2], state.deterministic = imgui.checkbox("Deterministic ray samples", state.deterministic)
    imgui.set_item_tooltip("off: jittered samples as in training (the image flickers between frames)")

    imgui.separator_text("Full quality (at rest)")
    c[3], state.full_resolution = imgui.slider_int("Neural res", state.full_resolution, 16, max_resolution)
    c[4], state.full_samples = imgui.slider_int("Samples/ray", state.full_samples, 2, 192)
    c[5], state.full_importance = imgui.slider_int("Importance", state.full_importance, 0, 192)

    imgui.separator_text("Preview (while moving)")
    c[6], state.progressive = imgui.checkbox("Progressive rendering", state.progressive)
    imgui.set_item_tooltip("render a cheap preview while anything moves, the full frame once it rests")
    imgui.begin_disabled(not state.progressive)
    c[7], state.preview_auto = imgui.checkbox("Auto resolution", state.preview_auto)
    imgui.same_line()
    imgui.set_next_item_width(-1)
    if state.preview_auto:
        c[8], state.preview_target_fps = imgui.slider_float("##target", state.preview_target_fps, 2.0, 60.0,
                                                            "target %.0f FPS")
    else:
        c[8], state.preview_resolution = imgui.slider_int("##pres", state.preview_resolution, 16, max_resolution,
                                                          "%d px")
    c[9], state.preview_samples = imgui.slider_int("Samples/ray##p", state.preview_samples, 2, 96)
    c[10], state.preview_importance = imgui.slider_int("Importance##p", state.preview_importance, 0, 96)
    scales = [f"1/{s}" if s > 1 else "full" for s in PLANE_SCALES]
    index = PLANE_SCALES.index(state.preview_plane_scale) if state.preview_plane_scale in PLANE_SCALES else 0
    c[13], index = imgui.combo("Tri-planes##p", index, scales)
    state.preview_plane_scale = PLANE_SCALES[index]
    imgui.set_item_tooltip("previews sample average-pooled tri-planes: the lookup cost grows with the plane size")
    c[11], state.preview_superres = imgui.checkbox("Super-resolution in preview", state.preview_superres)
    c[12], state.rest_delay = imgui.slider_float("Rest delay", state.rest_delay, 0.0, 2.0, "%.2f s")
    imgui.end_disabled()
    state.full_resolution = max(16, state.full_resolution)
    return any(c)
