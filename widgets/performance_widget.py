"""Performance: UI and render frame rates, the last frame's time per stage, dropped and cancelled requests."""
from __future__ import annotations

from imgui_bundle import imgui

from eg3d_viewer.state import PerfState

STAGES = (("mapping", "Mapping"), ("backbone", "Backbone (tri-planes)"), ("render", "Volume rendering"),
          ("superres", "Super-resolution"), ("convert", "To images"), ("total", "Total"))


def draw_performance(state: PerfState) -> bool:
    imgui.text(f"UI      {state.ui_ms:6.1f} ms  {state.ui_fps:5.0f} FPS")
    imgui.text(f"Render  {state.render_fps:5.1f} frames/s" if state.render_fps > 0 else "Render  idle")
    imgui.text(f"Last: {state.quality or '-'}")
    if imgui.begin_table("stages", 2, imgui.TableFlags_.sizing_stretch_prop):
        for key, label in STAGES:
            imgui.table_next_row()
            imgui.table_next_column()
            imgui.text(label)
            imgui.table_next_column()
            if key == "backbone" and state.planes_cached:
                imgui.text("cached")
            else:
                imgui.text(f"{state.stage_ms.get(key, 0.0):8.1f} ms")
        imgui.end_table()
    imgui.text(f"Dropped (stale) requests: {state.dropped}   cancelled: {state.cancelled}")
    changed, state.fps_limit = imgui.slider_int("UI FPS limit", state.fps_limit, 10, 240)
    return changed
