"""The GLFW window, its OpenGL context and Dear ImGui (pure-Python backend from imgui-bundle).

``display_problem`` runs before any GL import so that a machine without a display gets a one-line answer
instead of a GLFW error deep inside the app.
"""
from __future__ import annotations

import os
import sys

import numpy as np


class WindowError(RuntimeError):
    """The window cannot be opened; the message is one line."""


def display_problem() -> str | None:
    """Why no window can be opened here, or None. Only Linux/BSD need a display server variable."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display found (DISPLAY and WAYLAND_DISPLAY are not set)"
    return None


def missing_packages() -> list[str]:
    import importlib.util

    names = {"imgui_bundle": "imgui-bundle", "OpenGL": "PyOpenGL", "glfw": "glfw"}
    return [pip for mod, pip in names.items() if importlib.util.find_spec(mod) is None]


class Window:
    """One window with a GL 3.3 core context and an ImGui context. Call ``begin_frame``/``end_frame`` per frame."""

    def __init__(self, title: str, width: int, height: int, vsync: bool = True) -> None:
        if os.environ.get("XDG_SESSION_TYPE") == "wayland" and not os.environ.get("PYOPENGL_PLATFORM"):
            # PyOpenGL cannot find the GLFW context under Wayland unless told to use X11 (via XWayland).
            os.environ["PYOPENGL_PLATFORM"] = "x11"
        import glfw
        import OpenGL.GL as gl
        from imgui_bundle import imgui
        from imgui_bundle.python_backends.glfw_backend import GlfwRenderer

        self._glfw, self._gl, self._imgui = glfw, gl, imgui
        errors: list[str] = []
        glfw.set_error_callback(lambda code, text: errors.append(text.decode() if isinstance(text, bytes) else str(text)))
        if not glfw.init():
            raise WindowError(f"cannot initialise GLFW ({errors[-1] if errors else 'no reason given'})")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, gl.GL_TRUE)
        self.handle = glfw.create_window(width, height, title, None, None)
        if not self.handle:
            glfw.terminate()
            raise WindowError(f"cannot open an OpenGL 3.3 window ({errors[-1] if errors else 'no reason given'})")
        glfw.make_context_current(self.handle)
        glfw.swap_interval(1 if vsync else 0)
        imgui.create_context()
        io = imgui.get_io()
        io.config_flags |= imgui.ConfigFlags_.nav_enable_keyboard
        io.set_ini_filename("")  # no imgui.ini next to wherever the viewer was started
        imgui.style_colors_dark()
        style = imgui.get_style()
        # Slider grabs sit behind the value's digits: a narrow, dimmer grab keeps them readable.
        style.grab_min_size = 6.0
        style.set_color_(imgui.Col_.slider_grab, imgui.ImVec4(0.26, 0.59, 0.98, 0.45))
        style.set_color_(imgui.Col_.slider_grab_active, imgui.ImVec4(0.26, 0.59, 0.98, 0.7))
        self.ui_scale = self._content_scale()
        if self.ui_scale != 1.0:
            imgui.get_style().scale_all_sizes(self.ui_scale)
            imgui.get_style().font_scale_dpi = self.ui_scale
        self._backend = GlfwRenderer(self.handle)
        self._dropped: list[str] = []  # paths of files dropped on the window, until ``take_dropped``
        glfw.set_drop_callback(self.handle, lambda window, paths: self._dropped.extend(str(p) for p in paths))
        self.renderer_name = gl.glGetString(gl.GL_RENDERER).decode(errors="replace")

    def _content_scale(self) -> float:
        """UI scale for high-DPI screens where window coordinates are pixels (Windows, X11). Where they are points
        (macOS), the framebuffer is already larger than the window and ImGui scales by itself."""
        glfw = self._glfw
        if tuple(glfw.get_framebuffer_size(self.handle)) != tuple(glfw.get_window_size(self.handle)):
            return 1.0
        xs, _ = glfw.get_window_content_scale(self.handle)
        return min(max(float(xs), 1.0), 4.0)

    @property
    def should_close(self) -> bool:
        return bool(self._glfw.window_should_close(self.handle))

    def request_close(self) -> None:
        self._glfw.set_window_should_close(self.handle, True)

    def begin_frame(self, wait: float = 0.0) -> bool:
        """Start a frame. With ``wait`` > 0, first sleep until an input event or ``wake`` (at most ``wait`` seconds):
        an idle viewer then costs no CPU. Returns True if it woke early (something happened)."""
        woke = False
        if wait > 0:
            t0 = self._glfw.get_time()
            self._glfw.wait_events_timeout(wait)
            woke = self._glfw.get_time() - t0 < wait * 0.95
        else:
            self._glfw.poll_events()
        self._backend.process_inputs()
        self._imgui.new_frame()
        return woke

    def take_dropped(self) -> list[str]:
        """Files dropped on the window since the last call (drag and drop from a file manager)."""
        paths, self._dropped = self._dropped, []
        return paths

    def wake(self) -> None:
        """Interrupt ``begin_frame``'s wait from any thread (e.g. when the render worker has a new frame)."""
        self._glfw.post_empty_event()

    def end_frame(self, clear: tuple[float, float, float] = (0.1, 0.1, 0.11)) -> None:
        """Draw the UI into the back buffer (not shown yet; see ``present``)."""
        gl = self._gl
        w, h = self.framebuffer_size
        gl.glViewport(0, 0, w, h)
        gl.glClearColor(*clear, 1.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        self._imgui.render()
        self._backend.render(self._imgui.get_draw_data())

    def present(self) -> None:
        self._glfw.swap_buffers(self.handle)

    def screenshot(self) -> np.ndarray:
        """The back buffer just drawn by ``end_frame`` (call before ``present``): uint8 [H, W, 3], top row first."""
        gl = self._gl
        w, h = self.framebuffer_size
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        gl.glReadBuffer(gl.GL_BACK)
        data = gl.glReadPixels(0, 0, w, h, gl.GL_RGB, gl.GL_UNSIGNED_BYTE)
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)[::-1].copy()

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        w, h = self._glfw.get_framebuffer_size(self.handle)
        return int(w), int(h)

    def close(self) -> None:
        self._backend.shutdown()
        self._imgui.destroy_context()
        self._glfw.destroy_window(self.handle)
        self._glfw.terminate()
