"""Your picture -> 3D: open (or drop) a picture, fit it with a progress bar and a preview of the fit next to the
picture, cancel; then save the fitted latent, or load one saved earlier (``eg3d invert`` writes the same files)."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any

from imgui_bundle import imgui

from eg3d_viewer.state import InvertState

from .common import status

# The programs the portable file dialog runs on Linux (one of them must be installed for "Open image...").
DIALOG_PROGRAMS = ("zenity", "matedialog", "qarma", "kdialog")
THUMBNAIL = 176  # side of the picture and fit previews, at UI scale 1


def file_dialog_available() -> bool:
    return not sys.platform.startswith("linux") or any(shutil.which(p) for p in DIALOG_PROGRAMS)


def draw_invert(state: InvertState, thumbnail: Callable[[str], Any], dialog: list[Any]) -> bool:
    """``thumbnail(name)`` gives the texture reference of "target" / "fit" (or None); ``dialog`` holds the open file
    dialog between frames (at most one element)."""
    imgui.text_wrapped("Drop a picture on the window, or open one: the model fits a latent and its camera to it.")
    imgui.set_next_item_width(-110)
    _, state.image_path = imgui.input_text("Picture", state.image_path)
    imgui.begin_disabled(state.busy or not file_dialog_available())
    if imgui.button("Open image..."):
        from imgui_bundle import portable_file_dialogs as pfd

        dialog[:] = [pfd.open_file("Open a picture", state.image_path or ".",
                                   ["Images", "*.png *.jpg *.jpeg *.webp *.bmp", "All files", "*"])]
    imgui.end_disabled()
    if not file_dialog_available():
        imgui.set_item_tooltip("no file dialog program (zenity or kdialog): type a path or drop the file")
    if dialog and dialog[0].ready():
        chosen = dialog[0].result()
        dialog.clear()
        if chosen:
            state.image_path, state.fit_requested = chosen[0], True
    imgui.same_line()
    imgui.set_next_item_width(-110)
    _, state.steps = imgui.slider_int("Steps", state.steps, 10, 400)
    _, state.estimate_camera = imgui.checkbox("Estimate the picture's camera", state.estimate_camera)
    if not state.estimate_camera:
        _, state.yaw = _degrees("Yaw##picture", state.yaw, -180.0, 180.0)
        _, state.pitch = _degrees("Pitch##picture", state.pitch, -80.0, 80.0)
    if state.busy:
        if imgui.button("Cancel"):
            state.cancel_requested = True
        imgui.same_line()
        imgui.progress_bar(state.progress, imgui.ImVec2(-1, 0), f"{state.stage} {100 * state.progress:.0f}%")
    else:
        imgui.begin_disabled(not state.image_path)
        if imgui.button("Fit picture"):
            state.fit_requested = True
        imgui.end_disabled()
    if state.has_preview:
        size = imgui.ImVec2(THUMBNAIL * imgui.get_style().font_scale_dpi, THUMBNAIL * imgui.get_style().font_scale_dpi)
        for i, name in enumerate(("target", "fit")):
            ref = thumbnail(name)
            if ref is not None:
                if i:
                    imgui.same_line()
                imgui.image(ref, size)
                imgui.set_item_tooltip("the picture as the model sees it" if name == "target" else "the current fit")
    status(state.message, error=state.error)
    imgui.separator_text("Latent file")
    imgui.set_next_item_width(-110)
    _, state.latent_path = imgui.input_text("File##latent", state.latent_path)
    if imgui.button("Save latent"):
        state.save_requested = True
    imgui.same_line()
    if imgui.button("Load latent"):
        state.load_requested = True
    return state.fit_requested or state.cancel_requested or state.save_requested or state.load_requested


def _degrees(label: str, value: float, lo: float, hi: float) -> tuple[bool, float]:
    return imgui.drag_float(label, value, 0.5, lo, hi, "%.1f deg", imgui.SliderFlags_.always_clamp)
