"""Fake pipeline runners for the generation service tests (imported by the spawned worker).

Each has the runner signature `runner(request, config, progress, cancel) -> ZoomResult`.
A gate is a file path in `request.settings["_gate"]`: the runner waits until it exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from engine.messages import ZoomRequest, ZoomResult
from engine.splats import SplatChunk


def tiny_chunk(level: int = 1) -> SplatChunk:
    n = 4
    return SplatChunk.from_world(np.arange(12, dtype=np.float64).reshape(n, 3),
                                 np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), -3.0),
                                 np.zeros(n), np.zeros((n, 3)), np.full(n, 0.01), level=level)


def _wait_for_gate(request: ZoomRequest, cancel, limit_s: float = 60.0) -> bool:
    """True when the gate opened, False when cancelled."""
    gate = request.settings.get("_gate")
    end = time.monotonic() + limit_s
    while gate is not None and not Path(gate).exists():
        if cancel():
            return False
        if time.monotonic() > end:
            raise TimeoutError("gate never opened")
        time.sleep(0.01)
    return not cancel()


def gated(request: ZoomRequest, config, progress, cancel) -> ZoomResult:
    progress("observe", 0.0)
    if not _wait_for_gate(request, cancel):
        return ZoomResult(request.request_id, False, error="cancelled")
    progress("optimize", 1.0)
    return ZoomResult(request.request_id, True, chunks={0: tiny_chunk(request.level)},
                      backend={"name": "fake", "pid": os.getpid()}, timings={"total": 0.0})


def hang(request: ZoomRequest, config, progress, cancel) -> ZoomResult:
    """Ignores cancellation and never finishes (a hung model)."""
    progress("observe", 0.0)
    while True:
        time.sleep(0.05)


def crash(request: ZoomRequest, config, progress, cancel) -> ZoomResult:
    if request.prompt == "raise":
        raise RuntimeError("the model exploded\nsecond line")
    if request.prompt == "exit":
        os._exit(3)
    return gated(request, config, progress, cancel)
