"""Pixel-aligned splat initialisation of a new level (docs/design.md idea 1), over the engine's.

Owns: checking the image / depth / mask a generation stage hands over, calling
`engine.synthetic.pixel_aligned_splats` (which does the back-projection, normal -> rotation,
Nyquist footprint, colour, opacity 0.1 and `s_native`), and the one thing it lacks for real
depth maps: capping footprints stretched by depth discontinuities (central differences across
an occlusion edge make a splat as wide as the depth jump); the footprint generation uses (half
the pixel spacing).
Does not own: the maths of the initialisation itself (engine.synthetic) or optimisation.
"""

from __future__ import annotations

import numpy as np

from engine.camera import Camera
from engine.splats import SplatChunk
from engine.synthetic import INIT_OPACITY, THIN_RATIO, pixel_aligned_splats
from generation.config import GenerationConfig

MAX_STRETCH = 4.0  # tangential sigma <= this x the fronto-parallel footprint (a 75 deg slant)
FOOTPRINT = GenerationConfig.splat_footprint  # sigma / pixel spacing (the config says why)


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
