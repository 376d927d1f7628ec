"""The frame loop: a fixed stage order and an injected clock.

Owns: `STAGE_ORDER` (the one place that says what runs when in a frame), `FrameContext`, and
`FrameLoop.step()`, which runs one frame: each stage in that order, then an optional FPS cap
sleeps on the clock. One stage is the engine's own: `apply_deferred` applies the world's
queued structural changes (spawns, despawns, hot-loaded levels), the frame's one point of
structural change, as Bevy's `apply_deferred`; it is a stage in the tuple, so the order
shows it.
What a frame draws is decided once, by the `detect_changes` stage, into `FrameContext.draw`:
`DRAW_WORLD` (something the picture shows changed), `DRAW_OVERLAY` (only the HUD: it is drawn
over the last image of the world) or `DRAW_NOTHING` (nothing changed: no stage draws or
presents, and the loop sleeps out `idle_fps`'s frame time, so a waiting user's CPU goes to
whatever else runs, such as a generator). A loop without that stage draws every frame.
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
    "detect_changes",  # what this frame draws: the world, only the HUD, or nothing
    "render",  # visible chunks -> uploads -> draw
    "hud",  # overlay on top of the frame
    APPLY_DEFERRED,  # queued structural changes take effect (engine-owned)
    "present",  # screenshots, then the buffer flip
)


DRAW_WORLD = "world"  # draw the world, the HUD over it, present
DRAW_OVERLAY = "overlay"  # the last image of the world, the HUD over it, present
DRAW_NOTHING = "nothing"  # nothing the picture shows changed: draw and present nothing
DRAWS = (DRAW_WORLD, DRAW_OVERLAY, DRAW_NOTHING)


@dataclass
class FrameContext:
    world: World
    frame: int
    dt: float  # seconds since the previous frame started (clamped)
    started: float  # clock time this frame started
    clock: Clock
    data: dict[str, Any] = field(default_factory=dict)  # stage-to-stage scratch for this frame
    draw: str = DRAW_WORLD  # set by `detect_changes`; one of DRAWS


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
        idle_fps: float | None = 60.0,
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
        self.idle_fps = idle_fps  # a frame that draws nothing takes at least 1 / idle_fps
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
        if ctx.draw not in DRAWS:
            raise ValueError(f"FrameContext.draw must be one of {DRAWS}, got {ctx.draw!r}")
        idle = ctx.draw == DRAW_NOTHING
        if not idle:  # the frame statistics describe frames that drew something
            self.times.add(self.clock.now() - start)
        period = max(1.0 / self.fps_cap if self.fps_cap else 0.0,
                     1.0 / self.idle_fps if idle and self.idle_fps else 0.0)
        if period:
            spare = period - (self.clock.now() - start)
            if spare > 0:
                self.clock.sleep(spare)
        self.frame += 1
        return ctx

    def run(self, frames: int | None = None) -> None:
        """Step until `running` is cleared (by a quit action) or `frames` have run."""
        while self.running and (frames is None or self.frame < frames):
            self.step()
