"""New splats for a zoom step: pixel-aligned initialisation and per-scale optimisation.

Owns: `init_pixel_aligned` (image + depth + camera -> a level's splats, via the engine's
numpy initialisation), the 3DGS photometric loss, and `optimize_splats` (Adam on opacity,
rotation and scale of the new splats over the main and auxiliary views, the old world frozen).
Does not own: rendering (`generation.raster`), depth registration, LoD links (`engine.lod`).
"""

from generation.splat_opt.losses import l1, photometric_loss, psnr, ssim, ssim_map
from generation.splat_opt.optimize import (OptimizeConfig, OptimizeResult, OptimizeStats,
                                           Progress, View, optimize_splats)
from generation.splat_opt.pixel_init import (as_float_image, cap_footprints, init_pixel_aligned,
                                              init_under_edges, under_edge_layer)

__all__ = [
    "OptimizeConfig", "OptimizeResult", "OptimizeStats", "Progress", "View", "as_float_image",
    "cap_footprints", "init_pixel_aligned", "init_under_edges", "l1", "optimize_splats",
    "photometric_loss", "psnr", "ssim", "ssim_map", "under_edge_layer",
]
