"""The frame loop: a fixed stage order and an injected clock.

Owns: `STAGE_ORDER` (the one place that says what runs when in a frame), `FrameContext`, and
`FrameLoop.step()`, which runs one frame: each stage in that order, then an optional FPS cap
sleeps on the clock. One stage is the engine's own: `apply_deferred` applies the world's
queued structural changes (spawns, despawns, hot-loaded levels), the frame's one point of
structural change, as Bevy's `apply_deferred`; it is a stage in the tuple, so the order
shows it.
Does not own: what the other stages do; the app (`ui/`) and the renderer provide them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from engine.clock import Clock, FrameTimes
from engine.world import World

APPLY_DEFERRED = "apply_deferred"
STAGE_ORDER: tuple[str, ...] = (
    "input",  # devices -> actions for this frame
    "camera",  # actions -> the fly/zoom camera
    "poll_generation",  # finished zooms become queued hot-loads; progress; save outcomes
    "render",  # visible chunks -> uploads -> draw
    "hud",  # overlay on top of the frame
    APPLY_DEFERRED,  # queued structural changes take effect (engine-owned)
    "present",  # screenshots, then the buffer flip
)


@dataclass
class FrameContext:
    world: World
    frame: int
    dt: float  # seconds since the previous frame started (clamped)
    started: float  # clock time this frame started
    clock: Clock
    data: dict[str, Any] = field(default_factory=dict)  # stage-to-stage scratch for this frame


Stage = Callable[[FrameContext], None]


def apply_deferred(ctx: FrameContext) -> None:
    ctx.world.apply_commands()


class FrameLoop:
    def __init__(
        self,
        world: World,
        stages: Mapping[str, Stage],
        clock: Clock | None = None,
        fps_cap: float | None = None,
        max_dt: float = 0.25,
    ) -> None:
        unknown = set(stages) - set(STAGE_ORDER)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; the order is {STAGE_ORDER}")
        if APPLY_DEFERRED in stages:
            raise ValueError(f"{APPLY_DEFERRED!r} is the engine's own stage")
        self.world = world
        self.stages = {**stages, APPLY_DEFERRED: apply_deferred}
        self.clock = clock or Clock()
        self.fps_cap = fps_cap
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
        ctx = FrameContext(self.world, self.frame, dt, start, self.clock)
        for name in STAGE_ORDER:
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
