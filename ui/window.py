"""The app's window: a pygame display with an OpenGL 3.3 context that moderngl draws into.

Owns: initialising SDL's display, fonts and game controllers; the window and its GL context
(Mesa's faster compatibility profile, see `engine.render.gl`); the title; reading the
presented frame back as a PNG screenshot; and the buffer flip.
Does not own: what is drawn (the app's stages) or input (`ui.input`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import moderngl
import pygame

from engine.render.gl import prefer_compatibility_profile


class Window:
    def __init__(self, size: tuple[int, int], title: str, vsync: bool = True) -> None:
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
        pygame.display.init()
        pygame.font.init()
        pygame.joystick.init()
        from pygame._sdl2 import controller

        controller.init()
        prefer_compatibility_profile()  # faster points on Mesa (see engine.render.gl)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MAJOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MINOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_PROFILE_MASK,
                                        pygame.GL_CONTEXT_PROFILE_CORE)
        flags = pygame.OPENGL | pygame.DOUBLEBUF | pygame.RESIZABLE
        self.size = (int(size[0]), int(size[1]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pygame.display.set_mode(self.size, flags, vsync=1 if vsync else 0)
        # without vsync (Xvfb, some drivers) the app's frame cap paces the loop instead, so
        # SDL's warning is no news to the user; any other warning is passed on
        self.vsync = vsync and not any("vsync" in str(w.message) for w in caught)
        for w in caught:
            if "vsync" not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.set_title(title)
        self.ctx = moderngl.create_context()
        for i in range(pygame.joystick.get_count()):  # controllers plugged in before start
            pygame.event.post(pygame.event.Event(pygame.CONTROLLERDEVICEADDED, device_index=i))

    def set_title(self, title: str) -> None:
        pygame.display.set_caption(f"WonderZoom — {title}")

    def resized(self, size: tuple[int, int]) -> None:
        """The user resized the window (SDL already resized the surface)."""
        self.size = (int(size[0]), int(size[1]))

    def save_screenshot(self, path: Path) -> None:
        """The back buffer (world + HUD) as a PNG; call before `present` (a flip leaves the
        back buffer undefined)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.ctx.screen.read(viewport=(0, 0, *self.size), components=3, alignment=1)
        pygame.image.save(pygame.image.frombytes(data, self.size, "RGB", True), str(path))

    def present(self) -> None:
        pygame.display.flip()

    def close(self) -> None:
        self.ctx.release()
        pygame.display.quit()
