"""Seamless joins: the maths that makes a new level keep its parent's low frequencies.

Owns small pure functions over float images ([H, W, 3] in [0, 1], weights [H, W] in [0, 1]):
- `normalized_blur`: a Gaussian blur that only listens to weighted pixels (normalised
  convolution), with wider passes where the weights are too thin to say anything;
- `low_frequency_correction` / `match_low_frequencies`: the smooth per-channel offset field that
  brings an image's low frequencies to a reference's where the weights are 1 (outside the edit),
  applied everywhere but where `keep` is 1 (an inserted structure keeps its own colours);
- `border_weight` and `feather`: a level's spatial fade, 0 on the outermost pixels of its view
  and 1 from `margin` pixels in (a smoothstep), and the convex blend it weighs;
  `feather_keeping_detail` blends only the low frequencies and keeps the inner image's
  detail finer than a few pixels everywhere (the parent's coarse look, the level's texture);
- `border_band` and `seam_stats`: the issue-21 figure of a join, the low-passed difference
  (sigma 4 px) between a render with the new level and the coarse world on a band along the
  view's edge (1/12 of each side), as a mean absolute value and a per-channel bias in 1/255.
Does not own: deciding where they apply (`generation.stages.harmonize`) or rendering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generation.imaging import blur

CLIP_ROUNDS = 4  # match_low_frequencies: rounds of match-and-clip at most
MIN_SUPPORT = 0.05  # normalised blur: below this much weight around a pixel, widen the blur
WIDEN = 4.0  # ... by this factor, at most twice; then the weighted mean of the whole image
SEAM_SIGMA_PX = 4.0  # the seam figure's low-pass (pixels of the image it is measured on)
SEAM_BAND = 1.0 / 12.0  # ... and the width of its band along each edge (of that side)


def normalized_blur(x: np.ndarray,  # [H, W] or [H, W, C]
                    weight: np.ndarray,  # [H, W] >= 0
                    sigma: float) -> np.ndarray:  # like x
    """sum w x / sum w under a Gaussian of `sigma` pixels: the local weighted mean of `x`.
    Where the weights around a pixel sum to less than MIN_SUPPORT x the largest weight (a big
    masked region), the blur is widened (sigma x4, twice), and what is still unsupported takes
    the global weighted mean. Scaling the weights changes nothing; with no weight, zeros."""
    x = np.asarray(x, np.float64)
    w = np.clip(np.asarray(weight, np.float64), 0.0, None)
    total = w.sum()
    if total <= 0:
        return np.zeros_like(x)
    w = w / w.max()  # the support threshold is relative to the strongest weight
    total = w.sum()
    expand = (...,) + (None,) * (x.ndim - 2)  # [H, W] -> broadcast over channels
    wx = w[expand] * x
    out = np.zeros_like(x)
    todo = np.ones(w.shape, bool)
    s = float(sigma)
    for _ in range(3):
        den = blur(w, s)
        ok = todo & (den >= MIN_SUPPORT)
        if ok.any():
            out[ok] = (blur(wx, s) / np.maximum(den, 1e-12)[expand])[ok]
            todo &= ~ok
        if not todo.any():
            return out
        s = max(s, 1.0) * WIDEN
    out[todo] = wx.reshape(-1, *x.shape[2:]).sum(axis=0) / total
    return out


def low_frequency_correction(image: np.ndarray,  # [H, W, 3]
                             reference: np.ndarray,  # [H, W, 3]
                             weight: np.ndarray,  # [H, W]: where `reference` is the truth
                             sigma: float) -> np.ndarray:  # [H, W, 3]
    """The smooth additive field that brings `image`'s local weighted mean (Gaussian, `sigma`
    px) to `reference`'s: a constant offset is corrected exactly, detail finer than `sigma`
    is left alone. Across a region with nothing to listen to (an inserted structure and its
    shadow, a hole in the old world) the field is the smoothest one that meets its values
    around it (`harmonic_fill`), so it has no edge where listening stops."""
    field = normalized_blur(np.asarray(reference, np.float64) - np.asarray(image, np.float64),
                            weight, sigma)
    w = np.clip(np.asarray(weight, np.float64), 0.0, None)
    if w.max() <= 0:
        return field
    return harmonic_fill(field, blur(w / w.max(), sigma) < MIN_SUPPORT)


def harmonic_fill(x: np.ndarray,  # [H, W] or [H, W, C]
                  holes: np.ndarray,  # [H, W] bool: the values to replace
                  ) -> np.ndarray:  # like x
    """`x` with its `holes` replaced by the solution of Laplace's equation that equals `x`
    on the pixels around them (4-neighbours; the image's edge is a mirror): the smoothest
    fill, continuous where it meets the known values. A hole that touches no known pixel
    keeps its values (each unknown is tied to its old value with a weight of 1e-6)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    x = np.asarray(x, np.float64)
    holes = np.asarray(holes, bool)
    if not holes.any() or holes.all():
        return x
    H, W = holes.shape
    flat = x.reshape(H * W, -1)
    index = -np.ones(H * W, np.int64)
    unknown = np.flatnonzero(holes)
    index[unknown] = np.arange(len(unknown))
    rows, cols, vals = [], [], []
    degree = np.zeros(len(unknown))
    rhs = 1e-6 * flat[unknown].copy()
    v, u = np.divmod(unknown, W)
    for dv, du in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nv, nu = v + dv, u + du
        inside = (nv >= 0) & (nv < H) & (nu >= 0) & (nu < W)
        k = np.flatnonzero(inside)
        j = nv[k] * W + nu[k]
        degree[k] += 1.0
        free = index[j] >= 0
        rows.append(k[free])
        cols.append(index[j[free]])
        vals.append(-np.ones(free.sum()))
        np.add.at(rhs, k[~free], flat[j[~free]])
    n = len(unknown)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(degree + 1e-6)
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(n, n)).tocsc()
    out = flat.copy()
    out[unknown] = splu(A).solve(rhs)
    return out.reshape(x.shape)


def match_low_frequencies(image: np.ndarray,  # [H, W, 3] float in [0, 1]
                          reference: np.ndarray,  # [H, W, 3]
                          weight: np.ndarray,  # [H, W] where to listen to the reference
                          sigma: float,
                          keep: np.ndarray | None = None,  # [H, W] in [0, 1]: 1 = untouched
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(corrected image clipped to [0, 1], the correction field [H, W, 3] as applied).
    Clipping takes away what a field pushes past 0 or 1 (texture on a blown-out highlight
    loses its bright half, so the region comes out darker than the reference), so the match
    is repeated on the clipped image, up to `CLIP_ROUNDS` times, while clipping still moved
    a pixel by more than 1/4 of a gray level: the detail there is squeezed toward the limit,
    as a photo's is, and the low frequencies meet the reference's."""
    image = np.asarray(image, np.float64)
    free = None if keep is None else (1.0 - np.clip(np.asarray(keep, np.float64), 0.0, 1.0))
    out, total = image, np.zeros_like(image)
    for _ in range(CLIP_ROUNDS):
        field = low_frequency_correction(out, reference, weight, sigma)
        if free is not None:
            field = field * free[..., None]
        total += field
        moved = out + field
        out = np.clip(moved, 0.0, 1.0)
        if np.abs(moved - out).max() <= 0.25 / 255:
            break
    return out, total


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def border_weight(height: int, width: int, margin: float) -> np.ndarray:  # [H, W] in [0, 1]
    """A level's spatial fade: 0 on the outermost ring of pixels, rising (smoothstep of the
    distance of the pixel centre from that ring) to 1 at `margin` pixels in; all ones for a
    margin <= 0. Symmetric under flips; each pixel depends only on its distance to the edge."""
    if margin <= 0:
        return np.ones((height, width))
    v = np.arange(height, dtype=np.float64)
    u = np.arange(width, dtype=np.float64)
    dv = np.minimum(v, height - 1 - v)  # pixels from the top / bottom ring
    du = np.minimum(u, width - 1 - u)
    d = np.minimum(dv[:, None], du[None, :])
    with np.errstate(over="ignore"):
        return smoothstep(d / margin)


def feather(inner: np.ndarray,  # [H, W, C] what the level shows inside
            outer: np.ndarray,  # [H, W, C] what it shows at its edge (the parent's look)
            weight: np.ndarray) -> np.ndarray:  # [H, W] in [0, 1]
    """w inner + (1 - w) outer: weights that sum to one at every pixel."""
    w = np.clip(np.asarray(weight, np.float64), 0.0, 1.0)[..., None]
    return w * np.asarray(inner, np.float64) + (1.0 - w) * np.asarray(outer, np.float64)


def feather_keeping_detail(inner: np.ndarray,  # [H, W, C] what the level shows inside
                           outer: np.ndarray,  # [H, W, C] the parent's look
                           weight: np.ndarray,  # [H, W] in [0, 1]
                           sigma: float) -> np.ndarray:  # [H, W, C]
    """`feather` of the low frequencies only: the blend of the two images' Gaussian blurs
    (`sigma` pixels) plus all of inner's detail (what the blur removes from it), i.e.
    w inner + (1 - w) (blur(outer) + inner - blur(inner)). Where w = 0 the picture has the
    parent's coarse look and the level's fine texture; identical images come out unchanged;
    `sigma` <= 0 is `feather`."""
    if sigma <= 0:
        return feather(inner, outer, weight)
    inner = np.asarray(inner, np.float64)
    return feather(inner, blur(np.asarray(outer, np.float64), sigma) + inner - blur(inner, sigma),
                   weight)


def border_band(height: int, width: int, fraction: float = SEAM_BAND) -> np.ndarray:
    """[H, W] bool: the pixels within `fraction` of the height of the top / bottom edge or of
    the width of the left / right edge (at least one pixel)."""
    bh = max(1, int(round(height * fraction)))
    bw = max(1, int(round(width * fraction)))
    band = np.zeros((height, width), bool)
    band[:bh] = band[-bh:] = True
    band[:, :bw] = True
    band[:, -bw:] = True
    return band


@dataclass(frozen=True)
class SeamStats:
    mean_abs_255: float  # mean over the band (and channels) of |low-passed difference| x 255
    bias_255: tuple[float, float, float]  # per-channel mean of the low-passed difference x 255
    pixels: int  # band pixels that counted

    def meets(self, mean_abs: float = 1.5, bias: float = 1.0) -> bool:
        return self.mean_abs_255 <= mean_abs and max(map(abs, self.bias_255)) <= bias


def seam_stats(ours: np.ndarray,  # [H, W, 3] render with the new level
               coarse: np.ndarray,  # [H, W, 3] the coarse world rendered at the same camera
               valid: np.ndarray | None = None,  # [H, W] bool: pixels that count
               sigma: float = SEAM_SIGMA_PX, fraction: float = SEAM_BAND) -> SeamStats:
    """How visible a join is: (ours - coarse) low-passed at `sigma` px, on the border band."""
    ours = np.asarray(ours, np.float64)
    H, W = ours.shape[:2]
    d = blur(ours - np.asarray(coarse, np.float64), sigma) * 255.0  # [H, W, 3]
    band = border_band(H, W, fraction)
    if valid is not None:
        band &= np.asarray(valid, bool)
    if not band.any():
        return SeamStats(float("nan"), (float("nan"),) * 3, 0)
    sel = d[band]  # [M, 3]
    bias = sel.mean(axis=0)
    return SeamStats(float(np.abs(sel).mean()), tuple(float(b) for b in bias), int(band.sum()))
