"""An OpenGL texture holding one RGB image, drawn by Dear ImGui."""
from __future__ import annotations

import numpy as np
import OpenGL.GL as gl
from imgui_bundle import imgui


class Texture:
    """RGB uint8 texture; re-allocated only when the image size changes, otherwise updated in place."""

    def __init__(self) -> None:
        self.id = int(gl.glGenTextures(1))
        self.width = 0
        self.height = 0
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        # Linear magnification: low-resolution previews are stretched to the view and should look soft, not blocky.
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, gl.GL_LINEAR)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_S, gl.GL_CLAMP_TO_EDGE)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_T, gl.GL_CLAMP_TO_EDGE)

    def upload(self, image: np.ndarray) -> None:
        """image: uint8 [H, W, 3]."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"texture images must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        h, w = image.shape[:2]
        data = np.ascontiguousarray(image)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)  # rows of 3-byte pixels are not 4-byte aligned
        if (w, h) != (self.width, self.height):
            gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGB8, w, h, 0, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, data)
            self.width, self.height = w, h
        else:
            gl.glTexSubImage2D(gl.GL_TEXTURE_2D, 0, 0, 0, w, h, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, data)

    @property
    def ref(self) -> imgui.ImTextureRef:
        return imgui.ImTextureRef(self.id)

    @property
    def empty(self) -> bool:
        return self.width == 0

    def delete(self) -> None:
        if self.id:
            gl.glDeleteTextures([self.id])
            self.id = 0
