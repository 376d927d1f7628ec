"""The CPU (pure torch) patch compositor: front-to-back alpha blending with an analytic backward.

Owns: turning screen-space splats (the `generation.raster.projection.Projected` quantities) into
RGB, alpha, expected depth and median depth images, differentiably, with bounded memory.
Does not own: the projection, culling by depth/modulation (`generation.raster.rasterize`), or
the CUDA path (gsplat).

How (each splat is evaluated only inside its own pixel footprint, never splats x pixels):
1. splats are sorted front to back by camera depth (stable: ties keep input order);
2. a splat's footprint is its ellipse d^T conic d <= r^2 (r = 3 sigma, tightened where
   opacity * exp(-r^2 / 2) < 1/255 so nothing drawable is lost), enumerated as exact pixel
   runs per image row (no pixel of the bounding box outside the ellipse is visited);
3. the image is cut into horizontal bands of at most `max_band_fragments` fragments (a single
   row is never split), so peak memory is bounded whatever the scene; per band the fragments
   (splat, pixel) are enumerated splat-major (hence front to back per pixel), and a stable
   sort by pixel makes each pixel's fragments contiguous and depth-ordered;
4. a fragment is drawn if d^T conic d <= 9 and a = min(0.99, o exp(-d^T conic d / 2)) >= 1/255;
   transmittance is a segmented exclusive cumulative sum of log(1 - a) in float64;
   w = a T; colour = sum w c + T_final bg, alpha = sum w, expected depth = sum w z / sum w;
5. the backward pass is analytic (as in gsplat): with v = dL/dw per fragment and S what the
   fragments behind it (and the background) contribute, dL/da = T v - S / (1 - a). It reuses
   the forward's per-fragment values while they fit in `cache_bytes`, else recomputes them.
Median depth is the depth of the last drawn fragment whose transmittance in front of it is
still > 0.5 (where accumulated alpha crosses 0.5, the 2DGS rule), 0 where nothing is drawn.
It is not differentiable (returned detached).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from generation.raster.projection import (FOOTPRINT_SIGMAS, MAX_FRAGMENT_ALPHA,
                                          MIN_FRAGMENT_ALPHA, footprint_boxes,
                                          footprint_radius2)

MAX_BAND_FRAGMENTS = 4_000_000  # fragments per band: bounds peak memory (~0.5 GB)
CACHE_BYTES = 512 << 20  # per-fragment values kept from forward for backward (40 B each)
_FRAGMENT_BYTES = 40
_SPAN_SLACK = 1e-3  # row runs are widened by this (px) and then tested exactly per fragment


@dataclass
class _Fragments:
    """Per-fragment quantities of one band, pixel-major, front to back inside a pixel."""

    splat: Tensor  # [F] int64 splat row
    pixel: Tensor  # [F] int64 band-local pixel index (row-major)
    dx: Tensor  # [F] pixel centre - mean, u
    dy: Tensor  # [F] pixel centre - mean, v
    gauss: Tensor  # [F] exp(-d^T conic d / 2), 0 where not drawn
    raw: Tensor  # [F] opacity * gauss (before the 0.99 clamp)
    alpha: Tensor  # [F] fragment alpha, 0 where not drawn
    trans: Tensor  # [F] transmittance in front of the fragment
    offsets: Tensor  # [P] int64 first fragment of each pixel (clamped where a pixel has none)
    log_final: Tensor  # [P] float64 log transmittance behind a pixel's last fragment


@dataclass
class _Band:
    """Rows [y0, y1) of the image, the splats that may touch them, and cached fragments."""

    y0: int
    y1: int
    ids: Tensor  # [K] int64 splats, front to back
    cache: _Fragments | None = None


@dataclass
class _Plan:
    width: int
    height: int
    y_lo: Tensor  # [N] int64 first row of each footprint, clipped to the image
    y_hi: Tensor  # [N] int64 last row (y_hi < y_lo: nothing to draw)
    radius2: Tensor  # [N] squared Mahalanobis radius of the footprint
    bands: list[_Band]


def _make_plan(
    means2d: Tensor,  # [N, 2]
    opacities: Tensor,  # [N]
    cov_diag: Tensor,  # [N, 2]
    depths: Tensor,  # [N]
    width: int,
    height: int,
    max_band_fragments: int,
) -> _Plan:
    """Depth order, footprint rows and the band split (no fragments yet)."""
    dev = means2d.device
    r2 = footprint_radius2(opacities)
    lo, hi = footprint_boxes(means2d, cov_diag, r2)
    lo_c = lo.clamp(min=0)
    hi_c = torch.minimum(hi, torch.tensor([width - 1, height - 1], dtype=hi.dtype, device=dev))
    live = (hi_c >= lo_c).all(-1)
    order = torch.argsort(depths.detach(), stable=True)
    order = order[live[order]]  # [K] front to back, drawable only
    y_lo, y_hi = lo_c[:, 1], hi_c[:, 1]
    # box pixels per image row (an upper bound of fragments) -> greedy bands
    sx = hi_c[order, 0] - lo_c[order, 0] + 1
    diff = torch.zeros(height + 1, dtype=torch.int64, device=dev)
    diff.index_add_(0, y_lo[order], sx)
    diff.index_add_(0, y_hi[order] + 1, -sx)
    per_row = torch.cumsum(diff[:-1], 0).tolist()
    bands: list[_Band] = []
    y0, acc = 0, 0
    for y, n in enumerate(per_row):
        if y > y0 and acc + n > max_band_fragments:
            bands.append(_Band(y0, y, order))
            y0, acc = y, 0
        acc += n
    bands.append(_Band(y0, height, order))
    if len(bands) > 1:
        ylo, yhi = y_lo[order], y_hi[order]
        for band in bands:
            band.ids = order[(ylo < band.y1) & (yhi >= band.y0)]
    return _Plan(width, height, y_lo, y_hi, r2, bands)


def _enumerate(
    plan: _Plan,
    band: _Band,
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
) -> tuple[Tensor, Tensor]:
    """(splat [F], pixel [F]) int64 of one band, pixel-major, front to back in a pixel."""
    dev = means2d.device
    W = plan.width
    ids = band.ids
    y_lo = plan.y_lo[ids].clamp(min=band.y0)
    n_rows = (plan.y_hi[ids].clamp(max=band.y1 - 1) - y_lo + 1).clamp(min=0)  # [K]
    # one entry per (splat, row): the run of pixel centres inside the ellipse on that row
    rep = torch.repeat_interleave(torch.arange(len(ids), device=dev), n_rows)  # [R]
    row = y_lo[rep] + torch.arange(len(rep), device=dev) - (torch.cumsum(n_rows, 0) - n_rows)[rep]
    s = ids[rep]
    m = means2d.detach()[s]
    c = conics.detach()[s]
    a, b, cc = c[:, 0], c[:, 1], c[:, 2]
    dy = row.to(m.dtype) + 0.5 - m[:, 1]
    # a dx^2 + 2 b dy dx + c dy^2 <= r^2  <=>  dx in (-b dy +- sqrt(a r^2 - dy^2 det)) / a
    disc = a * plan.radius2[s] - dy * dy * (a * cc - b * b)
    root = torch.sqrt(disc.clamp(min=0.0))
    centre = m[:, 0] - b * dy / a - 0.5
    u0 = torch.ceil(centre - root / a - _SPAN_SLACK).clamp(0, W)
    u1 = torch.floor(centre + root / a + _SPAN_SLACK).clamp(-1, W - 1)
    ok = (disc >= 0) & torch.isfinite(u0) & torch.isfinite(u1)
    u0 = torch.where(ok, u0, 0.0).long()
    n_px = torch.where(ok, u1.long() - u0 + 1, 0).clamp(min=0)  # [R]
    total = int(n_px.sum())
    rep2 = torch.repeat_interleave(torch.arange(len(rep), device=dev), n_px)  # [F]
    base = (row - band.y0) * W + u0 - (torch.cumsum(n_px, 0) - n_px)  # [R]
    pixel = base[rep2] + torch.arange(total, device=dev)
    pixel, perm = torch.sort(pixel.int(), stable=True)
    return s[rep2[perm]], pixel.long()


def _evaluate(
    splat: Tensor,  # [F] int64
    pixel: Tensor,  # [F] int64 band-local, sorted
    y0: int,
    width: int,
    n_pixels: int,
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
) -> _Fragments:
    """Alpha and transmittance of a band's fragments (at least one fragment)."""
    dt = means2d.dtype
    dev = means2d.device
    counts = torch.bincount(pixel, minlength=n_pixels)
    offsets = (torch.cumsum(counts, 0) - counts).clamp(max=len(pixel) - 1)
    ys = torch.arange(n_pixels, device=dev) // width
    u_centre = (torch.arange(n_pixels, device=dev) - ys * width).to(dt) + 0.5  # [P]
    v_centre = (ys + y0).to(dt) + 0.5
    # one contiguous row per parameter: 1-D index_select is the fastest gather on CPU
    mx, my, a, b, c, o = torch.cat([means2d, conics, opacities[:, None]], 1).T.contiguous()
    dx = u_centre.index_select(0, pixel) - mx.index_select(0, splat)
    dy = v_centre.index_select(0, pixel) - my.index_select(0, splat)
    power = a.index_select(0, splat) * dx * dx + c.index_select(0, splat) * dy * dy \
        + 2.0 * b.index_select(0, splat) * dx * dy
    gauss = torch.exp(-0.5 * power)
    raw = o.index_select(0, splat) * gauss
    alpha = raw.clamp(max=MAX_FRAGMENT_ALPHA)
    drawn = (power <= FOOTPRINT_SIGMAS ** 2) & (alpha >= MIN_FRAGMENT_ALPHA)
    zero = torch.zeros((), dtype=dt, device=dev)
    alpha = torch.where(drawn, alpha, zero)
    gauss = torch.where(drawn, gauss, zero)
    raw = torch.where(drawn, raw, zero)
    log1m = torch.log1p(-alpha).double()
    csum = torch.cumsum(log1m, 0)
    excl = csum - log1m
    start = excl.index_select(0, offsets)  # [P] cumulative log transmittance before a pixel
    trans = torch.exp(excl - start.index_select(0, pixel)).to(dt)
    last = (offsets + counts - 1).clamp(min=0)
    log_final = torch.where(counts > 0, csum.index_select(0, last) - start, 0.0)
    return _Fragments(splat, pixel, dx, dy, gauss, raw, alpha, trans, offsets, log_final)


def _band_fragments(
    plan: _Plan,
    band: _Band,
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
) -> _Fragments | None:
    if band.cache is not None:
        return band.cache
    splat, pixel = _enumerate(plan, band, means2d, conics)
    if len(splat) == 0:
        return None
    return _evaluate(splat, pixel, band.y0, plan.width, (band.y1 - band.y0) * plan.width,
                     means2d, conics, opacities)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d: Tensor,  # [N, 2]
                conics: Tensor,  # [N, 3]
                opacities: Tensor,  # [N]
                colors: Tensor,  # [N, 3]
                depths: Tensor,  # [N]
                cov_diag: Tensor,  # [N, 2]
                background: Tensor,  # [3]
                width: int, height: int, max_band_fragments: int, cache_bytes: int):
        plan = _make_plan(means2d, opacities, cov_diag, depths, width, height,
                          max_band_fragments)
        dt, dev = means2d.dtype, means2d.device
        feats = torch.cat([colors, depths[:, None]], 1)  # [N, 4]
        acc = torch.zeros(height * width, 4, dtype=dt, device=dev)
        alpha = torch.zeros(height * width, dtype=dt, device=dev)
        median = torch.zeros(height * width, dtype=dt, device=dev)
        log_final = torch.zeros(height * width, dtype=torch.float64, device=dev)
        budget = cache_bytes
        for band in plan.bands:
            fr = _band_fragments(plan, band, means2d, conics, opacities)
            if fr is None:
                continue
            p0, p1 = band.y0 * width, band.y1 * width
            pix = fr.pixel
            w = fr.alpha * fr.trans  # [F]
            f = feats.index_select(0, fr.splat)  # [F, 4]
            acc[p0:p1].index_add_(0, pix, w[:, None] * f)
            alpha[p0:p1].scatter_add_(0, pix, w)
            log_final[p0:p1] = fr.log_final
            # median: the last drawn fragment with transmittance in front > 0.5
            rank = torch.where((fr.trans > 0.5) & (fr.alpha > 0),
                               torch.arange(len(pix), device=dev), -1)
            last = torch.full((p1 - p0,), -1, dtype=torch.int64, device=dev)
            last.scatter_reduce_(0, pix, rank, "amax")
            median[p0:p1] = torch.where(last >= 0, f[:, 3][last.clamp(min=0)], 0.0)
            if budget >= len(pix) * _FRAGMENT_BYTES:
                budget -= len(pix) * _FRAGMENT_BYTES
                band.cache = fr
        t_final = torch.exp(log_final).to(dt)
        rgb = acc[:, :3] + t_final[:, None] * background[None, :]
        depth = torch.where(alpha > 0, acc[:, 3] / alpha.clamp_min(1e-30), 0.0)
        ctx.plan = plan
        ctx.save_for_backward(means2d, conics, opacities, colors, depths, background, alpha,
                              depth, t_final)
        ctx.mark_non_differentiable(median)
        ctx.set_materialize_grads(False)
        return (rgb.reshape(height, width, 3), alpha.reshape(height, width),
                depth.reshape(height, width), median.reshape(height, width))

    @staticmethod
    def backward(ctx, g_rgb: Tensor | None,  # [H, W, 3]
                 g_alpha: Tensor | None,  # [H, W]
                 g_depth: Tensor | None,  # [H, W]
                 g_median: Tensor | None):  # [H, W], ignored (median depth is detached)
        means2d, conics, opacities, colors, depths, background, alpha, depth, t_final = \
            ctx.saved_tensors
        plan: _Plan = ctx.plan
        need_mean, need_conic, need_opacity, need_color, need_depth = ctx.needs_input_grad[:5]
        width = plan.width
        dt, dev = means2d.dtype, means2d.device
        n = len(means2d)
        # per pixel: upstream gradient of each fragment feature (r, g, b, z) and of w itself
        g_feat = torch.zeros(plan.height * width, 4, dtype=dt, device=dev)  # [H*W, 4]
        g_w = torch.zeros(plan.height * width, dtype=dt, device=dev)  # [H*W]
        v_bg = torch.zeros(plan.height * width, dtype=dt, device=dev)  # dL/dT_final
        if g_rgb is not None:
            g_rgb = g_rgb.reshape(-1, 3)
            g_feat[:, :3] = g_rgb
            v_bg = g_rgb @ background
        if g_alpha is not None:
            g_w = g_w + g_alpha.reshape(-1)
        if g_depth is not None:  # depth = sum(w z) / sum(w) where sum(w) > 0
            g_depth = g_depth.reshape(-1)
            has = alpha > 0
            inv_a = torch.where(has, 1.0 / alpha.clamp_min(1e-30), 0.0)
            g_feat[:, 3] = g_depth * inv_a
            g_w = g_w - g_depth * depth * inv_a
        feats = torch.cat([colors, depths[:, None]], 1)  # [N, 4]
        g_pix = torch.cat([g_feat, g_w[:, None]], 1)  # [H*W, 5]
        zeros = torch.zeros(n, dtype=dt, device=dev)
        acc = {k: zeros.clone() for k in ("sx", "sy", "sxx", "sxy", "syy", "o")}
        g_feat_splat = torch.zeros(n, 4, dtype=dt, device=dev)
        for band in plan.bands:
            fr = _band_fragments(plan, band, means2d, conics, opacities)
            if fr is None:
                continue
            p0, p1 = band.y0 * width, band.y1 * width
            pix, splat = fr.pixel, fr.splat
            w = fr.alpha * fr.trans
            gp = g_pix[p0:p1].index_select(0, pix)  # [F, 5]
            v = (gp[:, :4] * feats.index_select(0, splat)).sum(1) + gp[:, 4]  # [F] dL/dw
            wv = (w * v).double()
            csum = torch.cumsum(wv, 0)
            start = (csum - wv).index_select(0, fr.offsets)  # [P]
            total = torch.zeros(p1 - p0, dtype=torch.float64, device=dev).scatter_add_(0, pix, wv)
            # + start: csum runs over the whole band, so total[pix] - csum = what comes after
            total = total + (t_final[p0:p1] * v_bg[p0:p1]).double() + start
            behind = (total.index_select(0, pix) - csum).to(dt)  # fragments behind + background
            g_a = fr.trans * v - behind / (1.0 - fr.alpha)
            g_a = torch.where(fr.raw < MAX_FRAGMENT_ALPHA, g_a, 0.0)  # clamped: no gradient
            if need_opacity:
                acc["o"].scatter_add_(0, splat, g_a * fr.gauss)
            if need_mean or need_conic:
                g_sigma = -g_a * fr.raw  # alpha = o exp(-sigma): d alpha / d sigma = -alpha
                gx = g_sigma * fr.dx
                gy = g_sigma * fr.dy
                if need_mean:
                    acc["sx"].scatter_add_(0, splat, gx)
                    acc["sy"].scatter_add_(0, splat, gy)
                if need_conic:
                    acc["sxx"].scatter_add_(0, splat, gx * fr.dx)
                    acc["sxy"].scatter_add_(0, splat, gx * fr.dy)
                    acc["syy"].scatter_add_(0, splat, gy * fr.dy)
            if need_color or need_depth:
                g_feat_splat.index_add_(0, splat, w[:, None] * gp[:, :4])
        a, b, c = conics.unbind(1)
        # sigma = (a dx^2 + 2 b dx dy + c dy^2) / 2 with d = pixel - mean
        g_mean = torch.stack([-(a * acc["sx"] + b * acc["sy"]),
                              -(b * acc["sx"] + c * acc["sy"])], 1) if need_mean else None
        g_conic = torch.stack([0.5 * acc["sxx"], acc["sxy"], 0.5 * acc["syy"]], 1) \
            if need_conic else None
        return (g_mean, g_conic, acc["o"] if need_opacity else None,
                g_feat_splat[:, :3] if need_color else None,
                g_feat_splat[:, 3] if need_depth else None,
                None, None, None, None, None, None)


def composite_patches(
    means2d: Tensor,  # [N, 2] pixel coordinates
    conics: Tensor,  # [N, 3] inverse 2D covariance (a, b, c)
    opacities: Tensor,  # [N] opacity (modulation included) in [0, 1]
    colors: Tensor,  # [N, 3]
    depths: Tensor,  # [N] camera-space z (> 0: cull behind-camera splats before)
    cov_diag: Tensor,  # [N, 2] 2D covariance diagonal, for the footprint rows
    width: int,
    height: int,
    background: Tensor,  # [3]
    max_band_fragments: int = MAX_BAND_FRAGMENTS,
    cache_bytes: int = CACHE_BYTES,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(rgb [H, W, 3], alpha [H, W], expected depth [H, W], median depth [H, W]).

    Differentiable in means2d, conics, opacities, colors and depths (not cov_diag, which
    only bounds the footprint rows, nor background)."""
    return _Composite.apply(means2d, conics, opacities, colors, depths, cov_diag.detach(),
                            background.detach(), int(width), int(height),
                            int(max_band_fragments), int(cache_bytes))
