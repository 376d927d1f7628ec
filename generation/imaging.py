"""Small image and depth-map operations the builtin stages share.

Owns: luminance, Gaussian blur, the guided filter (edge-aware smoothing), un-premultiplying a
render, OpenCV inpainting of RGB holes, background-biased depth filling, a robust weighted
L1 fit of scale + shift, and resampling helpers. All numpy / OpenCV, float64 images in [0, 1].
Does not own: any decision about *what* to fill or fit (the stages decide).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def luma(rgb: np.ndarray) -> np.ndarray:  # [H, W, 3] -> [H, W]
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the two image axes (channels kept), reflect padding."""
    if sigma <= 0:
        return x.astype(np.float64)
    s = (sigma, sigma) + (0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x.astype(np.float64), s, mode="reflect")


def box(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=2 * r + 1, mode="reflect")


def guided_filter(guide: np.ndarray,  # [H, W] float
                  src: np.ndarray,  # [H, W] float
                  radius: int, eps: float) -> np.ndarray:  # [H, W]
    """He et al.'s guided filter: smooths `src` but keeps the edges of `guide`."""
    mean_i, mean_p = box(guide, radius), box(src, radius)
    cov_ip = box(guide * src, radius) - mean_i * mean_p
    var_i = box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a, radius) * guide + box(b, radius)


def unpremultiply(rgb: np.ndarray, alpha: np.ndarray, min_alpha: float = 0.02) -> np.ndarray:
    """A render composited over black -> colours; pixels below `min_alpha` become 0."""
    a = alpha[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(a > min_alpha, rgb / np.maximum(a, min_alpha), 0.0)
    return np.clip(out, 0.0, 1.0)


def inpaint_rgb(rgb: np.ndarray,  # [H, W, 3] float in [0, 1]
                holes: np.ndarray,  # [H, W] bool
                radius: float = 5.0) -> np.ndarray:
    """Fill `holes` with OpenCV's Telea inpainting (8-bit internally)."""
    if not holes.any():
        return rgb
    import cv2

    img8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    out = cv2.inpaint(img8, holes.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
    filled = out.astype(np.float64) / 255.0
    return np.where(holes[..., None], filled, rgb)


def fill_depth_background(depth: np.ndarray,  # [H, W]
                          valid: np.ndarray,  # [H, W] bool
                          max_steps: int = 256, reach: int = 4) -> np.ndarray:
    """Fill invalid pixels from their valid neighbours, preferring the *farthest*: a hole next
    to a depth edge is a disocclusion, and what a camera move uncovers there is the
    background. Grows the valid region one pixel per step (taking the farthest neighbour),
    then every hole pixel takes the farthest fill within `reach` pixels, so a narrow hole
    between a near and a far surface gets the far side's depth throughout. What is still empty
    after `max_steps` takes the median valid depth. Smoothed inside the holes afterwards."""
    d = np.where(valid, depth, -np.inf).astype(np.float64)
    known = valid.copy()
    if not known.any():
        return np.ones_like(depth, dtype=np.float64)
    for _ in range(max_steps):
        if known.all():
            break
        grown = ndimage.grey_dilation(d, size=(3, 3), mode="nearest")
        new = ~known & np.isfinite(grown)
        if not new.any():
            break
        d[new] = grown[new]
        known |= new
    d[~known] = np.median(depth[valid])
    holes = ~valid
    if holes.any() and reach > 0:
        far = ndimage.grey_dilation(d, size=(2 * reach + 1, 2 * reach + 1), mode="nearest")
        d = np.where(holes, far, d)
        # soften the staircase the dilation leaves, inside the holes only
        smooth = blur(d, 1.0)
        d = np.where(holes, smooth, d)
    return d


def robust_fit_scale_shift(x: np.ndarray,  # [M] predicted values
                           y: np.ndarray,  # [M] targets
                           w: np.ndarray | None = None,  # [M] weights >= 0
                           iterations: int = 30, fit_scale: bool = True
                           ) -> tuple[float, float]:
    """(a, b) minimising sum w |a x + b - y| (a weighted L1 fit, by iteratively reweighted
    least squares). With fit_scale False, a = 1 and b is the weighted median of y - x."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & (w > 0)
    x, y, w = x[ok], y[ok], w[ok]
    if len(x) == 0:
        return 1.0, 0.0
    if not fit_scale or len(x) < 3 or np.ptp(x) <= 1e-12 * max(1.0, np.abs(x).max()):
        return 1.0, weighted_median(y - x, w)
    a, b = 1.0, weighted_median(y - x, w)
    eps = 1e-6 * max(1e-12, float(np.median(np.abs(y))))
    for _ in range(iterations):
        r = np.abs(a * x + b - y)
        ww = w / np.maximum(r, eps)
        A = np.stack([x, np.ones_like(x)], 1)
        AtW = A.T * ww
        try:
            a_new, b_new = np.linalg.solve(AtW @ A, AtW @ y)
        except np.linalg.LinAlgError:
            break
        if not (np.isfinite(a_new) and np.isfinite(b_new)):
            break
        done = abs(a_new - a) < 1e-10 and abs(b_new - b) < 1e-10 * max(1.0, abs(b))
        a, b = float(a_new), float(b_new)
        if done:
            break
    return a, b


def weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cw, 0.5 * cw[-1])])


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a float image (area when shrinking, bicubic when growing) with OpenCV."""
    import cv2

    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img.astype(np.float64)
    interp = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    out = cv2.resize(img.astype(np.float32), (width, height), interpolation=interp)
    return out.astype(np.float64)
