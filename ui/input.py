"""Input devices -> one frame of device-neutral actions.

Owns: turning pygame events (keyboard, mouse, SDL game controllers with hot-plug, dropped
files, text typed into the prompt box) into a `FrameInput`: camera motion for
`engine.controller` plus the one-shot actions pressed this frame.
Does not own: what actions do (`ui.app`) or the default bindings (`ui.bindings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pygame

from engine.controller import CameraInput
from ui.bindings import HELD, Bindings

# SDL_GameControllerButton / SDL_GameControllerAxis numbering
PAD_BUTTON_NAMES = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick",
                    "leftshoulder", "rightshoulder", "dpup", "dpdown", "dpleft", "dpright")
AXIS_LEFT_X, AXIS_LEFT_Y, AXIS_RIGHT_X, AXIS_RIGHT_Y, AXIS_TRIGGER_LEFT, AXIS_TRIGGER_RIGHT = range(6)
AXIS_MAX = 32767.0


@dataclass
class FrameInput:
    camera: CameraInput
    pressed: set[str] = field(default_factory=set)  # one-shot actions fired this frame
    click: tuple[int, int] | None = None  # left click position (pick there)
    cursor: tuple[int, int] = (0, 0)
    text: str = ""  # characters typed into the prompt this frame
    backspaces: int = 0
    dropped_files: list[str] = field(default_factory=list)
    resized: tuple[int, int] | None = None
    exposed: bool = False  # the window was uncovered, shown or restored: its pixels are stale
    quit: bool = False


def _dead_zone(value: float, zone: float) -> float:
    """Radial-ish dead zone per axis, rescaled so output still reaches 1."""
    if abs(value) < zone:
        return 0.0
    return math.copysign((abs(value) - zone) / (1.0 - zone), value)


class InputSystem:
    def __init__(
        self,
        bindings: Bindings | None = None,
        mouse_radians_per_px: float = 0.003,
        pad_look_radians_per_s: float = 2.2,
        pad_zoom_notches_per_s: float = 6.0,
        key_zoom_notches_per_s: float = 5.0,
        dead_zone: float = 0.15,
    ) -> None:
        self.bindings = bindings or Bindings()
        self.mouse_radians_per_px = mouse_radians_per_px
        self.pad_look = pad_look_radians_per_s
        self.pad_zoom = pad_zoom_notches_per_s
        self.key_zoom = key_zoom_notches_per_s
        self.dead_zone = dead_zone
        self.text_mode = False  # the prompt box has focus: keys type text
        self.looking = False  # right mouse button held: mouse motion looks around
        self.cursor = (0, 0)
        self._held_keys: set[int] = set()
        self._held_pad: set[str] = set()
        self._axes: dict[int, dict[int, float]] = {}  # controller instance -> axis -> [-1, 1]
        self._controllers: dict[int, object] = {}  # instance id -> pygame controller
        self._key_actions = self._index_keys()

    # ---- bindings -----------------------------------------------------------------------
    def _index_keys(self) -> dict[str, list[str]]:
        """combo string ("ctrl+s", "w") -> actions"""
        index: dict[str, list[str]] = {}
        for action, names in self.bindings.keyboard.items():
            for name in names:
                index.setdefault(name, []).append(action)
        return index

    @staticmethod
    def _combo(key: int, mods: int) -> str:
        parts = []
        if mods & pygame.KMOD_CTRL:
            parts.append("ctrl")
        if mods & pygame.KMOD_ALT and key not in (pygame.K_LALT, pygame.K_RALT):
            parts.append("alt")
        parts.append(pygame.key.name(key).lower())
        return "+".join(parts)

    def _held_actions(self) -> set[str]:
        held = set()
        for key in self._held_keys:
            for action in self._key_actions.get(pygame.key.name(key).lower(), []):
                if action in HELD:
                    held.add(action)
        for button in self._held_pad:
            for action, names in self.bindings.gamepad.items():
                if button in names and action in HELD:
                    held.add(action)
        return held

    # ---- controllers --------------------------------------------------------------------
    def controller_count(self) -> int:
        return len(self._controllers)

    def _add_controller(self, device_index: int) -> None:
        from pygame._sdl2 import controller

        if not controller.get_init():
            controller.init()
        if not controller.is_controller(device_index):
            return
        pad = controller.Controller(device_index)
        instance = pad.as_joystick().get_instance_id()
        self._controllers[instance] = pad
        self._axes[instance] = {}

    def _remove_controller(self, instance: int) -> None:
        self._controllers.pop(instance, None)
        self._axes.pop(instance, None)

    def _axis(self, axis: int) -> float:
        total = 0.0
        for axes in self._axes.values():
            total += axes.get(axis, 0.0)
        return max(-1.0, min(1.0, total))

    # ---- the frame ----------------------------------------------------------------------
    def process(self, events: list[pygame.event.Event], dt: float) -> FrameInput:
        out = FrameInput(camera=CameraInput())
        look_x = look_y = 0.0
        wheel = 0.0
        for ev in events:
            t = ev.type
            if t == pygame.QUIT:
                out.quit = True
            elif t == pygame.KEYDOWN:
                self._key_down(ev, out)
            elif t == pygame.KEYUP:
                self._held_keys.discard(ev.key)
            elif t == pygame.TEXTINPUT and self.text_mode:
                out.text += ev.text
            elif t == pygame.MOUSEMOTION:
                self.cursor = tuple(ev.pos)
                if self.looking:
                    look_x += ev.rel[0] * self.mouse_radians_per_px
                    look_y -= ev.rel[1] * self.mouse_radians_per_px
            elif t == pygame.MOUSEBUTTONDOWN:
                self.cursor = tuple(ev.pos)
                if ev.button == 1:
                    out.click = tuple(ev.pos)
                    out.pressed.add("pick")
                elif ev.button == 3:
                    self.looking = True
            elif t == pygame.MOUSEBUTTONUP and ev.button == 3:
                self.looking = False
            elif t == pygame.MOUSEWHEEL:
                wheel += ev.precise_y if hasattr(ev, "precise_y") else ev.y
            elif t == pygame.DROPFILE:
                out.dropped_files.append(ev.file)
            elif t in (pygame.VIDEOEXPOSE, pygame.WINDOWEXPOSED, pygame.WINDOWSHOWN,
                       pygame.WINDOWRESTORED):
                out.exposed = True
            elif t in (pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED):
                size = (ev.w, ev.h) if t == pygame.VIDEORESIZE else (ev.x, ev.y)
                out.resized = (int(size[0]), int(size[1]))
            elif t == pygame.CONTROLLERDEVICEADDED:
                self._add_controller(ev.device_index)
            elif t == pygame.CONTROLLERDEVICEREMOVED:
                self._remove_controller(ev.instance_id)
            elif t == pygame.CONTROLLERAXISMOTION:
                self._axes.setdefault(ev.instance_id, {})[ev.axis] = ev.value / AXIS_MAX
            elif t == pygame.CONTROLLERBUTTONDOWN and 0 <= ev.button < len(PAD_BUTTON_NAMES):
                name = PAD_BUTTON_NAMES[ev.button]
                self._held_pad.add(name)
                for action, names in self.bindings.gamepad.items():
                    if name in names and action not in HELD:
                        out.pressed.add(action)
            elif t == pygame.CONTROLLERBUTTONUP and 0 <= ev.button < len(PAD_BUTTON_NAMES):
                self._held_pad.discard(PAD_BUTTON_NAMES[ev.button])
        out.cursor = self.cursor
        held = set() if self.text_mode else self._held_actions()
        dz = self.dead_zone
        move_right = _dead_zone(self._axis(AXIS_LEFT_X), dz)
        move_fwd = -_dead_zone(self._axis(AXIS_LEFT_Y), dz)
        look_x += _dead_zone(self._axis(AXIS_RIGHT_X), dz) * self.pad_look * dt
        look_y -= _dead_zone(self._axis(AXIS_RIGHT_Y), dz) * self.pad_look * dt
        triggers = (_dead_zone(max(0.0, self._axis(AXIS_TRIGGER_RIGHT)), dz)
                    - _dead_zone(max(0.0, self._axis(AXIS_TRIGGER_LEFT)), dz))
        move = [move_right, 0.0, move_fwd]
        move[0] += ("move_right" in held) - ("move_left" in held)
        move[1] += ("move_up" in held) - ("move_down" in held)
        move[2] += ("move_forward" in held) - ("move_back" in held)
        speed = (4.0 if "boost" in held else 1.0) * (0.25 if "slow" in held else 1.0)
        zoom_rate = triggers * self.pad_zoom + (("zoom_in" in held) - ("zoom_out" in held)) * self.key_zoom
        out.camera = CameraInput(
            move=tuple(max(-1.0, min(1.0, m)) for m in move),
            look=(look_x, look_y),
            zoom_steps=wheel,
            zoom_rate=zoom_rate * speed,
            zoom_anchor=self.cursor if wheel else None,
            speed=speed,
        )
        return out

    def _key_down(self, ev: pygame.event.Event, out: FrameInput) -> None:
        if self.text_mode:
            if ev.key == pygame.K_RETURN or ev.key == pygame.K_KP_ENTER:
                out.pressed.add("generate")
            elif ev.key == pygame.K_ESCAPE:
                out.pressed.add("cancel")
            elif ev.key == pygame.K_BACKSPACE:
                out.backspaces += 1
            return
        combo = self._combo(ev.key, ev.mod)
        for action in self._key_actions.get(combo, []):
            if action not in HELD:
                out.pressed.add(action)
        if not ev.mod & pygame.KMOD_CTRL:
            self._held_keys.add(ev.key)
