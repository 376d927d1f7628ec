"""Stage 8, optimize: fit the new splats' opacity, rotation and scale; the old world is frozen.

Owns: `OptimizeInput` / `OptimizeOutput` and the builtin backend, which is
`generation.splat_opt.optimize_splats` (Adam on 0.8 L1 + 0.2 (1 - SSIM) over the main view and
the auxiliary views, the old world rendered modulated at each view's camera and never changed;
positions, colours and s_native stay bit-identical).
Does not own: the optimiser itself, the views, or the LoD links the old world is drawn with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from engine.camera import Camera
from engine.splats import SplatChunk
from engine.zoom import Scene
from generation.registry import Registry


@dataclass(frozen=True, eq=False)
class TargetView:
    camera: Camera
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]
    mask: np.ndarray | None = None  # [H, W] loss weights
    weight: float = 1.0


@dataclass(frozen=True, eq=False)
class OptimizeInput:
    chunks: tuple[SplatChunk, ...]  # the new splats
    main: TargetView
    aux: tuple[TargetView, ...] = ()
    old_scene: Scene = ()  # frozen old world (chunk, links), links as after the append
    iterations: int = 12
    aux_views_per_step: int = 1
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True, eq=False)
class OptimizeOutput:
    chunks: tuple[SplatChunk, ...]
    iterations_run: int
    initial_loss: float
    final_loss: float
    main_psnr: float


class OptimizeBackend(Protocol):
    def __call__(self, inp: OptimizeInput, progress: Callable[[float], None] | None,
                 cancel: Callable[[], bool] | None) -> OptimizeOutput: ...


REGISTRY: Registry[OptimizeBackend] = Registry("optimize")


@REGISTRY.register("builtin")
class AdamOptimizer:
    def __call__(self, inp: OptimizeInput, progress=None, cancel=None) -> OptimizeOutput:
        from generation.splat_opt import OptimizeConfig, View, optimize_splats

        def view(t: TargetView) -> View:
            return View(t.camera, t.rgb, t.mask, t.weight)

        config = OptimizeConfig(iterations=inp.iterations, seed=inp.seed,
                                num_threads=inp.threads,
                                aux_views_per_step=inp.aux_views_per_step)
        res = optimize_splats(
            list(inp.chunks), view(inp.main), [view(a) for a in inp.aux],
            old_world=list(inp.old_scene), config=config,
            progress=None if progress is None else
            (lambda p: progress(p.iteration / max(1, p.iterations))),
            cancel=cancel)
        s = res.stats
        return OptimizeOutput(res.chunks, s.iterations_run, s.initial_loss, s.final_loss,
                              s.main_psnr)


def run(inp: OptimizeInput, backend: str = "builtin",
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None) -> OptimizeOutput:
    return REGISTRY.get(backend)(inp, progress, cancel)
