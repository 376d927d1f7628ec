"""Image losses of the splat optimisation: L1, SSIM (3DGS form) and PSNR, with optional masks.

Owns: `photometric_loss` = (1 - w) L1 + w (1 - SSIM), w = 0.2 (docs/design.md idea 1), the
SSIM of 3DGS (11x11 Gaussian window, sigma 1.5, zero padding, C1 = 0.01^2, C2 = 0.03^2, images
in [0, 1]) computed with two separable 1-D convolutions (identical to the 2-D window), and PSNR.
Does not own: rendering or the optimiser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
                    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                    ) -> Tensor:  # [size], sums to 1
    x = torch.arange(size, dtype=torch.float64) - (size // 2)
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: Tensor, g: Tensor) -> Tensor:  # [C, H, W] -> [C, H, W], zero padding
    c = x.shape[0]
    k = len(g)
    x = F.conv2d(x[None], g.reshape(1, 1, 1, k).expand(c, 1, 1, k), padding=(0, k // 2), groups=c)
    x = F.conv2d(x, g.reshape(1, 1, k, 1).expand(c, 1, k, 1), padding=(k // 2, 0), groups=c)
    return x[0]


def ssim_map(image: Tensor, target: Tensor) -> Tensor:
    """Per-pixel SSIM [H, W] (mean over channels) of [H, W, 3] images in [0, 1]."""
    x = image.permute(2, 0, 1)
    y = target.permute(2, 0, 1)
    g = gaussian_window(dtype=x.dtype, device=x.device)
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x * mu_x
    syy = _blur(y * y, g) - mu_y * mu_y
    sxy = _blur(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sxx + syy + SSIM_C2)
    return (num / den).mean(0)


def _weighted_mean(values: Tensor, mask: Tensor | None) -> Tensor:  # [H, W] -> []
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp_min(1e-12)


def ssim(image: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean SSIM over the (mask-weighted) pixels.  image, target: [H, W, 3]; mask: [H, W]."""
    return _weighted_mean(ssim_map(image, target), mask)


def l1(image: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    return _weighted_mean((image - target).abs().mean(-1), mask)


def photometric_loss(image: Tensor,  # [H, W, 3]
                     target: Tensor,  # [H, W, 3]
                     mask: Tensor | None = None,  # [H, W] weights in [0, 1]
                     ssim_weight: float = 0.2) -> Tensor:
    """(1 - ssim_weight) * L1 + ssim_weight * (1 - SSIM): the 3DGS loss."""
    return (1.0 - ssim_weight) * l1(image, target, mask) + \
        ssim_weight * (1.0 - ssim(image, target, mask))


def psnr(image: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (inf when identical)."""
    mse = float(_weighted_mean(((image - target) ** 2).mean(-1), mask))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)
