"""A weight-free monocular depth prior for scene E0 (the builtin backend's "depth model").

Owns: `layout_depth`. No depth weights ship in any package, so the builtin backend guesses a
plausible, smooth layout from two classic cues and snaps it to the image's edges:
- a ground-plane / backdrop layout: below an assumed horizon (35% from the top) inverse depth
  grows linearly toward the bottom row, as for a flat floor seen by a level camera; above it
  the scene is a far backdrop;
- image cues: local contrast and colour saturation mark nearer surfaces (aerial perspective
  makes distant things hazy, desaturated and low in contrast);
- blended in inverse depth, then smoothed with a guided filter so depth edges follow colour
  edges and surfaces stay smooth; depth spans [1, depth_ratio].
Limits (stated plainly): it knows nothing about objects. A close-up (a cup seen from above, a
face) gets a gentle slant plus cue-driven relief, not its real shape; a bright sky over dark
ground is right, a dark sky or a textured backdrop is pulled forward; scale is arbitrary
(the median depth is about 1.7 world units). A real monocular model (Depth Anything, DPT,
MoGe) is a later backend of the depth stage.
Does not own: registration, or depth for zoom steps (those come from the coarse geometry).
"""

from __future__ import annotations

import numpy as np

from generation.imaging import blur, guided_filter, luma

HORIZON = 0.35  # assumed horizon row, as a fraction of the height from the top
LAYOUT_WEIGHT = 0.6  # inverse-depth blend: layout vs image cues


def _normalise(x: np.ndarray, lo_q: float = 2.0, hi_q: float = 98.0) -> np.ndarray:
    lo, hi = np.percentile(x, [lo_q, hi_q])
    if hi - lo < 1e-9:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def layout_depth(rgb: np.ndarray,  # [H, W, 3] float in [0, 1]
                 depth_ratio: float = 3.0) -> np.ndarray:  # [H, W] depth in [1, depth_ratio]
    H, W = rgb.shape[:2]
    y = luma(rgb)
    v = (np.arange(H) + 0.5) / H
    ground = np.clip((v - HORIZON) / (1.0 - HORIZON), 0.0, 1.0)  # inverse depth of a floor
    layout = np.broadcast_to(ground[:, None], (H, W))
    s = max(1.0, min(H, W) / 64)
    lap = np.abs(y - blur(y, 1.0 * s))
    contrast = _normalise(blur(lap, 4.0 * s))
    mx, mn = rgb.max(-1), rgb.min(-1)
    saturation = _normalise(blur((mx - mn) / np.maximum(mx, 1e-3), 3.0 * s))
    cues = 0.6 * contrast + 0.4 * saturation
    disparity = LAYOUT_WEIGHT * layout + (1 - LAYOUT_WEIGHT) * cues
    r = max(2, int(round(min(H, W) / 24)))
    disparity = guided_filter(y, disparity, r, 1e-3)
    disparity = _normalise(blur(disparity, 0.5 * s), 0.5, 99.5)
    near_disp, far_disp = 1.0, 1.0 / depth_ratio
    return 1.0 / (far_disp + disparity * (near_disp - far_disp))
