"""The numpy reference rasterizer: the oracle every GPU splat path is checked against.

Owns: the exact definition of a rendered frame, in float64:
- EWA projection (3DGS): camera-space covariance W R S S^T R^T W^T (W = camera rotation),
  the Jacobian J of the perspective projection at the splat centre, 2D covariance
  J Sigma J^T + 0.3 px^2 on the diagonal (the 3DGS low-pass / antialias term), conic = inverse.
  It is evaluated as (J W R S)(J W R S)^T so tiny splats never square tiny numbers. J is taken
  along the centre's direction clamped to the field of view widened by `JACOBIAN_MARGIN`
  (`jacobian_directions`), as 3DGS and gsplat do: a large splat beside the camera, whose
  centre projects far outside the image, is linearised where the projection is steep and
  would otherwise smear across the whole view (docs/design.md "Splats beside the camera").
- footprint: the 3-sigma ellipse of the 2D covariance (d^T conic d <= 9); pixels outside it get
  nothing. Pixel (u, v) is sampled at its centre (u + 0.5, v + 0.5), OpenCV rows (v down).
- fragment alpha = min(0.99, opacity * modulation * exp(-0.5 d^T conic d)), discarded below
  1/255; modulation is `engine.modulation.alpha` at s_render = z / sqrt(fx fy), and splats
  with modulation <= ALPHA_CULL are not drawn.
- compositing in the order of `PreparedSplats` (back to front), premultiplied, over a
  background: colour = sum_i w_i c_i + T bg, alpha = sum_i w_i = 1 - T, expected depth =
  sum_i w_i z_i / sum_i w_i (0 where nothing was drawn), with w_i = a_i prod_{j in front} (1 - a_j).
Does not own: culling and sorting (`engine.render.prepare`, shared with the GPU path) or speed:
it is meant for scenes of a few thousand splats at ~128^2. All fragments of all splats are
evaluated at once (ragged per-splat boxes) and composited front to back per pixel with a
segmented cumulative sum of log(1 - a), which equals back-to-front "over" blending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.camera import Camera
from engine.modulation import ALPHA_CULL, alpha
from engine.render.prepare import (COL_LOG_S_NATIVE, COL_MEAN, COL_OPACITY, COL_QUAT, COL_RGB,
                                   COL_SCALE, MIN_FRAGMENT_ALPHA, PreparedSplats,
                                   links_from_columns)
from engine.splats import quaternions_to_matrices

LOW_PASS_PX2 = 0.3  # added to the 2D covariance diagonal (3DGS antialias term)
MAX_FRAGMENT_ALPHA = 0.99
FOOTPRINT_SIGMAS = 3.0
JACOBIAN_MARGIN = 0.3  # J's direction may leave the image by this fraction of its half-size


def jacobian_limits(camera: Camera) -> tuple[float, float, float, float]:
    """(x_lo, x_hi, y_lo, y_hi): the range of directions x/z, y/z at which a splat's projection
    is linearised. The image widened on each side by `JACOBIAN_MARGIN` of its half-size
    (gsplat's limits, off-centre principal points included); a centre outside it is
    linearised at the nearest direction inside (`jacobian_directions`)."""
    mx = JACOBIAN_MARGIN * 0.5 * camera.width / camera.fx
    my = JACOBIAN_MARGIN * 0.5 * camera.height / camera.fy
    return (-camera.cx / camera.fx - mx, (camera.width - camera.cx) / camera.fx + mx,
            -camera.cy / camera.fy - my, (camera.height - camera.cy) / camera.fy + my)


def jacobian_directions(x_over_z: np.ndarray, y_over_z: np.ndarray, camera: Camera
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The centre's direction clamped to `jacobian_limits`: unchanged inside the image."""
    x_lo, x_hi, y_lo, y_hi = jacobian_limits(camera)
    return np.clip(x_over_z, x_lo, x_hi), np.clip(y_over_z, y_lo, y_hi)


@dataclass(frozen=True)
class RenderOutput:
    """One rendered frame in OpenCV pixel order (row 0 = top)."""

    rgb: np.ndarray  # [H, W, 3] float32, composited over the background
    alpha: np.ndarray  # [H, W] float32, accumulated opacity
    depth: np.ndarray  # [H, W] float32, expected camera depth; 0 where alpha == 0


@dataclass(frozen=True)
class Projected:
    """Per-splat screen-space quantities (float64), row-aligned with `PreparedSplats`."""

    mean2d: np.ndarray  # [M, 2] pixel coordinates (u right, v down)
    cov2d: np.ndarray  # [M, 2, 2] pixel^2, low-pass included
    conic: np.ndarray  # [M, 2, 2] inverse of cov2d
    depth: np.ndarray  # [M] camera-space z
    opacity: np.ndarray  # [M] opacity * modulation
    drawn: np.ndarray  # [M] bool: modulation > ALPHA_CULL


def project(prepared: PreparedSplats, camera: Camera) -> Projected:
    """EWA projection of every prepared splat (no culling beyond the modulation rule)."""
    prepared.check_camera(camera)
    p = prepared.packed.astype(np.float64)
    mean = p[:, COL_MEAN]  # [M, 3]
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    fx, fy = camera.fx, camera.fy
    mean2d = np.stack([fx * x / z + camera.cx, fy * y / z + camera.cy], axis=1)  # [M, 2]
    tx, ty = jacobian_directions(x / z, y / z, camera)
    J = np.zeros((len(p), 2, 3))  # [M, 2, 3] d(u, v) / d(camera xyz) at the centre
    J[:, 0, 0] = fx / z
    J[:, 0, 2] = -fx * tx / z
    J[:, 1, 1] = fy / z
    J[:, 1, 2] = -fy * ty / z
    W = camera.T_world_camera[:3, :3].T  # [3, 3] world -> camera rotation
    R = quaternions_to_matrices(p[:, COL_QUAT])  # [M, 3, 3]
    T = J @ (W[None] @ R) * p[:, None, COL_SCALE]  # [M, 2, 3] = J W R S
    cov2d = T @ T.transpose(0, 2, 1) + LOW_PASS_PX2 * np.eye(2)  # [M, 2, 2]
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    conic = np.stack([np.stack([cov2d[:, 1, 1], -cov2d[:, 0, 1]], -1),
                      np.stack([-cov2d[:, 1, 0], cov2d[:, 0, 0]], -1)], axis=1) / det[:, None, None]
    s_native, s_parent, s_child = links_from_columns(p[:, COL_LOG_S_NATIVE:])
    mod = alpha(z / camera.focal, s_native, s_parent, s_child)  # [M]
    return Projected(mean2d, cov2d, conic, z, p[:, COL_OPACITY] * mod, mod > ALPHA_CULL)


def render(
    prepared: PreparedSplats,
    camera: Camera,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> RenderOutput:
    """Rasterize `prepared` (back to front) for `camera`; see the module docstring."""
    H, W = camera.height, camera.width
    bg = np.asarray(background, np.float64).reshape(3)
    proj = project(prepared, camera)
    order = np.flatnonzero(proj.drawn)  # draw order = row order (back to front)

    # ragged boxes: pixels whose centres lie within 3 sigma (per axis) of each centre
    mu = proj.mean2d[order]  # [K, 2]
    half = FOOTPRINT_SIGMAS * np.sqrt(proj.cov2d[order][:, [0, 1], [0, 1]])  # [K, 2]
    with np.errstate(invalid="ignore"):
        lo = np.ceil(mu - half - 0.5)  # first pixel index with centre >= mu - half
        hi = np.floor(mu + half - 0.5)
    lo = np.clip(np.nan_to_num(lo, nan=1.0), 0, [W, H]).astype(np.int64)  # [K, 2]
    hi = np.clip(np.nan_to_num(hi, nan=-1.0), -1, [W - 1, H - 1]).astype(np.int64)
    size = np.maximum(hi - lo + 1, 0)  # [K, 2]
    counts = size[:, 0] * size[:, 1]  # [K]
    splat = np.repeat(np.arange(len(order)), counts)  # [F] index into `order`
    k = np.arange(len(splat)) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[splat, 0] + k % size[splat, 0]  # [F]
    py = lo[splat, 1] + k // size[splat, 0]  # [F]

    rows = order[splat]  # [F] row in `prepared`
    dx = px + 0.5 - proj.mean2d[rows, 0]
    dy = py + 0.5 - proj.mean2d[rows, 1]
    con = proj.conic[rows]
    power = con[:, 0, 0] * dx * dx + 2.0 * con[:, 0, 1] * dx * dy + con[:, 1, 1] * dy * dy
    a = np.minimum(MAX_FRAGMENT_ALPHA, proj.opacity[rows] * np.exp(-0.5 * power))  # [F]
    ok = (power <= FOOTPRINT_SIGMAS**2) & (a >= MIN_FRAGMENT_ALPHA)
    rows, a, pixel = rows[ok], a[ok], (py * W + px)[ok]

    # front to back per pixel: later rows are in front
    sort = np.lexsort((-rows, pixel))
    rows, a, pixel = rows[sort], a[sort], pixel[sort]
    log_t = np.log1p(-a)  # [F] finite since a <= 0.99
    csum = np.cumsum(log_t)
    first = np.ones(len(pixel), bool)
    first[1:] = pixel[1:] != pixel[:-1]
    seg_start = np.maximum.accumulate(np.where(first, np.arange(len(pixel)), 0))
    before = np.concatenate([[0.0], csum])[seg_start]  # cumsum up to the segment start
    weight = a * np.exp(csum - log_t - before)  # [F] a_i * prod over splats in front

    def per_pixel(values: np.ndarray) -> np.ndarray:  # [F] -> [H * W] sums (float64)
        return np.bincount(pixel, values, H * W).astype(np.float64)

    colour = prepared.packed[rows][:, COL_RGB].astype(np.float64)  # [F, 3]
    acc_alpha = per_pixel(weight)
    acc_depth = per_pixel(weight * proj.depth[rows])
    rgb = np.stack([per_pixel(weight * colour[:, c]) for c in range(3)], -1)
    rgb += (1.0 - acc_alpha)[:, None] * bg[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(acc_alpha > 0, acc_depth / acc_alpha, 0.0)
    return RenderOutput(rgb.reshape(H, W, 3).astype(np.float32),
                        acc_alpha.reshape(H, W).astype(np.float32),
                        depth.reshape(H, W).astype(np.float32))
