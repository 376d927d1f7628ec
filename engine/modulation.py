"""Scale-aware opacity modulation: the soft level-of-detail of WonderZoom (paper idea 3).

Owns: the numpy reference `alpha(s_render, s_native, s_parent, s_child)` that every fast path
(GLSL, torch) is checked against, and chunk-level bounds that let a renderer skip whole chunks
whose alpha is 0 everywhere in the view.
Does not own: where `s_parent`/`s_child` come from (`engine.lod`) or drawing.

With x = log s_render, a = log s_child, n = log s_native, b = log s_parent:
    alpha = 1                      at x = n
    alpha = (b - x) / (b - n)      for n <= x <= b   (coarser views fade fine splats out)
    alpha = (x - a) / (n - a)      for a <= x <= n   (finer views fade coarse splats out)
    alpha = 0                      outside [a, b]
A boundary at +-inf (s_parent = inf for a root splat, s_child = 0 where nothing finer exists)
means alpha stays 1 on that side. For a parent p and a child c at one place
(s_child(p) = s_native(c), s_parent(c) = s_native(p)) the two ramps are mirror images in log
space, so alpha_p + alpha_c = 1 on the whole band [s_native(c), s_native(p)].
This is the released viewer's max(rising ramp, falling ramp) written in log s instead of
q = fx / z = 1 / s units (log q = -log s, so the ramps are the same lines).
"""

from __future__ import annotations

import numpy as np

ALPHA_CULL = 0.01  # splats with alpha <= this are not drawn at all


def alpha(
    s_render: np.ndarray,  # [...] world length per pixel in the render camera
    s_native: np.ndarray,  # [...] world length per pixel in the creating camera (> 0)
    s_parent: np.ndarray,  # [...] native scale of the coarser level here; inf for roots
    s_child: np.ndarray,  # [...] native scale of the finer level here; 0 where none
) -> np.ndarray:
    """Opacity multiplier in [0, 1] (float64, broadcast shape). Pure and vectorised."""
    s_render, s_native, s_parent, s_child = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (s_render, s_native, s_parent, s_child)))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(s_render)
        n = np.log(s_native)
        b = np.log(s_parent)  # +inf for a root
        a = np.log(s_child)  # -inf where nothing finer
        # Links that point the wrong way (a parent finer than the splat) would make a ramp of
        # negative width; treat them as absent rather than producing NaN.
        b = np.where(b > n, b, np.inf)
        a = np.where(a < n, a, -np.inf)
        falling = np.where(np.isinf(b), 1.0, (b - x) / (b - n))
        rising = np.where(np.isinf(a), 1.0, (x - a) / (n - a))
        out = np.where(x >= n, falling, rising)
        # s_render = 0 (x = -inf) reaches only splats with no child; s_render = inf only roots.
        out = np.where(np.isnan(out), 0.0, out)
    return np.clip(out, 0.0, 1.0)


def support(s_native: np.ndarray, s_parent: np.ndarray, s_child: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Open interval (lo, hi) of s_render where alpha > 0, per splat (same rules as `alpha`)."""
    s_native = np.asarray(s_native, np.float64)
    lo = np.where(np.asarray(s_child) < s_native, s_child, 0.0)
    hi = np.where(np.asarray(s_parent) > s_native, s_parent, np.inf)
    return lo.astype(np.float64), hi.astype(np.float64)


def visible_band(s_native: np.ndarray, s_parent: np.ndarray, s_child: np.ndarray,
                 threshold: float = ALPHA_CULL) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form interval of s_render where alpha > threshold, per splat.

    Inverting the linear ramps in log space: alpha > t  <=>  a + t (n - a) < x < b - t (b - n).
    Used for chunk culling; exact for the reference (tests check it against `alpha`)."""
    n = np.log(np.asarray(s_native, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.asarray(s_child, np.float64))
        b = np.log(np.asarray(s_parent, np.float64))
        a = np.where(a < n, a, -np.inf)
        b = np.where(b > n, b, np.inf)
        lo = np.where(np.isinf(a), 0.0, np.exp(a + threshold * (n - a)))
        hi = np.where(np.isinf(b), np.inf, np.exp(b - threshold * (b - n)))
    return lo, hi


def chunk_render_scale_range(
    camera,  # engine.camera.Camera
    lo: np.ndarray,  # [M, 3] chunk AABB minimum (world)
    hi: np.ndarray,  # [M, 3] chunk AABB maximum (world)
) -> tuple[np.ndarray, np.ndarray]:
    """Range of s_render = depth / sqrt(fx fy) a chunk can take inside the view frustum.

    Depth is linear in position, so its extremes over a box are at corners; points closer than
    the near plane are clipped away, so the range starts at the near plane at the earliest.
    Chunks entirely behind the near plane get an empty range (lo > hi)."""
    zmin, zmax = camera.aabb_depth_range(lo, hi)
    zmin = np.maximum(zmin, camera.near)
    zmax = np.minimum(zmax, camera.far)
    return zmin / camera.focal, zmax / camera.focal


def chunks_possibly_visible(
    render_lo: np.ndarray,  # [M] min s_render in view
    render_hi: np.ndarray,  # [M] max s_render in view
    band_lo: np.ndarray,  # [M] min over the chunk's splats of visible_band lo
    band_hi: np.ndarray,  # [M] max over the chunk's splats of visible_band hi
) -> np.ndarray:
    """[M] bool: can any splat of the chunk get alpha > ALPHA_CULL somewhere in view?"""
    return (render_lo <= render_hi) & (render_hi > band_lo) & (render_lo < band_hi)
