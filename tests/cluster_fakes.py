"""Fake pipeline runners for the Ray cluster tests and bench/cluster.py (imported by the Ray
worker processes, which run with the repository on their path).

Each has the runner signature `runner(request, config, progress, cancel) -> ZoomResult`.
Test hooks travel in `request.settings` (keys starting with '_' are ignored by the config):
`_gate` (a file the runner waits for, as in tests/gen_fakes.py), `_hold_s` (seconds the
"model" stage holds, standing in for a GPU call), `_splats` (size of the result),
`_malformed` ("nan" or "shape": a broken result the app must refuse), `_ignore_cancel` (a
model that does not stop when asked), `_exit_at_start` (a file: the worker appends its pid to
it and dies before its first progress report). The result's backend says which process ran it
and when it finished (wall clock: the benchmark times the way back to the app).
"""

from __future__ import annotations

import os
import time

import numpy as np

from engine.messages import ZoomRequest, ZoomResult
from engine.splats import SplatChunk
from tests.gen_fakes import _wait_for_gate, tiny_chunk


def chunk_of(n: int, level: int) -> SplatChunk:
    rng = np.random.default_rng(n)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return SplatChunk.from_world(rng.normal(0, 1, (n, 3)), q, np.full((n, 3), -4.0),
                                 np.zeros(n), rng.uniform(-1, 1, (n, 3)), np.full(n, 0.01),
                                 level=level)


def run(request: ZoomRequest, config, progress, cancel) -> ZoomResult:
    """observe -> (gate) -> optimize in `_hold_s` steps -> a result of `_splats` splats."""
    s = request.settings
    if s.get("_exit_at_start"):
        with open(s["_exit_at_start"], "a") as f:
            f.write(f"{os.getpid()}\n")
        os._exit(1)
    progress("observe", 0.0)
    progress("observe", 1.0)
    if not _wait_for_gate(request, cancel):
        return ZoomResult(request.request_id, False, error="cancelled")
    if request.prompt == "raise":
        raise RuntimeError("the model exploded\nsecond line")
    hold = float(s.get("_hold_s", 0.0))
    end = time.monotonic() + hold
    progress("optimize", 0.0)
    while time.monotonic() < end:
        if cancel() and not s.get("_ignore_cancel"):
            return ZoomResult(request.request_id, False, error="cancelled")
        progress("optimize", 1.0 - (end - time.monotonic()) / hold)
        time.sleep(0.02)
    progress("optimize", 1.0)
    n = int(s.get("_splats", 0))
    chunk = chunk_of(n, request.level) if n else tiny_chunk(request.level)
    bad = s.get("_malformed")
    if bad == "nan":
        chunk.positions[1, 2] = np.nan
    elif bad == "shape":
        object.__setattr__(chunk, "rotations", chunk.rotations[:, :3].copy())
    return ZoomResult(request.request_id, True, chunks={0: chunk},
                      backend={"name": "fake", "pid": os.getpid(), "done_at": time.time()},
                      timings={"total": hold})

