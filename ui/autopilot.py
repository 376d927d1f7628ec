"""The headless demo of `play` without a display: a steady zoom down the world's zoom chain.

Owns: `ZoomAutopilot`, an `on_frame` hook for `ui.app.App` that turns the camera toward the
deepest level's centre, puts the cursor on it, then posts mouse-wheel events so the camera
zooms from the root level to a little past the deepest one over the run, asking for a
screenshot every `every` frames (the zoom-sweep frames `make run` writes).
Does not own: the app or the frames it draws.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pygame

from ui.session import WorldState


def deepest_point(state: WorldState) -> np.ndarray:
    """World point [3] the head step's camera looks at (the centre of the deepest level)."""
    step = state.history.steps[state.history.head]
    pts = np.concatenate([state.chunk(c).world_positions() for c in step.chunk_ids])
    if step.camera is None:
        return pts.mean(axis=0)
    depth = float(np.median(step.camera.points_to_camera(pts)[:, 2]))
    cam = step.camera
    return cam.unproject(np.array([[cam.cx, cam.cy]]), np.array([depth]))[0]


def notches_to_deepest(state: WorldState, wheel_step: float = 1.25, past: float = 1.5) -> float:
    """Wheel notches that zoom from the root level's scale to `past`x beyond the deepest."""
    path = state.history.path()
    scales = [state.level_scale(s) for s in (path[0], path[-1])]
    return math.log(max(scales[0] / scales[1], 1.0) * past) / math.log(wheel_step)


class ZoomAutopilot:
    def __init__(self, frames: int, out_dir: Path, every: int = 15, settle: int = 10) -> None:
        self.frames = frames
        self.out_dir = Path(out_dir)
        self.every = every
        self.settle = settle  # frames at the end without zooming (the eased zoom lands)
        self.written: list[Path] = []

    def __call__(self, app, frame: int) -> None:
        w, h = app.window.size
        zooming = max(self.frames - self.settle, 1)
        if frame == 0:
            app.controller.look_at(deepest_point(app.state))
            pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, pos=(w // 2, h // 2),
                                                 rel=(0, 0), buttons=(0, 0, 0)))
        if frame < self.frames - self.settle:
            notches = notches_to_deepest(app.state) / zooming
            pygame.event.post(pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=1, precise_x=0.0,
                                                 precise_y=notches, flipped=False, which=0))
        if frame % self.every == self.every - 1:
            path = self.out_dir / f"sweep_{len(self.written):03d}.png"
            self.written.append(app.request_screenshot(path))
