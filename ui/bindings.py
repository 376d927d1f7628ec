"""Device-neutral actions and their default bindings; rebinding from a TOML file.

Owns: the list of actions the app understands, the default keyboard / mouse / gamepad
bindings, parsing a user's TOML rebinding file (with one-line errors), and the help text.
Does not own: reading devices (`ui.input`) or what an action does (`ui.app`).

A TOML file rebinds by action name; each value is a list of inputs:
    [keyboard]              # pygame key names: "w", "left shift", "f1", "ctrl+s"
    move_forward = ["w", "up"]
    [gamepad]               # SDL game-controller buttons: "a", "b", "x", "y", "back",
    pick = ["a"]            # "start", "leftshoulder", "rightshoulder", "dpup", ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UserError
from engine.textfiles import display_name, parse_toml, read_text_file

# held actions (state while pressed)
HELD = ("move_forward", "move_back", "move_left", "move_right", "move_up", "move_down",
        "zoom_in", "zoom_out", "boost", "slow")
# one-shot actions (fire on press)
PRESSED = ("pick", "generate", "cancel", "undo", "redo", "save", "screenshot", "toggle_hud",
           "help", "history", "quit")
ACTIONS = HELD + PRESSED

DESCRIPTIONS = {
    "move_forward": "fly forward", "move_back": "fly back", "move_left": "strafe left",
    "move_right": "strafe right", "move_up": "fly up", "move_down": "fly down",
    "zoom_in": "zoom in (toward the point under the cursor)", "zoom_out": "zoom out",
    "boost": "move/zoom 4x faster", "slow": "move/zoom 4x slower",
    "pick": "pick the point under the cursor (a marker appears)",
    "generate": "type a prompt for the picked point / send it (Enter)",
    "cancel": "close the prompt / cancel the running generation",
    "undo": "step back in history (to the parent step)", "redo": "step forward again",
    "save": "save the world now", "screenshot": "save a PNG screenshot",
    "toggle_hud": "show/hide the HUD", "help": "show/hide this help",
    "history": "show/hide the history panel", "quit": "quit",
}

DEFAULT_KEYBOARD: dict[str, list[str]] = {
    "move_forward": ["w", "up"], "move_back": ["s", "down"], "move_left": ["a", "left"],
    "move_right": ["d", "right"], "move_up": ["e"], "move_down": ["q"],
    "zoom_in": ["=", "page up"], "zoom_out": ["-", "page down"],
    "boost": ["left shift"], "slow": ["left alt"],
    "pick": ["space"], "generate": ["return"], "cancel": ["escape"],
    "undo": ["ctrl+z", "backspace"], "redo": ["ctrl+y"], "save": ["ctrl+s"],
    "screenshot": ["f12"], "toggle_hud": ["f2"], "help": ["f1"], "history": ["h"],
    "quit": ["ctrl+q"],
}
# Mouse: left click = pick, right button held = look, wheel = zoom toward the cursor.
MOUSE_HELP = ["left click: pick the point under the cursor",
              "right button + drag: look around", "wheel: zoom toward the cursor"]
DEFAULT_GAMEPAD: dict[str, list[str]] = {
    "move_up": ["rightshoulder"], "move_down": ["leftshoulder"], "pick": ["a"],
    "generate": ["y"], "cancel": ["b"], "undo": ["back"], "save": ["start"],
    "boost": ["x"], "screenshot": [], "help": ["guide"],
}
GAMEPAD_HELP = ["left stick: fly", "right stick: look", "right/left trigger: zoom in/out"]
GAMEPAD_BUTTONS = ("a", "b", "x", "y", "back", "guide", "start", "leftstick", "rightstick",
                   "leftshoulder", "rightshoulder", "dpup", "dpdown", "dpleft", "dpright")


MAX_BINDINGS_BYTES = 64 << 10


class BindingsError(UserError, ValueError):
    """A rebinding file is unreadable or names an unknown action/key/button."""


@dataclass
class Bindings:
    keyboard: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_KEYBOARD.items()})
    gamepad: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_GAMEPAD.items()})

    def keys_for(self, action: str) -> list[str]:
        return self.keyboard.get(action, [])

    def help_lines(self) -> list[str]:
        lines = []
        for action in ACTIONS:
            keys = ", ".join(self.keyboard.get(action, [])) or "-"
            pad = ", ".join(self.gamepad.get(action, []))
            lines.append(f"{keys:<22} {DESCRIPTIONS[action]}" + (f"   [pad: {pad}]" if pad else ""))
        return lines + MOUSE_HELP + GAMEPAD_HELP


def _valid_key(name: str) -> bool:
    import pygame

    *mods, key = name.split("+")
    if any(m not in ("ctrl", "shift", "alt") for m in mods):
        return False
    if not key:
        return False
    import warnings

    try:
        with warnings.catch_warnings():  # key names do not need pygame.init()
            warnings.simplefilter("ignore")
            return pygame.key.key_code(key) != pygame.K_UNKNOWN
    except ValueError:
        return False


def load_bindings(path: str | Path | None) -> Bindings:
    """Defaults, overridden by the TOML file at `path` if given."""
    bindings = Bindings()
    if path is None:
        return bindings
    text = read_text_file(path, MAX_BINDINGS_BYTES, BindingsError, "bindings file")
    path = display_name(path)
    data = parse_toml(text, path, BindingsError)
    for section in data:
        if section not in ("keyboard", "gamepad"):
            raise BindingsError(f"{path}: unknown section [{section}] (use [keyboard] or [gamepad])")
    for device, table in data.items():
        if not isinstance(table, dict):
            raise BindingsError(f"{path}: [{device}] must be a table")
        for action, inputs in table.items():
            if action not in ACTIONS:
                raise BindingsError(f"{path}: unknown action {action!r} in [{device}]")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                raise BindingsError(f"{path}: {device}.{action} must be a list of names")
            for name in inputs:
                ok = _valid_key(name.lower()) if device == "keyboard" else name.lower() in GAMEPAD_BUTTONS
                if not ok:
                    raise BindingsError(f"{path}: {device}.{action}: unknown {'key' if device == 'keyboard' else 'button'} {name!r}")
            getattr(bindings, device)[action] = [i.lower() for i in inputs]
    return bindings
