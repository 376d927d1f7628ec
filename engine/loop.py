"""The frame loop: a fixed stage order, an injected clock, a per-frame work budget.

Owns: `STAGE_ORDER` (the one place that says what runs when in a frame), `FrameContext`, and
`FrameLoop.step()` which runs one frame: each stage in order, then the deferred structural
changes of the world are applied at one point, then an optional FPS cap sleeps.
Does not own: what the stages do; the app (`ui/`) and the renderer provide them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from engine.clock import Clock, FrameTimes
from engine.world import World

# input -> camera -> streaming -> render -> hud -> apply (deferred commands / hot-loads)
STAGE_ORDER: tuple[str, ...] = ("input", "camera", "streaming", "render", "hud", "apply")


@dataclass
class FrameContext:
    world: World
    frame: int
    dt: float  # seconds since the previous frame started (clamped)
    started: float  # clock time this frame started
    budget_s: float  # time for optional work (uploads, hot-loads) this frame
    clock: Clock
    data: dict[str, Any] = field(default_factory=dict)  # stage-to-stage scratch for this frame

    def time_left(self) -> float:
        return self.budget_s - (self.clock.now() - self.started)


Stage = Callable[[FrameContext], None]


class FrameLoop:
    def __init__(
        self,
        world: World,
        stages: Mapping[str, Stage],
        clock: Clock | None = None,
        fps_cap: float | None = None,
        work_budget_s: float = 0.008,
        max_dt: float = 0.25,
    ) -> None:
        unknown = set(stages) - set(STAGE_ORDER)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; the order is {STAGE_ORDER}")
        self.world = world
        self.stages = dict(stages)
        self.clock = clock or Clock()
        self.fps_cap = fps_cap
        self.work_budget_s = work_budget_s
        self.max_dt = max_dt
        self.frame = 0
        self.times = FrameTimes()
        self.running = True
        self._last_start: float | None = None

    def step(self) -> FrameContext:
        """Run one whole frame."""
        start = self.clock.now()
        dt = 0.0 if self._last_start is None else min(self.max_dt, start - self._last_start)
        self._last_start = start
        ctx = FrameContext(self.world, self.frame, dt, start, self.work_budget_s, self.clock)
        for name in STAGE_ORDER:
            if name == "apply":
                self.world.apply_commands()
            stage = self.stages.get(name)
            if stage is not None:
                stage(ctx)
        self.times.add(self.clock.now() - start)
        if self.fps_cap:
            spare = 1.0 / self.fps_cap - (self.clock.now() - start)
            if spare > 0:
                self.clock.sleep(spare)
        self.frame += 1
        return ctx

    def run(self, frames: int | None = None) -> None:
        """Step until `running` is cleared (by a quit action) or `frames` have run."""
        while self.running and (frames is None or self.frame < frames):
            self.step()
