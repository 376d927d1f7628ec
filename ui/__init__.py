"""UI: the app's window, input devices -> actions, the HUD and the prompt box.

Owns: `app` (the frame's stages and what each action does), `window` (pygame + GL context),
`input` and `bindings` (keyboard / mouse / gamepad -> actions), `hud`, `redraw` (drawing
only what changed, and the last image of the world), `quad` (the full-screen quad both draw
with), `session` (the open world's history and chunks), `jobs` (zooms in flight),
`autopilot` (the headless demo) and `web` (the world exported as a web page, and its read-only server).
Does not own: the world model or rendering (`engine`, the only package it imports), file
formats or generation (they come in through `App`'s constructor, wired by `cli`).
"""
