"""Camera path: keyframes (add the view, go to, reorder, delete, seconds to the next), playback and a timeline,
constant speed / loop, save / load as JSON, and the path rendered to an MP4 with a progress bar (cancellable)."""
from __future__ import annotations

import dataclasses
import math

from imgui_bundle import imgui

from eg3d_core.camera_path import DURATION, FPS, CameraPath
from eg3d_core.errors import EG3DError
from eg3d_viewer.state import KeyframesState

from .common import status


def _total(state: KeyframesState) -> float:
    try:
        return CameraPath(tuple(state.keyframes), fps=int(state.fps), loop=state.loop).total_seconds
    except EG3DError:
        return 0.0


def _latent(k) -> str:
    return f"seed {k.seed}" if k.seed is not None else "ws" if k.ws is not None else "-"


def draw_keyframes(state: KeyframesState) -> bool:
    changed = False
    n = len(state.keyframes)
    if imgui.button("Add view (K)"):
        state.add_requested = True
    imgui.set_item_tooltip("the current camera, FOV and latent (a seed with its psi, else the ws on screen); keyframes "
                           "look at the model's pivot")
    imgui.same_line()
    imgui.begin_disabled(n < 2)
    if imgui.button("Pause (L)" if state.playing else "Play (L)"):
        total = _total(state)
        state.playing = not state.playing
        if state.playing and state.time >= total - 1e-9:
            state.time = 0.0
    imgui.end_disabled()
    imgui.same_line()
    imgui.begin_disabled(n == 0)
    if imgui.button("Clear"):
        state.keyframes, state.selected, state.playing, state.time = (), -1, False, 0.0
        changed = True
    imgui.set_item_tooltip("remove every keyframe (a saved path stays on disk)")
    imgui.end_disabled()

    total = _total(state)
    imgui.set_next_item_width(-1)
    imgui.begin_disabled(n < 2)
    moved, t = imgui.slider_float("##timeline", min(state.time, total), 0.0, max(total, 1e-3),
                                  f"%.2f / {total:.2f} s", imgui.SliderFlags_.always_clamp)
    imgui.end_disabled()
    imgui.set_item_tooltip("timeline: drag to scrub the path (previews while moving, full quality once it rests)")
    if moved:
        state.time, state.scrubbed, state.playing = t, True, False

    if n:
        flags = imgui.TableFlags_.row_bg | imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.sizing_fixed_fit
        if imgui.begin_table("keyframes", 4, flags):
            imgui.table_setup_column("view", imgui.TableColumnFlags_.width_stretch)
            imgui.table_setup_column("latent")
            imgui.table_setup_column("seconds")
            imgui.table_setup_column("edit")
            edit: tuple[str, int] | None = None
            for i, k in enumerate(state.keyframes):
                imgui.push_id(i)
                imgui.table_next_row()
                imgui.table_next_column()
                label = f"{i + 1}  yaw {math.degrees(k.yaw):+.0f} pitch {math.degrees(k.pitch):+.0f}"
                row = imgui.SelectableFlags_.span_all_columns | imgui.SelectableFlags_.allow_overlap
                if imgui.selectable(label, i == state.selected, row)[0]:
                    state.goto_requested = i
                latent = f"psi {k.psi:.2f}" if k.seed is not None else "ws latent"
                imgui.set_item_tooltip(f"go to keyframe {i + 1}: radius {k.radius or 0:.2f}, FOV {k.fov or 0:.1f} deg, "
                                       f"{latent}")
                imgui.table_next_column()
                imgui.text(_latent(k))
                imgui.table_next_column()
                last = i == n - 1 and not state.loop
                imgui.begin_disabled(last)  # the last keyframe's duration only counts in a loop
                imgui.set_next_item_width(64)
                c, d = imgui.drag_float("##d", k.duration, 0.05, DURATION[0], 60.0, "%.2f s",
                                        imgui.SliderFlags_.always_clamp)
                imgui.end_disabled()
                imgui.set_item_tooltip("seconds to the next keyframe")
                if c:
                    edit = ("duration", i)
                    new_duration = d
                imgui.table_next_column()
                imgui.begin_disabled(i == 0)
                if imgui.arrow_button("##up", imgui.Dir.up):
                    edit = ("up", i)
                imgui.end_disabled()
                imgui.same_line(0, 2)
                imgui.begin_disabled(i == n - 1)
                if imgui.arrow_button("##down", imgui.Dir.down):
                    edit = ("down", i)
                imgui.end_disabled()
                imgui.same_line(0, 2)
                if imgui.small_button("x"):
                    edit = ("delete", i)
                imgui.set_item_tooltip(f"delete keyframe {i + 1}")
                imgui.pop_id()
            imgui.end_table()
            if edit is not None:
                changed = True
                kind, i = edit
                kfs = list(state.keyframes)
                if kind == "duration":
                    kfs[i] = dataclasses.replace(kfs[i], duration=new_duration)
                elif kind in ("up", "down"):
                    j = i - 1 if kind == "up" else i + 1
                    kfs[i], kfs[j] = kfs[j], kfs[i]
                    state.selected = j if state.selected == i else i if state.selected == j else state.selected
                else:
                    del kfs[i]
                    state.selected = min(state.selected, len(kfs) - 1) if state.selected != i else -1
                state.keyframes = tuple(kfs)
                state.playing = False
    else:
        status("No keyframes yet: move the camera, then Add view (K); two or more make a path.")

    imgui.set_next_item_width(90)
    _, state.duration = imgui.drag_float("New keyframes' seconds", state.duration, 0.05, DURATION[0], 60.0, "%.2f s",
                                         imgui.SliderFlags_.always_clamp)
    c1, state.constant_speed = imgui.checkbox("Constant speed", state.constant_speed)
    imgui.set_item_tooltip("the camera moves the same distance every frame (the total time is kept); off: each "
                           "segment takes its keyframe's seconds, easing in and out at the ends")
    imgui.same_line()
    c2, state.loop = imgui.checkbox("Loop", state.loop)
    imgui.same_line()
    imgui.set_next_item_width(-40)
    c3, state.fps = imgui.slider_int("FPS", state.fps, FPS[0], 60)
    changed |= c1 or c2 or c3
    if c1 or c2:
        state.scrubbed = n > 1 and not state.playing  # show where the changed path is at the current time

    imgui.set_next_item_width(-110)
    _, state.file = imgui.input_text("##file", state.file)
    imgui.set_item_tooltip("camera path JSON (eg3d-camera-path)")
    imgui.same_line()
    if imgui.button("Save"):
        state.save_requested = True
    imgui.same_line()
    if imgui.button("Load"):
        state.load_requested = True

    imgui.set_next_item_width(-110)
    _, state.video_file = imgui.input_text("##video", state.video_file)
    imgui.same_line()
    if state.busy:
        if imgui.button("Cancel"):
            state.cancel_requested = True
        imgui.progress_bar(state.progress, imgui.ImVec2(-1, 0), f"{100 * state.progress:.0f}%")
    else:
        imgui.begin_disabled(n == 0)
        if imgui.button("Render MP4"):
            state.render_requested = True
        imgui.end_disabled()
        imgui.set_item_tooltip("the path at full quality (the Render panel's settings), on a background thread")
    status(state.message, error=state.error)
    return changed or state.add_requested or state.save_requested or state.load_requested or state.render_requested
