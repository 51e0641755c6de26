"""Small helpers shared by the widgets: status colours and degree <-> radian fields."""
from __future__ import annotations

import math

from imgui_bundle import imgui

ERROR = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
OK = imgui.ImVec4(0.55, 0.85, 0.55, 1.0)
DIM = imgui.ImVec4(0.65, 0.65, 0.65, 1.0)


def status(text: str, error: bool = False, ok: bool = False) -> None:
    """A wrapped status line, red for errors."""
    if not text:
        return
    imgui.push_style_color(imgui.Col_.text, ERROR if error else OK if ok else DIM)
    imgui.text_wrapped(text)
    imgui.pop_style_color()


def angle_field(label: str, radians: float, lo_deg: float, hi_deg: float, speed: float = 0.5) -> tuple[bool, float]:
    """A drag field shown in degrees (easier to read and type) for a value kept in radians."""
    changed, deg = imgui.drag_float(label, math.degrees(radians), speed, lo_deg, hi_deg, "%.1f deg",
                                    imgui.SliderFlags_.always_clamp)
    return changed, math.radians(deg)


def combo_str(label: str, value: str, options: tuple[str, ...], labels: dict[str, str] | None = None) -> tuple[bool, str]:
    """A combo over string options; unknown values fall back to the first option."""
    shown = [labels.get(o, o) if labels else o for o in options]
    index = options.index(value) if value in options else 0
    changed, index = imgui.combo(label, index, shown)
    return changed, options[index]
