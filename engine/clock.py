"""Time for the frame loop, injected so tests drive frames with a fake clock.

Owns: `Clock` (a time function + sleep), `FakeClock` for tests and frame-time statistics.
Does not own: what happens in a frame (`engine.loop`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Clock:
    now: Callable[[], float] = time.perf_counter  # seconds, monotonic
    sleep: Callable[[float], None] = time.sleep


class FakeClock(Clock):
    """Time advances only when told to (or when the loop sleeps)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        super().__init__(now=lambda: self.t, sleep=self.advance)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@dataclass
class FrameTimes:
    """Rolling window of frame durations (seconds)."""

    window: int = 120
    _times: deque = field(default_factory=deque)

    def add(self, seconds: float) -> None:
        self._times.append(seconds)
        while len(self._times) > self.window:
            self._times.popleft()

    @property
    def last_ms(self) -> float:
        return 1000.0 * self._times[-1] if self._times else 0.0

    @property
    def fps(self) -> float:
        if not self._times:
            return 0.0
        mean = float(np.mean(self._times))
        return 1.0 / mean if mean > 0 else 0.0
