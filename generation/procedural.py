"""A procedural stand-in generator: grows a finer level without any model.

Owns: `ProceduralGenerator`, which answers `ZoomRequest`s in a background thread by taking
the observed view at C_i (the app renders it into `ZoomRequest.observation`), adding
deterministic procedural detail, and turning it into pixel-aligned splats. It speaks the
same protocol as the real generation service (`submit`, `poll`, `cancel`, `close`), so the
app, its tests and its benchmarks run before (and without) the real pipeline. And
`fade_into_parent`, the same join for `wonderzoom demo`'s fractal world. Both join a level to
its parent as the pipeline's harmonize stage does (issue 21): its colours fade into how the
parent looks at C_i over a margin along its border (`generation.tone.border_weight`), so at
its edge a level is what was there before; a procedural level, which has nothing of the
parent's to keep, fades all of its detail there.
Does not own: prompt understanding (it ignores the prompt's meaning) or optimisation.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

from engine.camera import Camera
from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from engine.splats import SplatChunk
from engine.synthetic import pixel_aligned_splats, procedural_texture
from generation.tone import border_weight, feather

OPACITY = 0.9  # no optimiser here: start from an opaque-looking surface
BORDER_FADE = 0.25  # the fade's width / the level's short side (the pipeline's: 0.1)
# (the demo's seam where `play` opens it: 2.06 at 0.1, 1.07 at 0.25; docs/benchmarks.md)


def border_fade(height: int, width: int) -> np.ndarray:  # [H, W] in [0, 1]
    """0 on a level's outermost pixels, 1 from `BORDER_FADE` of its short side inwards."""
    return border_weight(height, width, BORDER_FADE * min(height, width))


def fade_into_parent(camera: Camera,  # C_i, the new level's camera
                     rgb: np.ndarray,  # [H, W, 3] the new level's colours as drawn
                     coarser: list[tuple[Camera, SplatChunk]],  # the levels before, root first
                     ) -> np.ndarray:  # [H, W, 3]
    """`rgb` faded into the coarser levels as they look at `camera` along its border; where
    they leave a pixel see-through, the level's own colour. "As they look" is as the app
    draws them: the engine's reference renderer (LoD links and all), which the app's GL
    paths reproduce. (Where splats tie in depth, as on a flat plane seen head-on, the draw
    order of the ties decides what shows, and rasterizers differ: on the flat demo the
    generation rasterizer's picture differed from the app's by 10/255 on average; with the
    demo's relief every renderer agrees to 1e-5.)"""
    from engine.lod import build_lod_index
    from engine.render.prepare import prepare
    from engine.render.reference import render

    index = build_lod_index([(cam, {i: chunk}) for i, (cam, chunk) in enumerate(coarser)])
    seen = render(prepare(camera, [(chunk, index.links[i])
                                   for i, (_, chunk) in enumerate(coarser)]), camera)
    weight = np.maximum(border_fade(*rgb.shape[:2]), seen.alpha < 0.5)
    return np.clip(feather(rgb, np.clip(seen.rgb, 0.0, 1.0), weight), 0.0, 1.0)


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
                self._events.put(ZoomResult(req.request_id, False,
                                            error=f"{type(exc).__name__}: {exc}", request=req))

    def _generate(self, req: ZoomRequest) -> ZoomResult:
        t0 = time.perf_counter()

        def progress(stage: str, fraction: float) -> None:
            self._events.put(ProgressEvent(req.request_id, stage, fraction,
                                           time.perf_counter() - t0))

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
        detail *= border_fade(cam.height, cam.width)[..., None]  # at its edge: O_i itself
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
