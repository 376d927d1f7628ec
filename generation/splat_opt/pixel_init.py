"""Pixel-aligned splat initialisation of a new level (docs/design.md idea 1), over the engine's.

Owns: checking the image / depth / mask a generation stage hands over, calling
`engine.synthetic.pixel_aligned_splats` (which does the back-projection, normal -> rotation,
Nyquist footprint, colour, opacity 0.1 and `s_native`), and the one thing it lacks for real
depth maps: capping footprints stretched by depth discontinuities (central differences across
an occlusion edge make a splat as wide as the depth jump); the footprint generation uses (half
the pixel spacing).
And the strip of the farther surface under each depth edge (`under_edge_layer`,
`init_under_edges`), which a camera flying in uncovers.
Does not own: the maths of the initialisation itself (engine.synthetic) or optimisation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.camera import Camera
from engine.lod import neighbour_extreme
from engine.splats import SplatChunk
from engine.synthetic import INIT_OPACITY, THIN_RATIO, pixel_aligned_splats
from generation.config import GenerationConfig

MAX_STRETCH = 4.0  # tangential sigma <= this x the fronto-parallel footprint (a 75 deg slant)
FOOTPRINT = GenerationConfig.splat_footprint  # sigma / pixel spacing (the config says why)
UNDER_EDGE_RATIO = 1.02  # a depth step this deep (relative) is an edge the far side extends under
UNDER_EDGE_OPACITY = 0.9  # the under-edge splats' opacity (no view fits them)
UNDER_EDGE_SIGMA = 1.0  # their std-dev in pixels at their depth: neighbours overlap to ~0.95
STEEP_SLANT = 6.0  # tan of the slant (80.5 deg) past which a depth ramp counts as an edge


def as_float_image(image: np.ndarray, height: int, width: int, name: str = "image"
                   ) -> np.ndarray:
    """[H, W, 3] float64 in [0, 1] from uint8 or float input; ValueError with one line if not."""
    image = np.asarray(image)
    if image.shape != (height, width, 3):
        raise ValueError(f"{name} has shape {image.shape}, expected ({height}, {width}, 3)")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float, got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError(f"{name} holds NaN or Inf")
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def init_pixel_aligned(
    camera: Camera,
    depth: np.ndarray,  # [H, W] camera-space z; <= 0 or non-finite = no splat there
    rgb: np.ndarray,  # [H, W, 3] uint8 or float in [0, 1]
    mask: np.ndarray | None = None,  # [H, W] bool: only these pixels get splats (new regions)
    stride: int = 1,
    level: int = 0,
    opacity: float = INIT_OPACITY,
    max_stretch: float = MAX_STRETCH,
    footprint: float = FOOTPRINT,
) -> SplatChunk:
    """One splat per `stride`-th pixel (see the module docstring); returns a validated chunk."""
    H, W = camera.height, camera.width
    depth = np.asarray(depth, np.float64)
    if depth.shape != (H, W):
        raise ValueError(f"depth has shape {depth.shape}, expected ({H}, {W})")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (H, W):
            raise ValueError(f"mask has shape {mask.shape}, expected ({H}, {W})")
        mask = mask.astype(bool)
    if not (isinstance(stride, (int, np.integer)) and 1 <= stride <= min(H, W)):
        raise ValueError(f"stride must be an integer in [1, {min(H, W)}], got {stride!r}")
    rgb = as_float_image(rgb, H, W, "rgb")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        chunk = pixel_aligned_splats(camera, depth, rgb, level=level, stride=int(stride),
                                     mask=mask, opacity=opacity, footprint=footprint)
    return cap_footprints(chunk, stride, max_stretch)


def cap_footprints(chunk: SplatChunk, stride: int, max_stretch: float = MAX_STRETCH
                   ) -> SplatChunk:
    """A new chunk whose tangential std-devs are at most `max_stretch * stride * s_native`
    (and the normal axis at most THIN_RATIO of the smaller one); other arrays are shared."""
    if len(chunk) == 0:
        return chunk
    ls = chunk.log_scales.astype(np.float64)
    cap = np.log(max_stretch * stride * chunk.s_native.astype(np.float64))  # [N]
    tangential = np.minimum(ls[:, :2], cap[:, None])
    normal = np.minimum(ls[:, 2], np.log(THIN_RATIO) + tangential.min(axis=1))
    log_scales = np.concatenate([tangential, normal[:, None]], 1).astype(np.float32)
    return SplatChunk(chunk.origin, chunk.positions, chunk.rotations, log_scales,
                      chunk.opacity_logits, chunk.sh_dc, chunk.s_native, chunk.level,
                      chunk.sh_rest).validate()


def under_edge_layer(depth: np.ndarray,  # [H, W] camera depth (inf / <= 0: nothing there)
                     rgb: np.ndarray,  # [H, W, 3] float in [0, 1]
                     band_px: int,
                     focal_px: float,  # the camera's focal length in pixels
                     min_ratio: float = UNDER_EDGE_RATIO,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The farther surface carried `band_px` pixels under the nearer one at each depth edge:
    (depth [H, W], rgb [H, W, 3], mask [H, W] bool). Each step takes, per pixel, the deepest
    of its 3x3 neighbourhood with that pixel's colour; the mask holds the pixels where what
    was carried lies deeper than the pixel's own surface by more than a surface slanted
    `STEEP_SLANT` could rise over `band_px` pixels (and at least `min_ratio` times): the
    strips on the near side of every depth edge, but not a steep slope, wherever the image is
    small enough to make its per-pixel steps large. What a camera moving toward the scene
    uncovers there is that strip of the far surface: without it the view shows the background
    through (docs/benchmarks.md "Dark lines at depth edges when flying in")."""
    depth = np.asarray(depth, np.float64)
    known = np.isfinite(depth) & (depth > 0)
    d = np.where(known, depth, -np.inf)
    c = np.asarray(rgb, np.float64).copy()
    for _ in range(int(band_px)):
        d, c = neighbour_extreme(d, c, deepest=True)
    ratio = max(min_ratio, float(np.exp(STEEP_SLANT * int(band_px) / focal_px)))
    mask = known & (d > depth * ratio)
    return np.where(mask, d, depth), c, mask


def init_under_edges(camera: Camera, depth: np.ndarray, rgb: np.ndarray, band_px: int,
                     level: int = 0, opacity: float = UNDER_EDGE_OPACITY,
                     sigma_px: float = UNDER_EDGE_SIGMA) -> SplatChunk:
    """Splats of `under_edge_layer`: round (every axis `sigma_px` times the pixel's size at
    its depth, so the strip is covered from wherever it is seen) and nearly opaque, since the
    main view cannot fit them: they lie behind what it sees."""
    H, W = camera.height, camera.width
    d, c, mask = under_edge_layer(depth, as_float_image(rgb, H, W, "rgb"), band_px,
                                  camera.focal)
    chunk = init_pixel_aligned(camera, d, c, mask=mask, level=level, opacity=opacity)
    if len(chunk) == 0:
        return chunk
    round_ = np.log(sigma_px * chunk.s_native.astype(np.float64))[:, None]
    return replace(chunk, log_scales=np.repeat(round_, 3, axis=1).astype(np.float32)).validate()
