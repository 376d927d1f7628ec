"""A real SDL virtual game controller (SDL_JoystickAttachVirtual through ctypes) for tests.

The SDL2 inside the pygame wheel makes a virtual device whose axes and buttons produce real
CONTROLLER* events, exactly like a plugged-in pad (hot-plug included)."""

from __future__ import annotations

import ctypes
import glob
import os

import pygame

SDL_JOYSTICK_TYPE_GAMECONTROLLER = 1
N_AXES, N_BUTTONS = 6, 15


def _sdl() -> ctypes.CDLL:
    folder = os.path.join(os.path.dirname(pygame.__file__), os.pardir, "pygame.libs")
    libs = sorted(glob.glob(os.path.join(folder, "libSDL2-2*")))
    if not libs:  # pygame linked against a system SDL2
        return ctypes.CDLL("libSDL2-2.0.so.0")
    return ctypes.CDLL(libs[0])


class VirtualGamepad:
    def __init__(self) -> None:
        self.sdl = _sdl()
        self.sdl.SDL_JoystickAttachVirtual.restype = ctypes.c_int
        self.sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
        self.sdl.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
        self.sdl.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
        self.sdl.SDL_JoystickDetachVirtual.argtypes = [ctypes.c_int]
        self.sdl.SDL_JoystickClose.argtypes = [ctypes.c_void_p]
        self.index = self.sdl.SDL_JoystickAttachVirtual(SDL_JOYSTICK_TYPE_GAMECONTROLLER, N_AXES, N_BUTTONS, 0)
        if self.index < 0:
            raise RuntimeError("SDL could not attach a virtual controller")
        self.handle = self.sdl.SDL_JoystickOpen(self.index)

    def axis(self, axis: int, value: float) -> None:
        """value in [-1, 1] (triggers: 0..1)"""
        self.sdl.SDL_JoystickSetVirtualAxis(self.handle, axis, int(max(-32768, min(32767, value * 32767))))

    def button(self, button: int, down: bool) -> None:
        self.sdl.SDL_JoystickSetVirtualButton(self.handle, button, 1 if down else 0)

    def detach(self) -> None:
        self.sdl.SDL_JoystickClose(self.handle)
        self.sdl.SDL_JoystickDetachVirtual(self.index)
