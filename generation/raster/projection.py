"""EWA projection of 3D Gaussians to screen-space ellipses, in torch (differentiable).

Owns: world -> camera transform with float64 camera-relative translation, the 3DGS EWA
projection (2D covariance J W R S (J W R S)^T + 0.3 px^2 on the diagonal, conic = its inverse),
and the per-splat 3-sigma footprint box shared by every compositor here.
Does not own: culling by modulation or opacity (`generation.raster.rasterize`), compositing
(`generation.raster.composite`, `generation.raster.dense`) or the gsplat path.

Conventions are those of `engine.render.reference` (the real-time renderer's oracle): OpenCV axes
(x right, y down, z forward), pixel (u, v) sampled at its centre (u + 0.5, v + 0.5), no
clamping of the Jacobian (gsplat clamps it for centres more than 1.3x outside the field of
view; such splats then differ slightly between the gsplat and torch backends).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.camera import Camera
from engine.render.reference import LOW_PASS_PX2, jacobian_limits  # the viewers' conventions

FOOTPRINT_SIGMAS = 3.0  # fragments beyond d^T conic d > 9 are never drawn
MIN_FRAGMENT_ALPHA = 1.0 / 255.0  # fragments below this are discarded (3DGS)
MAX_FRAGMENT_ALPHA = 0.99


@dataclass(frozen=True)
class Projected:
    """Screen-space splats, row-aligned with the input splats."""

    means2d: Tensor  # [N, 2] pixel coordinates (u right, v down)
    conics: Tensor  # [N, 3] (a, b, c): inverse 2D covariance [[a, b], [b, c]]
    cov_diag: Tensor  # [N, 2] 2D covariance diagonal (px^2, low-pass included)
    depths: Tensor  # [N] camera-space z


def quats_to_rotmats(quats: Tensor) -> Tensor:
    """(w, x, y, z) quaternions [N, 4] (normalised here) -> rotation matrices [N, 3, 3]."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def camera_frame(camera: Camera, origin: np.ndarray | None, dtype: torch.dtype,
                 device: torch.device | str) -> tuple[Tensor, Tensor]:
    """(R [3, 3], t [3]) with p_camera = p @ R + t for points p given relative to `origin`.

    t = (origin - eye) @ R is formed in float64 before the cast, so float32 offsets from a
    nearby origin stay precise however far the world is from (0, 0, 0)."""
    R64 = camera.T_world_camera[:3, :3]  # columns: camera axes in world
    origin = np.zeros(3) if origin is None else np.asarray(origin, np.float64).reshape(3)
    t64 = (origin - camera.T_world_camera[:3, 3]) @ R64
    R = torch.as_tensor(np.ascontiguousarray(R64), dtype=dtype, device=device)
    t = torch.as_tensor(t64, dtype=dtype, device=device)
    return R, t


def project(
    means: Tensor,  # [N, 3] positions relative to `origin` (world axes)
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] Gaussian std-devs in world units
    camera: Camera,
    origin: np.ndarray | None = None,  # [3] float64 world position of the means' frame
    low_pass_px2: float = LOW_PASS_PX2,  # added to the 2D covariance diagonal, px^2
) -> Projected:
    """EWA projection of every splat (no culling; splats behind the camera give garbage rows
    that the caller must drop by depth)."""
    R, t = camera_frame(camera, origin, means.dtype, means.device)
    p = means @ R + t  # [N, 3] camera space
    x, y, z = p.unbind(-1)
    fx, fy = camera.fx, camera.fy
    means2d = torch.stack([fx * x / z + camera.cx, fy * y / z + camera.cy], -1)  # [N, 2]
    # M = W R_q S: the splat's axes in camera space, scaled (columns)
    M = torch.matmul(R.T, quats_to_rotmats(quats)) * scales[:, None, :]  # [N, 3, 3]
    inv_z = 1.0 / z
    # rows of J M, J = d(u, v) / d(x, y, z) at the centre, its direction clamped as
    # `engine.render.reference.jacobian_directions` clamps it (as gsplat does)
    x_lo, x_hi, y_lo, y_hi = jacobian_limits(camera)
    tx, ty = (x * inv_z).clamp(x_lo, x_hi), (y * inv_z).clamp(y_lo, y_hi)
    T0 = (fx * inv_z)[:, None] * M[:, 0, :] - (fx * tx * inv_z)[:, None] * M[:, 2, :]
    T1 = (fy * inv_z)[:, None] * M[:, 1, :] - (fy * ty * inv_z)[:, None] * M[:, 2, :]
    cxx = (T0 * T0).sum(-1) + low_pass_px2
    cyy = (T1 * T1).sum(-1) + low_pass_px2
    cxy = (T0 * T1).sum(-1)
    det = cxx * cyy - cxy * cxy
    conics = torch.stack([cyy / det, -cxy / det, cxx / det], -1)  # [N, 3]
    return Projected(means2d, conics, torch.stack([cxx, cyy], -1), z)


def footprint_radius2(opacities: Tensor) -> Tensor:  # [N] -> [N]
    """Squared Mahalanobis radius beyond which no fragment of a splat is drawn: the 3-sigma
    ellipse, tightened where opacity * exp(-r^2 / 2) falls below 1/255 first.
    <= 0 means the splat draws nothing."""
    with torch.no_grad():
        o = opacities.clamp_min(1e-30)
        return torch.clamp(2.0 * torch.log(o / MIN_FRAGMENT_ALPHA), max=FOOTPRINT_SIGMAS ** 2)


def footprint_boxes(
    means2d: Tensor,  # [N, 2]
    cov_diag: Tensor,  # [N, 2]
    radius2: Tensor,  # [N] squared Mahalanobis radius (see footprint_radius2)
) -> tuple[Tensor, Tensor]:
    """Inclusive integer pixel boxes (lo [N, 2], hi [N, 2], int64, (u, v)) holding every pixel
    whose centre lies inside the ellipse d^T conic d <= radius2 (its axis-aligned bounds are
    +- sqrt(radius2 * cov_ii)). Empty boxes have hi < lo. Not clipped to the image."""
    with torch.no_grad():
        half = torch.sqrt(radius2.clamp_min(0.0)[:, None] * cov_diag)  # [N, 2]
        lo = torch.ceil(means2d - half - 0.5)
        hi = torch.floor(means2d + half - 0.5)
        bad = ~(torch.isfinite(lo).all(-1) & torch.isfinite(hi).all(-1)) | (radius2 <= 0)
        lo = torch.where(bad[:, None], torch.ones_like(lo), lo.clamp(-1e9, 1e9))
        hi = torch.where(bad[:, None], torch.zeros_like(hi), hi.clamp(-1e9, 1e9))
        return lo.long(), hi.long()
