"""The dense torch oracle: every splat evaluated at every pixel, composited front to back.

Owns: a deliberately simple, autograd-only implementation of the compositing rules of
`generation.raster.composite` (same inputs, same outputs) for tiny scenes in tests.
Does not own: speed or memory (it builds [N, H*W] tensors: a few hundred splats at 32^2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from generation.raster.projection import (FOOTPRINT_SIGMAS, MAX_FRAGMENT_ALPHA,
                                          MIN_FRAGMENT_ALPHA)


def composite_dense(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3] (a, b, c)
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    depths: Tensor,  # [N] (> 0)
    width: int,
    height: int,
    background: Tensor,  # [3]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(rgb [H, W, 3], alpha [H, W], expected depth [H, W], median depth [H, W])."""
    order = torch.argsort(depths.detach(), stable=True)  # front to back
    m, c, o = means2d[order], conics[order], opacities[order]
    col, z = colors[order], depths[order]
    v, u = torch.meshgrid(torch.arange(height, dtype=m.dtype), torch.arange(width, dtype=m.dtype),
                          indexing="ij")
    dx = (u.reshape(-1) + 0.5)[None, :] - m[:, 0:1]  # [N, P]
    dy = (v.reshape(-1) + 0.5)[None, :] - m[:, 1:2]
    power = c[:, 0:1] * dx * dx + 2.0 * c[:, 1:2] * dx * dy + c[:, 2:3] * dy * dy  # [N, P]
    a = torch.clamp(o[:, None] * torch.exp(-0.5 * power), max=MAX_FRAGMENT_ALPHA)
    drawn = (power <= FOOTPRINT_SIGMAS ** 2) & (a >= MIN_FRAGMENT_ALPHA)
    a = torch.where(drawn, a, torch.zeros_like(a))
    ones = torch.ones_like(a[:1])
    trans = torch.cumprod(torch.cat([ones, 1.0 - a], 0), 0)  # [N + 1, P]
    w = a * trans[:-1]  # [N, P]
    rgb = w.T @ col + trans[-1][:, None] * background[None, :]
    alpha = w.sum(0)
    dsum = (w * z[:, None]).sum(0)
    depth = torch.where(alpha > 0, dsum / alpha.clamp_min(1e-30), torch.zeros_like(alpha))
    # median: the last drawn fragment with transmittance in front of it > 0.5
    front = drawn & (trans[:-1] > 0.5)
    rank = torch.arange(1, len(z) + 1)[:, None] * front  # [N, P]
    last = rank.argmax(0)
    median = torch.where(front.any(0), z.detach()[last], torch.zeros_like(alpha))
    return (rgb.reshape(height, width, 3), alpha.reshape(height, width),
            depth.reshape(height, width), median.reshape(height, width))
