"""Stage 5, depth: predict depth for the new view and register it to the existing geometry.

Owns: `DepthInput` / `DepthOutput`, the predictor registry and the registration, which does not
depend on the backend:
- a global scale + shift fitted by a mask-weighted L1 (IRLS) between the prediction and the
  rendered coarse depth, over pixels where the coarse world is opaque (alpha >= 0.5) and no
  structure was inserted;
- the inserted structure is unconstrained by the coarse depth (it is new); it is aligned
  piecewise with its own mask: the same scale, and its own shift fitted on a ring just outside
  the mask so that its footprint sits on the registered surface around it.
The builtin predictor has no weights. With coarse geometry (a zoom, an auxiliary view) it
predicts "registered coarse depth plus relief": the coarse depth with holes filled from the
background side, plus a small image-driven relief (`relief` pixel footprints per unit of local
luminance contrast, brighter = nearer), minus the inserted structure's height. Without coarse
geometry (scene E0) it uses `generation.monodepth.layout_depth`. With the builtin predictor
the global fit is therefore close to identity; a model backend predicts relative depth in its
own units and the same fit brings it into the world's.
Does not own: making splats from the depth (splat_init) or the auxiliary views' warping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from engine.camera import Camera
from generation.imaging import blur, fill_depth_background, luma, robust_fit_scale_shift
from generation.registry import Registry

MIN_FIT_PIXELS = 16
RING_PX = 3  # width of the ring around an inserted structure used for its piecewise fit


@dataclass(frozen=True, eq=False)
class DepthInput:
    camera: Camera  # the view the depth is for (its focal turns pixels into world lengths)
    rgb: np.ndarray  # [H, W, 3] float in [0, 1]
    coarse_depth: np.ndarray | None = None  # [H, W] rendered coarse depth, nan where undefined
    coarse_weight: np.ndarray | None = None  # [H, W] fit weights (e.g. the coarse alpha)
    edit_mask: np.ndarray | None = None  # [H, W] coverage of an inserted structure
    edit_height: np.ndarray | None = None  # [H, W] its height toward the camera, pixel footprints
    relief: float = 1.0
    depth_ratio: float = 3.0  # for the prior when there is no coarse geometry
    finetune: bool = True  # a network backend may fine-tune itself to the coarse depth first


@dataclass(frozen=True, eq=False)
class DepthOutput:
    depth: np.ndarray  # [H, W] registered camera depth (z), finite and > 0
    predicted: np.ndarray  # [H, W] the backend's raw prediction
    scale: float  # global fit: depth = scale * predicted + shift
    shift: float
    edit_shift: float  # the structure's own shift (same scale); nan without a structure
    fit_pixels: int  # pixels the global fit used
    fit_error: float  # median |registered - coarse| / coarse over those pixels (nan if none)


class DepthPredictor(Protocol):
    def __call__(self, inp: DepthInput) -> np.ndarray: ...  # [H, W] relative depth


REGISTRY: Registry[DepthPredictor] = Registry("depth")


def _valid(inp: DepthInput) -> np.ndarray:
    if inp.coarse_depth is None:
        return np.zeros(inp.rgb.shape[:2], bool)
    d = inp.coarse_depth
    return np.isfinite(d) & (d > 0)


@REGISTRY.register("builtin")
class CoarsePlusRelief:
    """Registered coarse depth + image relief (+ structure); the layout prior without geometry."""

    def __call__(self, inp: DepthInput) -> np.ndarray:
        H, W = inp.rgb.shape[:2]
        valid = _valid(inp)
        if valid.sum() < MIN_FIT_PIXELS:
            from generation.monodepth import layout_depth

            base = layout_depth(inp.rgb, inp.depth_ratio)
        else:
            base = fill_depth_background(inp.coarse_depth, valid)
            base = ndimage.median_filter(base, size=3, mode="nearest")
        footprint = base / inp.camera.focal  # world length of one pixel at each depth
        y = luma(inp.rgb)
        relief = -inp.relief * (y - blur(y, 2.0)) * footprint
        pred = base + relief
        if inp.edit_height is not None:
            pred = pred - inp.edit_height * footprint
        return pred


def register(inp: DepthInput, predicted: np.ndarray) -> DepthOutput:
    """Fit the prediction to the coarse depth (module docstring) and apply it."""
    valid = _valid(inp)
    edit = np.zeros(valid.shape) if inp.edit_mask is None else np.clip(inp.edit_mask, 0, 1)
    fit = valid & (edit < 0.05) & np.isfinite(predicted)
    weight = np.ones(valid.shape) if inp.coarse_weight is None else inp.coarse_weight
    a, b = 1.0, 0.0
    if fit.sum() >= MIN_FIT_PIXELS:
        a, b = robust_fit_scale_shift(predicted[fit], inp.coarse_depth[fit], weight[fit])
        if not (np.isfinite(a) and a > 0):
            a, b = 1.0, float(np.median(inp.coarse_depth[fit] - predicted[fit]))
    depth = a * predicted + b
    edit_shift = float("nan")
    inner = edit > 0.5
    if inner.any():
        grown = ndimage.binary_dilation(inner, iterations=RING_PX + 1)
        ring = grown & ~ndimage.binary_dilation(inner, iterations=1)
        ring_fit = ring & valid
        if ring_fit.sum() >= 4:
            _, edit_shift = robust_fit_scale_shift(a * predicted[ring_fit],
                                                   inp.coarse_depth[ring_fit], fit_scale=False)
        else:
            edit_shift = b
        piece = a * predicted + edit_shift
        depth = edit * piece + (1 - edit) * depth
    floor = 1e-3 * float(np.nanmedian(np.where(depth > 0, depth, np.nan))) if (depth > 0).any() else 1e-3
    depth = np.where(np.isfinite(depth), np.maximum(depth, floor), floor)
    err = float("nan")
    if fit.any():
        err = float(np.median(np.abs(depth[fit] - inp.coarse_depth[fit]) / inp.coarse_depth[fit]))
    return DepthOutput(depth, predicted, float(a), float(b), float(edit_shift), int(fit.sum()), err)


def run(inp: DepthInput, backend: str = "builtin", **options) -> DepthOutput:
    predicted = REGISTRY.get(backend, **options)(inp)
    return register(inp, np.asarray(predicted, np.float64))
