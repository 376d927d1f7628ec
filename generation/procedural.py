"""A procedural stand-in generator: grows a finer level without any model.

Owns: `ProceduralGenerator`, which answers `ZoomRequest`s in a background thread by taking
the observed view at C_i (the app renders it into `ZoomRequest.observation`), adding
deterministic procedural detail, and turning it into pixel-aligned splats. It speaks the same protocol as the real generation service
(`submit`, `poll`, `cancel`, `close`), so the app, its tests and its benchmarks run before (and
without) the real pipeline.
Does not own: prompt understanding (it ignores the prompt's meaning) or optimisation.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from engine.synthetic import pixel_aligned_splats, procedural_texture

OPACITY = 0.9  # no optimiser here: start from an opaque-looking surface


class ProceduralGenerator:
    name = "procedural"
    version = "1"
    needs_observation = True  # it has no renderer: the app sends C_i's view with each request

    def __init__(self, gate: Callable[[ZoomRequest], None] | None = None,
                 work_seconds: float = 0.0) -> None:
        self._gate = gate  # tests: block in the worker until released
        self._work_seconds = work_seconds  # benchmarks: simulate a slow model (sleeps, no GIL)
        self._requests: queue.Queue[ZoomRequest | None] = queue.Queue()
        self._events: queue.Queue[ProgressEvent | ZoomResult] = queue.Queue()
        self._cancelled: set[int] = set()
        self._thread = threading.Thread(target=self._run, name="procedural-generator", daemon=True)
        self._thread.start()

    # ---- protocol -----------------------------------------------------------------------
    def submit(self, request: ZoomRequest) -> None:
        self._requests.put(request)

    def cancel(self, request_id: int) -> None:
        self._cancelled.add(request_id)

    def poll(self) -> list[ProgressEvent | ZoomResult]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)

    # ---- worker -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            req = self._requests.get()
            if req is None:
                return
            try:
                self._events.put(self._generate(req))
            except Exception as exc:  # a failed stage is a failed result, never a crash
                self._events.put(ZoomResult(req.request_id, False, error=f"{type(exc).__name__}: {exc}",
                                            request=req))

    def _generate(self, req: ZoomRequest) -> ZoomResult:
        t0 = time.perf_counter()

        def progress(stage: str, fraction: float) -> None:
            self._events.put(ProgressEvent(req.request_id, stage, fraction, time.perf_counter() - t0))

        progress("observe", 0.0)
        if self._gate is not None:
            self._gate(req)
        if req.request_id in self._cancelled:
            return ZoomResult(req.request_id, False, error="cancelled", request=req)
        if self._work_seconds:
            time.sleep(self._work_seconds)
        if req.observation is None:
            raise ValueError("the request carries no observed view")
        observed_rgb, observed_depth = req.observation.rgb, req.observation.depth
        cam = req.camera
        progress("detail", 0.4)
        detail = procedural_texture(cam.height, cam.width, seed=req.seed, detail=3.0) - 0.5
        rgb = np.clip(np.asarray(observed_rgb, np.float64) + 0.6 * detail, 0.0, 1.0)
        depth = np.asarray(observed_depth, np.float64)
        progress("splats", 0.8)
        level = int(req.level)
        chunk = pixel_aligned_splats(cam, depth, rgb, level=level,
                                     mask=np.isfinite(depth) & (depth > 0), opacity=OPACITY)
        if len(chunk) == 0:
            raise ValueError("nothing visible at the picked point")
        progress("done", 1.0)
        return ZoomResult(
            req.request_id, True, chunks={0: chunk},
            backend={"name": self.name, "version": self.version, "seed": req.seed, "settings": {}},
            timings={"total": time.perf_counter() - t0}, request=req)
