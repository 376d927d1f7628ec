"""Progress and cancellation from inside a stage (a diffusion loop, a fine-tuning loop).

Owns: `stage_ticks(fn)`, which the pipeline enters around each stage with a function that
reports the stage's fraction done and raises `Cancelled` when the request was cancelled, and
`tick(fraction)`, which a backend calls between its own steps; outside a pipeline run it does
nothing. A ContextVar, so backends need no extra argument and the stage interfaces stay as they
are. `diffusers_callbacks` adapts it to a diffusers pipeline's per-step callbacks (both the
current `callback_on_step_end` and the older `callback`).
Does not own: what a fraction means for a stage (the backend decides) or how it is shown.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

_tick: ContextVar[Callable[[float], None] | None] = ContextVar("wonderzoom_stage_tick",
                                                               default=None)


@contextmanager
def stage_ticks(fn: Callable[[float], None]) -> Iterator[None]:
    token = _tick.set(fn)
    try:
        yield
    finally:
        _tick.reset(token)


def tick(fraction: float) -> None:
    """Report `fraction` (clamped to [0, 1]) of the current stage; may raise the pipeline's
    Cancelled, which the backend lets through."""
    fn = _tick.get()
    if fn is not None:
        fn(min(1.0, max(0.0, float(fraction))))


def diffusers_callbacks(start: float, span: float, steps: int) -> dict[str, Any]:
    """Keyword arguments for a diffusers pipeline call: after denoising step i of `steps`,
    tick(start + span * (i + 1) / steps)."""
    n = max(1, int(steps))

    def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict) -> dict:
        tick(start + span * (i + 1) / n)
        return kwargs

    def legacy(i: int, t: Any, latents: Any) -> None:
        tick(start + span * (i + 1) / n)

    return {"callback_on_step_end": on_step_end, "callback": legacy, "callback_steps": 1}
