"""Detail synthesis: give a super-resolved view the fine texture its parent level had.

Owns: `synthesize_detail`. Super-resolution sharpens edges but leaves surfaces smooth, so each
zoom would otherwise get blurrier. Natural textures are roughly self-similar across scales, so
the new level's finest octaves are synthesised from the parent view's finest octaves:
- random-phase noise (Galerne et al.'s RPN) with the amplitude spectrum of the parent's
  high-pass band, taken at the same frequencies in cycles *per pixel* (self-similarity), with
  the amplitude that brings the image's own band up to the parent band's robust standard
  deviation (times `strength`): an image that already has that much texture gets none, so
  texture does not compound from zoom to zoom. A `bound` (> 0) caps the part of that target
  above the parent band's own level (strength 1): with a share above 1, a parent that is
  already grainy gets no more than its own level, a smooth one up to `bound` (issue 21,
  docs/benchmarks.md "Twice the parent band on the GPU-size path"). The exemplar is the
  band's *texture*, not its edges: values beyond `EDGE_CLIP` robust deviations are clipped
  before the spectrum is taken (a strong edge would put a line in the spectrum, which random
  phases turn into parallel streaks over the whole view), and the amplitude is averaged over
  orientations (isotropic grain);
- modulated by an envelope: the parent's local high-frequency energy, up-sampled, so texture
  appears where the parent had texture (grass, wood, fabric) and smooth areas (sky, a cup's
  glaze) stay smooth;
- added to the luminance (the same amount to R, G and B, so hue is kept).
Deterministic for a given seed. Does not own: super-resolution itself or where it is applied.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from generation.imaging import blur, luma, resize

BAND_SIGMA = 1.5  # the parent's band: luma minus its Gaussian blur at this sigma (pixels)
EDGE_CLIP = 2.5  # band values beyond this many robust deviations are edges, not texture
MIN_REFERENCE = 16  # pixels a side below which there is no spectrum to speak of


def high_band(gray: np.ndarray) -> np.ndarray:  # [h, w] -> [h, w]
    return gray - blur(gray, BAND_SIGMA)


def robust_sd(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of the bulk of `x`
    (a Gaussian's), unmoved by a few large values such as edges."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def radial_average(amp: np.ndarray) -> np.ndarray:
    """[h, w] centred (fftshift-ed) amplitude spectrum -> the same, averaged over orientation
    at each radius (frequencies normalised per axis, so a non-square exemplar works too)."""
    h, w = amp.shape
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    r = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    bins = np.minimum((r / 0.5 * (max(h, w) // 2)).astype(np.int64), max(h, w))
    total = np.bincount(bins.ravel(), amp.ravel(), minlength=bins.max() + 1)
    count = np.bincount(bins.ravel(), minlength=bins.max() + 1)
    return (total / np.maximum(count, 1))[bins]


def bounded_target(parent_sd: float, strength: float, bound: float = 0.0) -> float:
    """The band level a level is topped up to: `strength` x the parent band's, and where that
    is above the parent band's own level and `bound` > 0, at most max(`bound`, parent_sd)."""
    target = parent_sd * strength
    if bound > 0 and target > parent_sd:
        target = min(target, max(bound, parent_sd))
    return target


def sharpen_band(image: np.ndarray,  # [H, W, 3] float in [0, 1]
                 gain: float, limit: bool = False) -> np.ndarray:  # [H, W, 3]
    """The image with its own finest band (`high_band` of luma) amplified by 1 + `gain`, the
    same amount added to R, G and B (hue kept): an unsharp mask, coherent with the image's
    edges, where `synthesize_detail` adds random-phase texture. With `limit`, the sharpened
    luma stays within its 3x3 neighbourhood's range (edges steepen, no halo overshoots)."""
    if gain <= 0:
        return image
    y = luma(image)
    sharp = y + gain * high_band(y)
    if limit:
        sharp = np.clip(sharp, ndimage.minimum_filter(y, 3), ndimage.maximum_filter(y, 3))
    return np.clip(image + (sharp - y)[..., None], 0.0, 1.0)


def random_phase_texture(band: np.ndarray,  # [h, w] the exemplar band (zero mean)
                         height: int, width: int,
                         rng: np.random.Generator,
                         isotropic: bool = True) -> np.ndarray:  # [height, width], std 1
    """Noise with the exemplar's amplitude spectrum at the same cycles per pixel (averaged
    over orientations when `isotropic`)."""
    h, w = band.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    amp = np.abs(np.fft.fftshift(np.fft.fft2((band - band.mean()) * win)))  # [h, w]
    if isotropic:
        amp = radial_average(amp)
    # frequencies of the target grid, in exemplar pixel-index units of the shifted spectrum
    fy = np.fft.fftshift(np.fft.fftfreq(height))  # cycles / pixel in [-0.5, 0.5)
    fx = np.fft.fftshift(np.fft.fftfreq(width))
    gy = fy * h + h // 2
    gx = fx * w + w // 2
    coords = np.stack(np.meshgrid(gy, gx, indexing="ij"))
    amp_t = ndimage.map_coordinates(amp, coords, order=1, mode="nearest")
    amp_t = np.fft.ifftshift(amp_t)
    amp_t[0, 0] = 0.0  # no DC
    noise = np.fft.fft2(rng.standard_normal((height, width)))
    tex = np.real(np.fft.ifft2(amp_t * noise / np.maximum(np.abs(noise), 1e-12)))
    sd = tex.std()
    return tex / sd if sd > 0 else tex


def synthesize_detail(image: np.ndarray,  # [H, W, 3] float in [0, 1], e.g. super-resolved
                      reference: np.ndarray,  # [h, w, 3] float, the parent-resolution view
                      seed: int = 0,
                      strength: float = 1.0,
                      bound: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(image with synthesized detail [H, W, 3], the added luminance [H, W]). `bound` (in
    [0, 1] units of luma; 0 = none): the band's target is at most max(`bound`, the parent
    band's level) where `strength` asks for more than the parent band."""
    H, W = image.shape[:2]
    h, w = reference.shape[:2]
    if strength <= 0 or min(h, w) < MIN_REFERENCE:
        return image, np.zeros((H, W))
    band = high_band(luma(reference))
    sd = robust_sd(band)
    if sd <= 1e-6:
        return image, np.zeros((H, W))
    # top up: only the texture the image lacks (it may already carry some, e.g. when its parent
    # was sharp), so the band does not grow from zoom to zoom
    have = robust_sd(high_band(luma(image)))
    target = bounded_target(sd, strength, bound)
    amplitude = np.sqrt(max(target ** 2 - have ** 2, 0.0))
    if amplitude <= 1e-6:
        return image, np.zeros((H, W))
    rng = np.random.default_rng(seed)
    texture = np.clip(band, -EDGE_CLIP * sd, EDGE_CLIP * sd)  # edges out of the exemplar
    tex = random_phase_texture(texture, H, W, rng) * amplitude
    energy = np.sqrt(blur(band * band, 2.0)) / sd  # [h, w], ~1 on average
    envelope = np.clip(resize(energy, W, H), 0.0, 3.0)
    added = tex * envelope
    return np.clip(image + added[..., None], 0.0, 1.0), added
