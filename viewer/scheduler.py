"""Progressive rendering: what to render next, and a newest-wins mailbox between the UI and the render worker.

Pure logic with an injected clock, so the behaviour (preview while moving, one full frame after rest, stale
requests dropped) is unit-tested without threads or GL.
"""
from __future__ import annotations

import threading
from dataclasses import replace

from .requests import Quality, RenderRequest, Scene


class RenderScheduler:
    """Decides, once per UI frame, whether to submit a preview, a full frame, or nothing.

    * The scene changed since the last frame -> a preview request (when progressive), restarting the rest timer.
    * The scene has not changed for ``rest_delay`` seconds and no full frame was requested for it yet -> a full one;
      at once when the user let go of the view (``released``: the end of a drag is the camera's rest).
    * A full frame that was cancelled is requested again on the next rest (``full_cancelled``).
    """

    def __init__(self) -> None:
        self._scene: Scene | None = None
        self._full_quality: Quality | None = None
        self._changed_at = 0.0
        self._full_sent = False
        self._serial = 0

    def update(self, scene: Scene, preview: Quality, full: Quality, now: float, rest_delay: float,
               progressive: bool = True, released: bool = False) -> RenderRequest | None:
        """The request to submit this frame, or None. ``released``: the mouse let go of the view this frame."""
        if scene != self._scene or full != self._full_quality:
            self._scene, self._full_quality, self._changed_at = scene, full, now
            self._full_sent = False
            if not progressive:
                return self._full(scene, full, cancellable=False)
            if preview == replace(full, preview=True):
                # The preview settings are the full settings: the "preview" already is the final frame.
                return self._full(scene, full, cancellable=False)
            return self._make(scene, preview, cancellable=False)
        if not self._full_sent and (released or now - self._changed_at >= rest_delay):
            return self._full(scene, full, cancellable=True)
        return None

    def full_cancelled(self, request: RenderRequest) -> None:
        """The worker gave up on ``request``; ask for it again if the scene is still the same."""
        if request.scene == self._scene and request.quality == self._full_quality:
            self._full_sent = False

    @property
    def at_rest(self) -> bool:
        """True once the full frame for the current scene has been requested."""
        return self._full_sent

    def _full(self, scene: Scene, full: Quality, cancellable: bool) -> RenderRequest:
        self._full_sent = True
        return self._make(scene, full, cancellable)

    def _make(self, scene: Scene, quality: Quality, cancellable: bool) -> RenderRequest:
        self._serial += 1
        return RenderRequest(scene, quality, cancellable, self._serial)


class RequestSlot:
    """Newest-wins mailbox: ``put`` replaces any request still waiting (counted as dropped), and flags the request
    being rendered for cancellation if it is cancellable. ``take`` blocks until a request (or close) arrives."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: RenderRequest | None = None
        self._active: RenderRequest | None = None
        self._cancel = threading.Event()
        self._closed = False
        self.dropped = 0

    def put(self, request: RenderRequest) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = request
            if self._active is not None and self._active.cancellable:
                self._cancel.set()
            self._cond.notify_all()

    def interrupt(self) -> None:
        """Ask the active request to stop if it is cancellable (e.g. a model load is waiting)."""
        with self._cond:
            if self._active is not None and self._active.cancellable:
                self._cancel.set()

    def take(self, timeout: float | None = None) -> RenderRequest | None:
        """Next request to render (it becomes the active one), or None on close or timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending is not None or self._closed, timeout):
                return None
            if self._closed:
                return None
            request, self._pending = self._pending, None
            self._active = request
            self._cancel.clear()
            return request

    def done(self) -> None:
        """The active request finished (or was abandoned)."""
        with self._cond:
            self._active = None
            self._cancel.clear()

    def cancelled(self) -> bool:
        """Whether the active request should stop (a newer one is waiting)."""
        return self._cancel.is_set()

    @property
    def active(self) -> RenderRequest | None:
        """The request being rendered, if any."""
        with self._cond:
            return self._active

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._active is not None or self._pending is not None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cancel.set()
            self._cond.notify_all()
