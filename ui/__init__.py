"""UI: the pygame window, input devices -> actions, HUD and prompt box (not built yet).

Will own: keyboard/mouse/gamepad bindings, the HUD overlay and the prompt entry.
Does not own: the world model or rendering (`engine`, which it imports).
"""
