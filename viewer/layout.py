"""Window layout: the control panel on the left (one collapsing section per widget) and the view on the right (the
rendered images, their labels and the status lines)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imgui_bundle import imgui

from eg3d_viewer.widgets.conditioning_widget import draw_conditioning
from eg3d_viewer.widgets.directions_widget import draw_directions
from eg3d_viewer.widgets.export_widget import draw_export
from eg3d_viewer.widgets.invert_widget import draw_invert
from eg3d_viewer.widgets.keyframes_widget import draw_keyframes
from eg3d_viewer.widgets.latent_widget import draw_latent
from eg3d_viewer.widgets.model_widget import draw_model
from eg3d_viewer.widgets.performance_widget import draw_performance
from eg3d_viewer.widgets.pose_widget import draw_pose
from eg3d_viewer.widgets.render_widget import draw_render
from eg3d_viewer.widgets.stylemix_widget import draw_stylemix
from eg3d_viewer.widgets.truncation_widget import draw_truncation

from . import camera_controller as cc
from .gl_texture import Texture
from .inputs import HELP
from .model_info import ModelInfo
from .report import ERROR_PREFIXES
from .state import VIEW_LABELS, AppState, PanelState

PANEL_WIDTH = 400  # control panel width at UI scale 1
BACKING = 0xA0000000  # translucent black behind text on the images, which keeps it readable on bright ones


def draw_panel(state: AppState, info: ModelInfo | None, limits: cc.CameraLimits | None, width: float,
               thumbnail: Callable[[str], Any] = lambda name: None, dialog: list[Any] | None = None) -> None:
    """The control panel, full height at the left edge. Sections other than the model's need a loaded model.
    ``thumbnail(name)`` gives the picture -> 3D section's texture references, ``dialog`` its open file dialog."""
    vp = imgui.get_main_viewport()
    imgui.set_next_window_pos(vp.pos)
    imgui.set_next_window_size(imgui.ImVec2(width, vp.size.y))
    flags = imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_resize | imgui.WindowFlags_.no_collapse
    imgui.begin("EG3D viewer", None, flags)
    imgui.push_item_width(-110)
    s, panel = state, state.panel
    if section(panel, "model", "Model"):
        draw_model(s.model)
    if info is not None and limits is not None:
        num_ws = info.num_ws
        if section(panel, "camera", "Camera"):
            draw_pose(s.camera, limits)
        if section(panel, "latent", "Latent"):
            draw_latent(s.latent)
            draw_truncation(s.truncation, num_ws)
        if section(panel, "render", "Render"):
            draw_render(s.render, 2 * info.neural_rendering_resolution)
        if section(panel, "keyframes", "Camera path (keyframes)"):
            draw_keyframes(s.keyframes)
        if section(panel, "stylemix", "Style mixing"):
            draw_stylemix(s.stylemix, num_ws)
        if section(panel, "conditioning", "Conditioning pose"):
            draw_conditioning(s.conditioning, info.pose_conditioned)
        if section(panel, "directions", "Latent directions"):
            draw_directions(s.directions, num_ws)
        if section(panel, "performance", "Performance"):
            draw_performance(s.perf)
        if section(panel, "export", "Export"):
            draw_export(s.export)
        if section(panel, "invert", "Your picture -> 3D"):
            draw_invert(s.invert, thumbnail, [] if dialog is None else dialog)
    if section(panel, "shortcuts", "Shortcuts"):
        imgui.text_wrapped("Drag: orbit | right/middle drag or Shift+drag: pan | wheel: zoom | double-click: reset")
        imgui.text(f"Camera mode: {state.camera.mode} (P toggles)")
        for keys, what in HELP:
            imgui.text(f"{keys:>7}  {what}")
    imgui.pop_item_width()
    imgui.end()


def section(panel: PanelState, name: str, label: str) -> bool:
    """A collapsing header whose open state lives in ``panel`` (a click toggles it as usual)."""
    imgui.set_next_item_open(getattr(panel, name))
    opened = imgui.collapsing_header(label)
    setattr(panel, name, opened)
    return opened


def draw_view(left: float, view: str, texture_for: Callable[[str], Texture | None],
              on_canvas: Callable[[float], None], status: Callable[[], list[str]]) -> None:
    """The view: everything right of ``left``. ``on_canvas(viewport_px)`` runs while the canvas (an invisible button
    that takes the mouse) is ImGui's last item, i.e. where mouse input on the view is read; ``status()`` gives the
    lines drawn at the bottom, asked for after the input so that they describe this frame's camera."""
    vp = imgui.get_main_viewport()
    imgui.set_next_window_pos(imgui.ImVec2(vp.pos.x + left, vp.pos.y))
    imgui.set_next_window_size(imgui.ImVec2(vp.size.x - left, vp.size.y))
    # No background: the cleared framebuffer is the backdrop, which saves a full-view fill per frame (noticeable
    # with software OpenGL).
    flags = (imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_saved_settings
             | imgui.WindowFlags_.no_bring_to_front_on_focus | imgui.WindowFlags_.no_scroll_with_mouse
             | imgui.WindowFlags_.no_background)
    imgui.push_style_var(imgui.StyleVar_.window_padding, imgui.ImVec2(0, 0))
    imgui.begin("##view", None, flags)
    imgui.pop_style_var()
    origin = imgui.get_cursor_screen_pos()
    avail = imgui.get_content_region_avail()
    w, h = max(avail.x, 1.0), max(avail.y, 1.0)
    buttons = (imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right
               | imgui.ButtonFlags_.mouse_button_middle)
    imgui.invisible_button("canvas", imgui.ImVec2(w, h), buttons)
    on_canvas(min(w, h))
    draw = imgui.get_window_draw_list()
    panels = {"side by side": ["image", "raw", "depth"], "fitting": ["target", "fit"]}.get(view, [view])
    for name, (x, y, size) in zip(panels, tile_views(w, h, len(panels)), strict=True):
        tex = texture_for(name)
        if tex is not None and not tex.empty:
            p0 = imgui.ImVec2(origin.x + x, origin.y + y)
            draw.add_image(tex.ref, p0, imgui.ImVec2(p0.x + size, p0.y + size))
            if len(panels) > 1:
                label = VIEW_LABELS[name]
                size_t = imgui.calc_text_size(label)
                draw.add_rect_filled(imgui.ImVec2(p0.x + 2, p0.y + 2),
                                     imgui.ImVec2(p0.x + 10 + size_t.x, p0.y + 10 + size_t.y), BACKING, 4.0)
                draw.add_text(imgui.ImVec2(p0.x + 6, p0.y + 6), 0xFFFFFFFF, label)
    _draw_status(draw, origin, h, status())
    imgui.end()


def tile_views(w: float, h: float, n: int) -> list[tuple[float, float, float]]:
    """Square tiles (x, y, side) for ``n`` pictures in a w x h area, centred. One picture fills the area; several are
    either a row of equal tiles or, when that covers more of the area, the first picture large with the others
    stacked beside it (a wide area) or below it (a tall one) at 1/(n-1) of its side."""
    if n == 1:
        s = min(w, h)
        return [((w - s) / 2, (h - s) / 2, s)]
    row = min(w / n, h)
    k = n - 1
    big_beside = min(w / (1 + 1 / k), h)  # big tile + a column of k tiles of side big / k
    big_below = min(w, h / (1 + 1 / k))
    big = max(big_beside, big_below)
    if n * row * row >= big * big * (1 + 1 / k):
        x0, y0 = (w - n * row) / 2, (h - row) / 2
        return [(x0 + i * row, y0, row) for i in range(n)]
    small = big / k
    if big_beside >= big_below:
        x0, y0 = (w - big - small) / 2, (h - big) / 2
        return [(x0, y0, big)] + [(x0 + big, y0 + i * small, small) for i in range(k)]
    x0, y0 = (w - big) / 2, (h - big - small) / 2
    return [(x0, y0, big)] + [(x0 + i * small, y0 + big, small) for i in range(k)]


def _draw_status(draw: imgui.ImDrawList, origin: imgui.ImVec2, h: float, lines: list[str]) -> None:
    step = imgui.get_text_line_height_with_spacing()
    y = origin.y + h - 8 - step * len(lines)
    if lines:
        width = max(imgui.calc_text_size(line).x for line in lines)
        draw.add_rect_filled(imgui.ImVec2(origin.x + 4, y - 4), imgui.ImVec2(origin.x + 16 + width, y + step * len(lines)),
                             BACKING, 4.0)
    for line in lines:
        color = 0xFF6060FF if line.startswith(ERROR_PREFIXES) else 0xFFE0E0E0
        draw.add_text(imgui.ImVec2(origin.x + 10, y), color, line)
        y += step
