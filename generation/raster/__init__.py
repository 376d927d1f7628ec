"""Differentiable Gaussian-splat rasterizer for generation (observe and optimise stages).

Owns: rendering splats to RGB / alpha / expected and median depth with gradients, on CPU (a
patch-based torch compositor, `composite`) and on CUDA (`gsplat.rasterization`), with the
conventions of the real-time renderer (`engine.render.reference`): EWA projection with a
0.3 px^2 low-pass, pixel centres at +0.5, alpha = min(0.99, o * mod * exp(-d^T conic d / 2)),
fragments below 1/255 dropped, front-to-back compositing.
Does not own: the real-time OpenGL renderer (`engine.render`), splat initialisation or
optimisation (`generation.splat_opt`).

Modules, top to bottom: `projection` (EWA maths), `composite` (CPU patch compositor with an
analytic backward), `dense` (the all-pixels oracle for tests), `rasterize` (entry point and
backend choice), `scene` (SplatChunk <-> tensors, LoD modulation, `render_chunks`).
"""

from generation.raster.composite import composite_patches
from generation.raster.dense import composite_dense
from generation.raster.projection import Projected, project
from generation.raster.rasterize import RasterOutput, gsplat_available, rasterize
from generation.raster.scene import (SplatTensors, default_device, modulation_at, render_chunks,
                                     set_device_policy)

__all__ = [
    "Projected", "RasterOutput", "SplatTensors", "composite_dense", "composite_patches",
    "default_device", "gsplat_available", "modulation_at", "project", "rasterize",
    "render_chunks", "set_device_policy",
]
