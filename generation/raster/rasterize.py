"""The rasterizer's entry point: splat tensors + a `Camera` -> RGB, alpha and depth images.

Owns: backend choice (the torch patch compositor anywhere, `gsplat.rasterization` on CUDA),
culling (depth outside (near, far), outside the frustum, LoD modulation <= ALPHA_CULL, opacity
below 1/255: the real-time renderer's rules, `engine.render.prepare`) and the `RasterOutput`
both backends return.
Does not own: the projection maths (`projection`), compositing (`composite`), or turning
`SplatChunk`s into tensors (`scene`).

Rendered opacity is `opacity * modulation` (docs/design.md idea 3); splats whose modulation is
<= `engine.modulation.ALPHA_CULL` are not drawn at all, as in the real-time renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from engine.camera import Camera
from engine.modulation import ALPHA_CULL
from engine.render.prepare import margin_per_depth
from generation.raster.composite import (CACHE_BYTES, MAX_BAND_FRAGMENTS,
                                         composite_patches)
from generation.raster.projection import (LOW_PASS_PX2, MIN_FRAGMENT_ALPHA, camera_frame,
                                          project)

Backend = Literal["auto", "torch", "gsplat"]


@dataclass(frozen=True)
class RasterOutput:
    """One rendered view, OpenCV pixel order (row 0 = top)."""

    rgb: Tensor  # [H, W, 3] composited over the background
    alpha: Tensor  # [H, W] accumulated opacity
    depth: Tensor  # [H, W] expected camera depth sum(w z) / sum(w); 0 where alpha == 0
    median_depth: Tensor | None  # [H, W] depth where accumulated alpha crosses 0.5 (detached)
    backend: str  # "torch" or "gsplat"
    drawn: int  # splats that survived culling


def gsplat_available(device: torch.device | str) -> bool:
    """True when gsplat can rasterize on `device` (a CUDA device and the package imports)."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:  # gsplat missing or its CUDA extension broken: fall back to torch
        return False
    return True


def resolve_backend(backend: Backend, device: torch.device | str) -> str:
    if backend == "auto":
        return "gsplat" if gsplat_available(device) else "torch"
    if backend == "gsplat" and torch.device(device).type != "cuda":
        raise ValueError("backend='gsplat' needs CUDA tensors")
    if backend not in ("torch", "gsplat"):
        raise ValueError(f"unknown rasterizer backend {backend!r}")
    return backend


def outside_frustum(
    means: Tensor,  # [N, 3] positions relative to `origin` (world axes)
    scales: Tensor,  # [N, 3] Gaussian std-devs, world units
    camera: Camera,
    origin: np.ndarray | None = None,  # [3] float64
) -> Tensor:  # [N] bool
    """Splats whose 3-sigma sphere (largest axis, plus FRUSTUM_MARGIN_PX pixels at its depth)
    lies entirely outside one side plane of the frustum: the real-time renderer never draws
    them (`engine.render.prepare`, its `outside` count), and the EWA projection must not
    either. Near the camera and far off-axis its linearisation smears such a splat across the
    whole image (a splat 0.002 in front of a zoom camera, 5 widths off the side, covered a
    480x270 image with opaque red and made ~100M fragments per render)."""
    with torch.no_grad():
        R, t = camera_frame(camera, origin, means.dtype, means.device)
        p = means @ R + t  # [N, 3] camera space
        planes = torch.as_tensor(np.ascontiguousarray(camera.frustum_planes_camera()[:4, :3].T),
                                 dtype=means.dtype, device=means.device)  # [3, 4] unit normals
        radius = 3.0 * scales.detach().amax(dim=-1)
        radius = radius + margin_per_depth(camera) * p[:, 2]
        return ((p @ planes) < -radius[:, None]).any(dim=-1)


def rasterize(
    means: Tensor,  # [N, 3] positions relative to `origin` (world axes)
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] Gaussian std-devs, world units
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, 3]
    camera: Camera,
    *,
    origin: np.ndarray | None = None,  # [3] float64 world position of the means' frame
    modulation: Tensor | None = None,  # [N] LoD opacity multiplier in [0, 1] (not differentiated)
    background: Tensor | tuple[float, float, float] = (0.0, 0.0, 0.0),  # [3]
    backend: Backend = "auto",
    median_depth: bool = True,
    max_band_fragments: int = MAX_BAND_FRAGMENTS,
    cache_bytes: int = CACHE_BYTES,
    low_pass_px2: float = LOW_PASS_PX2,
) -> RasterOutput:
    """Render splats at `camera`; differentiable in means, quats, scales, opacities, colors.
    `low_pass_px2`: the antialias term added to every 2D covariance (the viewers' 0.3 px^2;
    a fit at a coarser grid than its display passes the display's, in its own pixels).

    `origin` keeps far-away worlds precise: pass float32 offsets from a nearby float64 origin
    (for example the camera position). The torch backend works on any device and dtype; the
    gsplat backend needs CUDA and computes in float32."""
    n = means.shape[0]
    for name, t, shape in (("means", means, (n, 3)), ("quats", quats, (n, 4)),
                           ("scales", scales, (n, 3)), ("opacities", opacities, (n,)),
                           ("colors", colors, (n, 3))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    if modulation is not None and tuple(modulation.shape) != (n,):
        raise ValueError(f"modulation has shape {tuple(modulation.shape)}, expected ({n},)")
    dev, dt = means.device, means.dtype
    bg = torch.as_tensor(background, dtype=dt, device=dev).reshape(3)
    chosen = resolve_backend(backend, dev)
    opac = opacities
    keep = torch.ones(n, dtype=torch.bool, device=dev)
    if modulation is not None:
        mod = modulation.detach().to(dt)
        keep &= mod > ALPHA_CULL
        opac = opacities * mod
    keep &= ~outside_frustum(means, scales, camera, origin)
    if chosen == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opac, colors, camera, origin, keep, bg,
                                 median_depth, low_pass_px2)
    proj = project(means, quats, scales, camera, origin, low_pass_px2)
    with torch.no_grad():
        keep &= (proj.depths > camera.near) & (proj.depths < camera.far)
        keep &= torch.isfinite(proj.means2d).all(-1) & torch.isfinite(proj.conics).all(-1)
        keep &= opac >= MIN_FRAGMENT_ALPHA
        idx = torch.nonzero(keep).squeeze(1)
    H, W = camera.height, camera.width
    if len(idx) == 0:
        rgb = bg.expand(H, W, 3).clone()
        zeros = torch.zeros(H, W, dtype=dt, device=dev)
        return RasterOutput(rgb, zeros, zeros.clone(), zeros.clone(), "torch", 0)
    rgb, alpha, depth, median = composite_patches(
        proj.means2d[idx], proj.conics[idx], opac[idx], colors[idx], proj.depths[idx],
        proj.cov_diag[idx], W, H, bg, max_band_fragments, cache_bytes)
    return RasterOutput(rgb, alpha, depth, median if median_depth else None, "torch", len(idx))


def _rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opac: Tensor,  # [N] modulation included
    colors: Tensor,  # [N, 3]
    camera: Camera,
    origin: np.ndarray | None,  # [3]
    keep: Tensor,  # [N] bool, not culled by modulation
    bg: Tensor,  # [3]
    median_depth: bool,
    low_pass_px2: float = LOW_PASS_PX2,
) -> RasterOutput:
    """gsplat.rasterization with the same conventions (eps2d = the low-pass, classic mode)."""
    import gsplat

    idx = torch.nonzero(keep).squeeze(1)
    dev, dt = means.device, means.dtype
    R, t = camera_frame(camera, origin, torch.float32, dev)
    viewmat = torch.eye(4, dtype=torch.float32, device=dev)
    viewmat[:3, :3] = R.T  # world -> camera: p_cam = R^T p + t
    viewmat[:3, 3] = t
    K = torch.as_tensor(camera.K, dtype=torch.float32, device=dev)
    f32 = [x[idx].float() for x in (means, quats, scales, opac, colors)]
    colors_out, alphas, _ = gsplat.rasterization(
        f32[0], f32[1], f32[2], f32[3], f32[4], viewmat[None], K[None], camera.width,
        camera.height, near_plane=camera.near, far_plane=camera.far, eps2d=low_pass_px2,
        packed=False, backgrounds=bg.float()[None], render_mode="RGB+ED",
        rasterize_mode="classic")
    alpha = alphas[0, ..., 0].to(dt)
    rgb = colors_out[0, ..., :3].to(dt)
    depth = torch.where(alpha > 0, colors_out[0, ..., 3].to(dt), torch.zeros_like(alpha))
    median = None
    if median_depth:
        with torch.no_grad():
            median = rasterize(means.detach(), quats.detach(), scales.detach(), opac.detach(),
                               colors.detach(), camera, origin=origin,
                               modulation=keep.to(dt), background=bg,
                               backend="torch").median_depth
    return RasterOutput(rgb, alpha, depth, median, "gsplat", len(idx))
