"""Stage 8, optimize: fit the new splats' opacity, rotation and scale; the old world is frozen.

Owns: `OptimizeInput` / `OptimizeOutput` and the builtin backend, which is
`generation.splat_opt.optimize_splats` (Adam on 0.8 L1 + 0.2 (1 - SSIM) over the main view and
the auxiliary views, the old world rendered modulated at each view's camera and never changed;
positions, colours and s_native stay bit-identical), fitted with the display's antialias
term where the level is made smaller than it is shown (`generation.sizes`); and
`close_coverage`, which makes the fitted level solid where the fit left it thin.
Does not own: the optimiser itself, the views, or the LoD links the old world is drawn with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np

from engine.camera import Camera
from engine.render.reference import LOW_PASS_PX2
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
    low_pass_px2: float = LOW_PASS_PX2  # the rasterizer's antialias term (the viewers')


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
                                aux_views_per_step=inp.aux_views_per_step,
                                low_pass_px2=inp.low_pass_px2)
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


COVERED_ALPHA = 0.95  # a level counts as solid where its own render is at least this opaque
MAX_COVERAGE_GAIN = 4.0  # close_coverage makes a splat at most as opaque as this many copies
COVERAGE_ROUNDS = 2  # close_coverage: rounds of render and raise


def close_coverage(chunks: tuple[SplatChunk, ...],  # the fitted new level
                   camera: Camera,  # C_i at the working size
                   low_pass_px2: float = LOW_PASS_PX2,  # the fit's antialias term
                   ) -> tuple[tuple[SplatChunk, ...], float]:
    """The fitted level made solid: the fit leaves thin spots where overlapping splats at
    opacity ~0.6 blend colours well at the working grid, and the old world no longer shows
    through a level at its own scale, so the background does (a white region drawn 5-10 %
    see-through comes out grey over black, and no colour above 1 can make up for it; issue 21,
    docs/benchmarks.md "A level fitted for the screen it is shown on"). The level alone is
    rendered at `camera` (on a grid twice as fine: the working grid samples only the splats'
    centres, where a level is most opaque) and each splat's opacity becomes 1 - (1 - o)^k,
    as opaque as k copies of itself, with k = log(1 - COVERED_ALPHA) / log(1 - alpha) at
    the thinnest spot next to its centre (1 where the level is solid, at most
    MAX_COVERAGE_GAIN): a pixel's
    transmittance prod(1 - o_i g_i) goes toward its k-th power (exactly for the splats' centre
    fragments, less for their flanks, hence `COVERAGE_ROUNDS` rounds). Everything but opacity
    stays bit for bit. Returns (chunks, the level's mean alpha before)."""
    first = None
    for _ in range(COVERAGE_ROUNDS):
        chunks, alpha = _raise_opacity(chunks, camera, low_pass_px2)
        first = alpha if first is None else first
    return chunks, first


def _raise_opacity(chunks: tuple[SplatChunk, ...], camera: Camera, low_pass_px2: float
                   ) -> tuple[tuple[SplatChunk, ...], float]:
    """One round of `close_coverage`: (chunks, the level's mean alpha before the round)."""
    from scipy.ndimage import minimum_filter

    from generation.stages.observe import render_view, splat_pixels

    # sampled at twice the working grid (the term scales with the pixel's area), so the dips
    # between the splats' centres are seen, and each splat answers for the thinnest spot
    # within ~0.75 working pixels of its centre
    fine = camera.resampled(2 * camera.width, 2 * camera.height)
    term = min(4.0 * low_pass_px2, LOW_PASS_PX2)
    _, alpha, _, _ = render_view(fine, tuple((c, None) for c in chunks), term)
    mean = float(alpha.mean())
    alpha = minimum_filter(alpha, size=3, mode="nearest")
    with np.errstate(divide="ignore"):
        gain = np.log1p(-COVERED_ALPHA) / np.log(np.clip(1.0 - alpha, 1e-12, 1.0))
    gain = np.clip(np.where(alpha < COVERED_ALPHA, gain, 1.0), 1.0, MAX_COVERAGE_GAIN)
    out = []
    for chunk in chunks:
        rows, v, u = splat_pixels(fine, chunk)
        k = gain[v, u]
        rows, k = rows[k > 1.0], k[k > 1.0]
        if len(rows) == 0:
            out.append(chunk)
            continue
        o = chunk.opacities().astype(np.float64)[rows]
        o_new = np.clip(1.0 - (1.0 - o) ** k, o, 1.0 - 1e-6)
        logits = chunk.opacity_logits.copy()
        logits[rows] = np.log(o_new / (1.0 - o_new)).astype(logits.dtype)
        out.append(replace(chunk, opacity_logits=logits))
    return tuple(out), mean
