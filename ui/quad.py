"""One full-screen textured quad: how the HUD's overlay and the app's last image of the world
reach the window.

Owns: `TexturedQuad`, a program + vertex array drawing one texture over the whole viewport
with a given fragment shader (it reads `uv` and samples texture unit 0).
Does not own: blending state or the framebuffer it draws into (its callers set them).
"""

from __future__ import annotations

import moderngl
import numpy as np

_VERTEX = """
#version 330
in vec2 in_pos;
out vec2 uv;
void main() {{ uv = vec2(in_pos.x * 0.5 + 0.5, {v}); gl_Position = vec4(in_pos, 0.0, 1.0); }}
"""


class TexturedQuad:
    """`fragment` samples texture unit 0 at `uv`; `rows_down`: the texture's row 0 is the top
    of the screen (a pygame surface), else the bottom (a GL framebuffer's texture)."""

    def __init__(self, ctx: moderngl.Context, fragment: str, rows_down: bool = False) -> None:
        v = "0.5 - in_pos.y * 0.5" if rows_down else "in_pos.y * 0.5 + 0.5"
        self.program = ctx.program(vertex_shader=_VERTEX.format(v=v), fragment_shader=fragment)
        self.vbo = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32).tobytes())
        self.vao = ctx.vertex_array(self.program, [(self.vbo, "2f", "in_pos")])

    def draw(self, texture: moderngl.Texture) -> None:
        texture.use(0)
        self.vao.render(moderngl.TRIANGLE_STRIP)

    def release(self) -> None:
        for obj in (self.vao, self.vbo, self.program):
            obj.release()
