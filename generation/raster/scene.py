"""`SplatChunk`s as torch tensors, and rendering a set of chunks (with LoD links) at a camera.

Owns: the conversion chunk (float64 origin + float32 offsets, log-scales, logits, SH DC) ->
tensors relative to one float64 origin, the per-splat modulation alpha at a camera, and
`render_chunks`, the no-grad "render the existing world here" used by the observe stage.
Does not own: the rasterizer itself (`rasterize`) or writing optimised values back into chunks
(`generation.splat_opt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from engine.camera import Camera
from engine.lod import LodLinks
from engine.modulation import alpha as modulation_alpha
from engine.splats import SH_C0, SplatChunk
from generation.raster.projection import LOW_PASS_PX2
from generation.raster.rasterize import Backend, RasterOutput, rasterize


@dataclass(frozen=True, eq=False)
class SplatTensors:
    """Row-aligned splat parameters as tensors, positions relative to a float64 `origin`."""

    origin: np.ndarray  # [3] float64 world position of the frame of `means`
    means: Tensor  # [N, 3] offsets from origin
    quats: Tensor  # [N, 4] (w, x, y, z)
    log_scales: Tensor  # [N, 3] log std-devs
    opacity_logits: Tensor  # [N]
    colors: Tensor  # [N, 3] degree-0 colour clamped to [0, 1] (as the real-time renderer)
    s_native: Tensor  # [N]

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def from_chunks(cls, chunks: Sequence[SplatChunk], origin: np.ndarray | None = None,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                    ) -> "SplatTensors":
        """Concatenate chunks relative to `origin` (default: the first chunk's origin).
        Offsets are formed in float64 before the cast."""
        if origin is None:
            origin = chunks[0].origin if chunks else np.zeros(3)
        origin = np.asarray(origin, np.float64).reshape(3)

        def cat(arrays: list[np.ndarray], width: int) -> Tensor:
            a = np.concatenate(arrays) if arrays else np.zeros((0, width))
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        means = [(c.origin - origin)[None, :] + c.positions.astype(np.float64) for c in chunks]
        rgb = [np.clip(0.5 + SH_C0 * c.sh_dc.astype(np.float64), 0.0, 1.0) for c in chunks]
        return cls(
            origin=origin,
            means=cat(means, 3),
            quats=cat([c.rotations for c in chunks], 4),
            log_scales=cat([c.log_scales for c in chunks], 3),
            opacity_logits=cat([c.opacity_logits for c in chunks], 0).reshape(-1),
            colors=cat(rgb, 3),
            s_native=cat([c.s_native for c in chunks], 0).reshape(-1),
        )

    def render(self, camera: Camera, modulation: Tensor | None = None,  # [N]
               background: tuple[float, float, float] = (0.0, 0.0, 0.0),
               backend: Backend = "auto", low_pass_px2: float = LOW_PASS_PX2) -> RasterOutput:
        return rasterize(self.means, self.quats, torch.exp(self.log_scales),
                         torch.sigmoid(self.opacity_logits), self.colors, camera,
                         origin=self.origin, modulation=modulation, background=background,
                         backend=backend, low_pass_px2=low_pass_px2)


def modulation_at(
    camera: Camera,
    chunks: Sequence[tuple[SplatChunk, LodLinks | None]],  # links None = a root chunk
) -> np.ndarray:  # [sum N] float64 in [0, 1]
    """LoD opacity multiplier of every splat at `camera`: `engine.modulation.alpha` with
    s_render = camera depth / sqrt(fx fy) (docs/design.md ideas 2 and 3)."""
    out = []
    for chunk, links in chunks:
        if links is None:
            links = LodLinks.root(len(chunk))
        s_render = camera.pixel_scale(chunk.world_positions())
        # behind the camera s_render <= 0: modulation 0 there (such splats are culled anyway)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = modulation_alpha(np.maximum(s_render, 1e-300), chunk.s_native, links.s_parent,
                                 links.s_child)
        out.append(a)
    return np.concatenate(out) if out else np.zeros(0)


_device_policy = "auto"  # the `device` setting of the running generation (set_device_policy)


def set_device_policy(device: str) -> None:
    """The `device` setting (`GenerationConfig.device`: auto, cpu, cuda or cuda:N) the
    pipeline's renders and fit follow from now on in this process; the pipeline sets it at
    the start of each run, as it sets torch's thread count. A CUDA device this machine does
    not have is a one-line `ConfigError`, as the model backends say it (`backends.hf`)."""
    global _device_policy
    from generation.config import ConfigError, check_device, missing_device

    check_device(device)
    available = torch.cuda.is_available()
    problem = missing_device(device, available, torch.cuda.device_count() if available else 0)
    if problem:
        raise ConfigError(problem)
    _device_policy = device


def default_device() -> torch.device:
    """Where the pipeline renders and fits splats: a CUDA device when the device setting
    allows it and there is one (gsplat's rasterizer where it imports,
    `rasterize.resolve_backend`), else the CPU, as `generation.sizes.accelerated` decides
    the working size."""
    if _device_policy == "cpu" or not torch.cuda.is_available():  # auto on a CPU machine
        return torch.device("cpu")
    return torch.device("cuda" if _device_policy == "auto" else _device_policy)


def render_chunks(
    camera: Camera,
    chunks: Sequence[tuple[SplatChunk, LodLinks | None]],
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    backend: Backend = "auto",
    device: torch.device | str = "cpu",
    low_pass_px2: float = LOW_PASS_PX2,
) -> RasterOutput:
    """Render the world (modulated at this camera) without gradients, positions relative to
    the camera so a world zoomed 10^6x stays precise."""
    with torch.no_grad():
        splats = SplatTensors.from_chunks([c for c, _ in chunks], origin=camera.position,
                                          device=device)
        mod = torch.as_tensor(modulation_at(camera, chunks), dtype=torch.float32, device=device)
        return splats.render(camera, mod, background, backend, low_pass_px2)
