"""What a frame of the app has to draw: the world, only the HUD, or nothing.

Owns: `RedrawTracker`, which remembers what the last drawn frames showed — the camera (pose,
intrinsics, image size, clip planes) and the world (its identity and `World.changes`) under
the last image of the world, whether the renderer still had chunks on their way then, and
the last HUD content — and answers each frame with one of `engine.loop.DRAWS`; and
`WorldImage`, the last image of the world (a texture the world is drawn into, shown on the
window with one full-screen quad: a framebuffer blit to the window drew nothing on GLX with
llvmpipe under Xvfb). An unchanged view is not redrawn at full cost: a user waiting for a
zoom leaves the CPU to the generator.
Does not own: drawing the world or the HUD, the HUD's content or the frame's stage order
(`engine.loop`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Hashable

import moderngl

from engine.camera import Camera
from engine.loop import DRAW_NOTHING, DRAW_OVERLAY, DRAW_WORLD
from ui.quad import TexturedQuad

FRAGMENT = """
#version 330
uniform sampler2D image;
in vec2 uv;
out vec4 color;
void main() { color = vec4(texture(image, uv).rgb, 1.0); }
"""


def camera_key(camera: Camera) -> tuple[float, ...]:
    """Everything of a camera a rendered image depends on, as a hashable tuple."""
    return (*camera.T_world_camera.ravel().tolist(), camera.fx, camera.fy, camera.cx,
            camera.cy, camera.width, camera.height, camera.near, camera.far)


def hud_key(state: Any) -> Any:
    """A HUD state without the frame statistics (they describe the last drawn frame and
    would otherwise ask for a new frame every frame)."""
    return replace(state, fps=0.0, frame_ms=0.0)


class RedrawTracker:
    def __init__(self) -> None:
        self._world: Hashable | None = None  # what the last image of the world showed
        self._busy = True  # the renderer had more to upload after it
        self._hud: Any = None
        self._has_image = False

    def plan(self, world: Hashable, hud: Any, *, force_world: bool = False,
             force_present: bool = False) -> str:
        """This frame's draw: DRAW_WORLD if the world's picture may differ from the last one
        (another camera or world, chunks that were still uploading, `force_world`: a resized
        or uncovered window), DRAW_OVERLAY if only the HUD changed (or a frame must be
        presented, e.g. for a screenshot), else DRAW_NOTHING."""
        if force_world or self._busy or not self._has_image or world != self._world:
            return DRAW_WORLD
        if force_present or hud != self._hud:
            return DRAW_OVERLAY
        return DRAW_NOTHING

    def drew_world(self, world: Hashable, busy: bool) -> None:
        """The world was drawn for `world`; `busy`: the renderer had chunks pending or
        uploaded some (the next frame must draw again to show them)."""
        self._world, self._busy, self._has_image = world, busy, True

    def drew_hud(self, hud: Any) -> None:
        self._hud = hud

    def forget(self) -> None:
        """The last image is gone (a new GL framebuffer, a new renderer): draw anew."""
        self._has_image = False


class WorldImage:
    """The last image of the world: a window-sized texture the renderer draws into, shown
    on a framebuffer (the window) by one full-screen quad, pixel for pixel."""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.quad = TexturedQuad(ctx, FRAGMENT)
        self.texture: moderngl.Texture | None = None
        self.framebuffer: moderngl.Framebuffer | None = None

    def target(self, size: tuple[int, int]) -> tuple[moderngl.Framebuffer, bool]:
        """The framebuffer to draw the world into at `size`; True if it was just made (it
        holds no image yet)."""
        if self.framebuffer is not None and self.texture.size == tuple(size):
            return self.framebuffer, False
        self._release_image()
        self.texture = self.ctx.texture(tuple(size), 4)
        self.texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.framebuffer = self.ctx.framebuffer(color_attachments=[self.texture])
        return self.framebuffer, True

    def show(self, framebuffer: moderngl.Framebuffer, size: tuple[int, int]) -> None:
        """Cover `framebuffer` (its viewport set to `size`) with the image, blending off."""
        framebuffer.use()
        self.ctx.viewport = (0, 0, *size)
        self.ctx.disable(moderngl.BLEND)
        self.quad.draw(self.texture)

    def _release_image(self) -> None:
        for obj in (self.framebuffer, self.texture):
            if obj is not None:
                obj.release()
        self.framebuffer = self.texture = None

    def release(self) -> None:
        self._release_image()
        self.quad.release()
