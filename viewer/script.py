"""Scripted sessions (``launch_viewer.py --script``): a JSON list of steps applied to the running app.

Each step is an object with one action key and an optional ``"frame"`` (not before that UI frame)::

    [{"orbit": [120, -40]},                      # drag by (dx, dy) pixels, as with the left mouse button
     {"zoom": 2},                                # wheel notches (positive zooms in)
     {"pan": [30, 0]},                           # drag with the right mouse button
     {"set": {"latent.seed": 7, "render.view": "depth"}},   # any state field, by dotted path
     {"action": "next_seed"},                    # any keyboard-shortcut action (see viewer.actions.ACTIONS)
     {"load": "path/to/model.pkl"},              # load a checkpoint (then e.g. {"wait": "model"})
     {"drop": "car.png"},                        # as if the file were dropped on the window (a picture is fitted)
     {"wait": "invert"},                         # until the picture's fit is done
     {"wait": "full"},                           # until the full-quality frame of the current view is shown
     {"wait": 0.5},                              # seconds
     {"snapshot": "out.png", "frame": 40},       # wait for the full frame, then save a window screenshot
     {"capture": "now.png"},                     # save a window screenshot of this frame, whatever is shown
     {"hold": {"keys": ["w", "left"], "frames": 10}}]   # hold keys down for 10 UI frames (synthetic key events)

Parsing, state edits and ``ScriptRunner`` (which applies the steps) are pure (no GL), so scripts are validated
before the window opens and their effects can be tested without one.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import actions
from . import camera_controller as cc
from .state import AppState

KINDS = ("orbit", "zoom", "pan", "set", "action", "load", "drop", "wait", "snapshot", "capture", "hold")
HOLD_KEYS = (*cc.FLY_KEYS, *cc.ARROW_KEYS)  # the keys a "hold" step may press (``inputs.HELD_KEYS``)
WAIT_CONDITIONS = ("full", "model", "export", "directions", "invert", "video")


class ScriptError(ValueError):
    """A script that cannot be run; the message is one line."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: Any
    frame: int = 0


def parse_script(source: str) -> list[Step]:
    """Steps from inline JSON or from a path to a JSON file."""
    text = source
    if not source.lstrip().startswith(("[", "{")):
        try:
            text = Path(source).read_text()
        except OSError as e:
            raise ScriptError(f"cannot read script {source}: {e.strerror or e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScriptError(f"script is not valid JSON: {e}") from None
    if not isinstance(raw, list):
        raise ScriptError("a script is a JSON list of steps")
    return [_step(i, item) for i, item in enumerate(raw)]


def _step(i: int, item: Any) -> Step:
    if not isinstance(item, dict):
        raise ScriptError(f"step {i}: expected an object, got {item!r}")
    kinds = [k for k in item if k in KINDS]
    unknown = [k for k in item if k not in KINDS and k != "frame"]
    if len(kinds) != 1 or unknown:
        raise ScriptError(f"step {i}: needs exactly one of {', '.join(KINDS)} (and optionally 'frame'), got {list(item)}")
    kind, value = kinds[0], item[kinds[0]]
    frame = item.get("frame", 0)
    if not isinstance(frame, int) or frame < 0:
        raise ScriptError(f"step {i}: 'frame' must be a non-negative integer")
    ok = {
        "orbit": _is_pair(value), "pan": _is_pair(value), "zoom": _is_number(value),
        "set": isinstance(value, dict), "action": isinstance(value, str), "load": isinstance(value, str),
        "drop": isinstance(value, str),
        "snapshot": isinstance(value, str), "capture": isinstance(value, str),
        "wait": value in WAIT_CONDITIONS or (_is_number(value) and value >= 0),
        "hold": _is_hold(value),
    }[kind]
    if not ok:
        raise ScriptError(f"step {i}: bad value for {kind!r}: {value!r}")
    if kind == "set":
        probe = AppState()
        for path, v in value.items():
            set_field(probe, path, v)  # validates the path and the value's type now, not mid-run
    return Step(kind, tuple(value) if kind in ("orbit", "pan") else value, frame)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_hold(v: Any) -> bool:
    return (isinstance(v, dict) and set(v) == {"keys", "frames"} and isinstance(v["keys"], list)
            and bool(v["keys"]) and all(k in HOLD_KEYS for k in v["keys"]) and isinstance(v["frames"], int)
            and v["frames"] > 0)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)


def set_field(state: AppState, path: str, value: Any) -> None:
    """``state.<path> = value`` for a dotted path such as ``"camera.yaw"``, converted to the field's type."""
    parts = path.split(".")
    if len(parts) != 2:
        raise ScriptError(f"field path must be 'group.field', got {path!r}")
    group = getattr(state, parts[0], None)
    if group is None or not dataclasses.is_dataclass(group):
        raise ScriptError(f"unknown state group {parts[0]!r}")
    names = {f.name for f in dataclasses.fields(group)}
    if parts[1] not in names:
        raise ScriptError(f"unknown field {path!r}")
    current = getattr(group, parts[1])
    try:
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise TypeError
            converted: Any = value
        elif isinstance(current, int):
            converted = int(value) if float(value) == int(value) else _raise()
        elif isinstance(current, float):
            converted = float(value)
        elif isinstance(current, tuple):
            converted = tuple(float(v) for v in value)
            if len(converted) != len(current):
                raise TypeError
        elif isinstance(current, list):
            converted = [float(v) for v in value]
        else:
            converted = value if isinstance(value, type(current)) or current is None else _raise()
    except (TypeError, ValueError):
        raise ScriptError(f"bad value for {path}: {value!r}") from None
    setattr(group, parts[1], converted)


def _raise() -> Any:
    raise TypeError


class ScriptRunner:
    """Applies a script's steps to the app state, at most one per frame.

    One step per frame because a step's effects (requests handled later in the frame, the UI drawn in the next one)
    must be visible before the next step is judged, e.g. ``{"wait": "export"}`` after an export.
    """

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.index = 0
        self._wait_started: float | None = None
        self._held: tuple[str, ...] = ()  # keys of a running "hold" step
        self._hold_frames = 0

    @property
    def finished(self) -> bool:
        return self.index >= len(self.steps) and not self._held

    @property
    def held_keys(self) -> tuple[str, ...]:
        """The keys a "hold" step keeps down this frame (the app turns them into key events)."""
        return self._held

    def advance(self, state: AppState, limits: cc.CameraLimits | None, frame: int, now: float,
                conditions: Mapping[str, Callable[[], bool]]) -> str | None:
        """Apply the next step if its frame has come and it is ready. ``limits`` is None until a model is loaded;
        ``conditions`` answers each of ``WAIT_CONDITIONS``. Returns the path of a screenshot the step asks for."""
        if self._held:  # a hold runs for its frames before the next step
            self._hold_frames -= 1
            if self._hold_frames <= 0:
                self._held = ()
            return None
        if self.finished:
            return None
        step = self.steps[self.index]
        if frame < step.frame or not self._ready(step, limits, now, conditions):
            return None
        self.index += 1
        self._wait_started = None
        if step.kind == "hold":
            self._held, self._hold_frames = tuple(step.value["keys"]), step.value["frames"]
            return None
        return apply_step(state, limits, step)

    def _ready(self, step: Step, limits: cc.CameraLimits | None, now: float,
               conditions: Mapping[str, Callable[[], bool]]) -> bool:
        if step.kind == "snapshot":
            return conditions["full"]()
        if step.kind != "wait":
            # Everything but a load waits for the first model: loading it resets the camera and render settings.
            return limits is not None or step.kind == "load"
        if isinstance(step.value, (int, float)):
            if self._wait_started is None:
                self._wait_started = now
            return now - self._wait_started >= step.value
        return conditions[step.value]()


def apply_step(state: AppState, limits: cc.CameraLimits | None, step: Step) -> str | None:
    """Apply one step to ``state``; returns the screenshot path of a snapshot or capture step, else None."""
    assert limits is not None or step.kind in ("load", "wait")
    if step.kind == "orbit":
        state.camera = cc.orbit(state.camera, *step.value, limits)
    elif step.kind == "pan":
        state.camera = cc.pan(state.camera, *step.value, 512.0, limits)
    elif step.kind == "zoom":
        state.camera = cc.zoom(state.camera, step.value, limits)
    elif step.kind == "set":
        for path, value in step.value.items():
            set_field(state, path, value)
    elif step.kind == "action":
        if step.value not in actions.ACTIONS:
            raise ScriptError(f"unknown action {step.value!r}; known: {', '.join(actions.ACTIONS)}")
        actions.ACTIONS[step.value](state, limits)
    elif step.kind == "load":
        # Marked loading now (not when the request is handled later this frame) so that a following
        # {"wait": "model"} step waits for this load.
        state.model.path, state.model.load_requested, state.model.loading = step.value, step.value, True
    elif step.kind == "drop":
        actions.open_path(state, step.value)
    elif step.kind in ("snapshot", "capture"):
        return step.value
    return None
