"""Stage 7, splat init: pixel-aligned splats for the new level (docs/design.md idea 1).

Owns: `SplatInitInput` / `SplatInitOutput` and the builtin backend: one splat per pixel of the
main view (position back-projected from the registered depth, orientation from the depth map's
normal, std-dev `footprint` x the pixel spacing, colour from the pixel, opacity 0.1,
`s_native = depth / sqrt(fx fy)` in the camera that made it), and one per hole pixel of each
auxiliary view (grown by a pixel so the patches overlap what is there), and with
`under_edge_px` the far surface's strip under each of the main view's depth edges
(`generation.splat_opt.init_under_edges`), all at the new level.
Does not own: the maths of the initialisation (`generation.splat_opt.init_pixel_aligned` and
`engine.synthetic`) or optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from engine.camera import Camera
from engine.splats import SplatChunk
from generation.config import GenerationConfig
from generation.registry import Registry


@dataclass(frozen=True, eq=False)
class InitView:
    camera: Camera
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]
    depth: np.ndarray  # [H, W] registered camera depth
    mask: np.ndarray | None = None  # [H, W] bool: pixels that get splats (None = all)


@dataclass(frozen=True, eq=False)
class SplatInitInput:
    main: InitView
    aux: tuple[InitView, ...] = ()
    level: int = 1
    footprint: float = GenerationConfig.splat_footprint  # splat std-dev / pixel spacing
    under_edge_px: int = 0  # the far side of the main view's depth edges, this far under


@dataclass(frozen=True, eq=False)
class SplatInitOutput:
    main: SplatChunk
    aux: tuple[SplatChunk, ...]  # one per auxiliary view that had holes

    @property
    def chunks(self) -> tuple[SplatChunk, ...]:
        return (self.main, *self.aux)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.chunks)


class SplatInitBackend(Protocol):
    def __call__(self, inp: SplatInitInput) -> SplatInitOutput: ...


REGISTRY: Registry[SplatInitBackend] = Registry("init")


@REGISTRY.register("builtin")
class PixelAligned:
    def __call__(self, inp: SplatInitInput) -> SplatInitOutput:
        from generation.splat_opt import init_pixel_aligned, init_under_edges

        m = inp.main
        main = init_pixel_aligned(m.camera, m.depth, m.rgb, mask=m.mask, level=inp.level,
                                  footprint=inp.footprint)
        aux = []
        if inp.under_edge_px > 0:
            under = init_under_edges(m.camera, m.depth, m.rgb, inp.under_edge_px, inp.level)
            if len(under):
                aux.append(under)
        for v in inp.aux:
            if v.mask is None or not v.mask.any():
                continue
            grown = ndimage.binary_dilation(v.mask, iterations=1)
            chunk = init_pixel_aligned(v.camera, v.depth, v.rgb, mask=grown, level=inp.level,
                                       footprint=inp.footprint)
            if len(chunk):
                aux.append(chunk)
        return SplatInitOutput(main, tuple(aux))


def run(inp: SplatInitInput, backend: str = "builtin", **options) -> SplatInitOutput:
    return REGISTRY.get(backend, **options)(inp)
