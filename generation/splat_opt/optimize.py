"""Per-scale splat optimisation: Adam on opacity, rotation and scale of the new splats only.

Owns: the fitting loop of docs/design.md idea 1: the new level's splats are rendered together
with the frozen old world (modulated at each view's camera), and `photometric_loss` over the main
view and the auxiliary views (each with an optional mask) drives Adam on the new splats'
opacity logits, quaternions and log-scales. Positions, colours and `s_native` never change:
the result copies those arrays bit for bit into new `SplatChunk`s (inputs are never mutated).
Also: determinism (a seed picks the auxiliary views per step, everything else is a fixed
sequence of float ops), a progress callback, cancellation between iterations, and a torch
thread limit (default: all cores but one, so the app's frame loop keeps a core).
Does not own: rendering (`generation.raster`), initialisation (`pixel_init`), LoD links.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from engine.camera import Camera
from engine.lod import LodLinks
from engine.modulation import ALPHA_CULL
from engine.splats import (LOG_SCALE_MAX, LOG_SCALE_MIN, MAX_ABS_OPACITY_LOGIT, SplatChunk,
                           normalize_quaternions)
from generation.cores import background_threads
from generation.raster.projection import LOW_PASS_PX2
from generation.raster.rasterize import Backend, gsplat_available, rasterize
from generation.raster.scene import SplatTensors, default_device, modulation_at
from generation.splat_opt.losses import photometric_loss, psnr
from generation.splat_opt.pixel_init import as_float_image


@dataclass(frozen=True, eq=False)
class View:
    """A camera and the image the splats should reproduce there."""

    camera: Camera
    target: np.ndarray  # [H, W, 3] uint8 or float in [0, 1]
    mask: np.ndarray | None = None  # [H, W] bool or weights in [0, 1]; None = everywhere
    weight: float = 1.0

    @classmethod
    def of(cls, view: "View | tuple") -> "View":
        """Accept a View or a (camera, target[, mask]) tuple."""
        return view if isinstance(view, View) else cls(*view)


@dataclass(frozen=True)
class OptimizeConfig:
    iterations: int = 100
    # Adam on opacity logits, at least OPACITY_TRAVEL / iterations (see `opacity_lr`)
    lr_opacity: float = 0.5
    lr_scale: float = 0.03  # on log std-devs
    lr_rotation: float = 0.02  # on raw (w, x, y, z) quaternions, normalised when rendering
    ssim_weight: float = 0.2  # L = (1 - w) L1 + w (1 - SSIM)
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; None = all cores but one
    aux_views_per_step: int | None = None  # None = every auxiliary view at every step
    backend: Backend = "auto"
    device: str | None = None  # None = CUDA when available, else CPU
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # A fresh random background each iteration (as 3DGS trains): over a fixed black one, dark
    # surfaces fit just as well half-transparent and then show holes in the world.
    random_background: bool = True
    # the rasterizer's antialias term in the views' pixels: the viewers' 0.3 px^2, or less
    # for views coarser than the display the level is shown on (`generation.sizes`)
    low_pass_px2: float = LOW_PASS_PX2


@dataclass(frozen=True)
class Progress:
    iteration: int  # 1-based, the iteration just finished
    iterations: int
    loss: float


@dataclass(frozen=True)
class OptimizeStats:
    iterations_run: int
    cancelled: bool
    initial_loss: float  # nan when no iteration ran
    final_loss: float
    losses: tuple[float, ...]  # one per iteration run
    main_psnr: float  # PSNR of the main view re-rendered with the result (mask-weighted)
    seconds: float
    threads: int
    backend: str
    device: str


@dataclass(frozen=True)
class OptimizeResult:
    chunks: tuple[SplatChunk, ...]  # the optimised new chunks, same order as given
    stats: OptimizeStats


Cancel = Union[Callable[[], bool], threading.Event, None]


def _cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@dataclass(frozen=True, eq=False)
class _PreparedView:
    """Everything about one view that does not change while optimising."""

    camera: Camera
    target: Tensor  # [H, W, 3]
    mask: Tensor | None  # [H, W]
    weight: float
    old: SplatTensors  # frozen old-world splats drawn at this camera, relative to the eye
    old_modulation: Tensor  # [M]
    new_means: Tensor  # [N, 3] new splats relative to the eye
    new_modulation: Tensor | None  # [N]


def _prepare_view(view: View, new: Sequence[SplatChunk], new_links: Sequence[LodLinks | None],
                  old_world: Sequence[tuple[SplatChunk, LodLinks | None]],
                  device: torch.device) -> _PreparedView:
    cam = view.camera
    H, W = cam.height, cam.width
    target = torch.as_tensor(as_float_image(view.target, H, W, "target"), dtype=torch.float32,
                             device=device)
    mask = None
    if view.mask is not None:
        m = np.asarray(view.mask)
        if m.shape != (H, W):
            raise ValueError(f"mask has shape {m.shape}, expected ({H}, {W})")
        if not np.isfinite(m.astype(np.float64)).all():
            raise ValueError("mask holds NaN or Inf")
        mask = torch.as_tensor(np.clip(m.astype(np.float64), 0.0, 1.0), dtype=torch.float32,
                               device=device)
    if not (math.isfinite(view.weight) and view.weight >= 0):
        raise ValueError(f"view weight must be finite and >= 0, got {view.weight!r}")
    # old world: drop what the modulation hides here, keep the rest frozen
    old_chunks = [c for c, _ in old_world if len(c)]
    old_links = [l for c, l in old_world if len(c)]
    if old_chunks:
        mod = modulation_at(cam, list(zip(old_chunks, old_links)))
        shown = mod > ALPHA_CULL
        offsets = np.cumsum([0] + [len(c) for c in old_chunks])
        old_chunks = [c.take(shown[a:b]) for c, a, b in zip(old_chunks, offsets, offsets[1:])]
        mod = mod[shown]
    else:
        mod = np.zeros(0)
    with torch.no_grad():
        old = SplatTensors.from_chunks(old_chunks, origin=cam.position, device=device)
        new_t = SplatTensors.from_chunks(list(new), origin=cam.position, device=device)
    new_mod = None
    if any(l is not None for l in new_links):
        new_mod = torch.as_tensor(modulation_at(cam, list(zip(new, new_links))),
                                  dtype=torch.float32, device=device)
    return _PreparedView(cam, target, mask, float(view.weight), old,
                         torch.as_tensor(mod, dtype=torch.float32, device=device),
                         new_t.means, new_mod)


def _render(
    pv: _PreparedView,
    quats: Tensor,  # [N, 4] new splats' (learnable) quaternions
    log_scales: Tensor,  # [N, 3]
    logits: Tensor,  # [N] opacity logits
    colors: Tensor,  # [N, 3] frozen
    backend: Backend,
    background: tuple[float, float, float],
    low_pass_px2: float = LOW_PASS_PX2,
) -> Tensor:
    """[H, W, 3] render of the frozen old world plus the new splats at one view."""
    o = pv.old
    new_mod = pv.new_modulation if pv.new_modulation is not None else torch.ones_like(logits)
    out = rasterize(
        torch.cat([o.means, pv.new_means]),
        torch.cat([o.quats, quats]),
        torch.cat([torch.exp(o.log_scales), torch.exp(log_scales)]),
        torch.cat([torch.sigmoid(o.opacity_logits), torch.sigmoid(logits)]),
        torch.cat([o.colors, colors]),
        pv.camera, origin=pv.camera.position,
        modulation=torch.cat([pv.old_modulation, new_mod]),
        background=background, backend=backend, median_depth=False,
        low_pass_px2=low_pass_px2)
    return out.rgb


# Adam moves a parameter by about its lr per step, so going from the initial opacity 0.1 (logit
# -2.2) to an opaque 0.9 (+2.2) takes 4.4 / lr steps; with fewer, narrow splats stay see-through
OPACITY_TRAVEL = 2.0 * math.log(9.0)


def opacity_lr(config: "OptimizeConfig") -> float:
    """The opacity learning rate: `lr_opacity`, raised so that `iterations` steps can make a
    splat opaque (the generation stages run 10-12; a quick draft may run 1 or 2)."""
    return max(config.lr_opacity, OPACITY_TRAVEL / max(config.iterations, 1))


def optimize_splats(
    new: SplatChunk | Sequence[SplatChunk],
    main: View | tuple,
    aux: Sequence[View | tuple] = (),
    old_world: Sequence[tuple[SplatChunk, LodLinks | None]] = (),
    new_links: Sequence[LodLinks | None] | None = None,  # per new chunk; None = no fading
    config: OptimizeConfig = OptimizeConfig(),
    progress: Callable[[Progress], None] | None = None,
    cancel: Cancel = None,
) -> OptimizeResult:
    """Fit the new splats' opacity, rotation and scale to the views (module docstring)."""
    chunks = (new,) if isinstance(new, SplatChunk) else tuple(new)
    if not chunks:
        raise ValueError("optimize_splats needs at least one new chunk")
    for c in chunks:
        c.validate()
    links = tuple(new_links) if new_links is not None else (None,) * len(chunks)
    if len(links) != len(chunks):
        raise ValueError(f"{len(links)} link sets for {len(chunks)} new chunks")
    if config.iterations < 0:
        raise ValueError("iterations must be >= 0")
    device = torch.device(config.device) if config.device else default_device()
    threads = config.num_threads or background_threads()
    previous_threads = torch.get_num_threads()
    start = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        views = [View.of(main)] + [View.of(v) for v in aux]
        prepared = [_prepare_view(v, chunks, links, old_world, device) for v in views]
        with torch.no_grad():
            params = SplatTensors.from_chunks(list(chunks), device=device)
        quats = params.quats.clone().requires_grad_(True)
        log_scales = params.log_scales.clone().requires_grad_(True)
        logits = params.opacity_logits.clone().requires_grad_(True)
        colors = params.colors  # frozen
        optimizer = torch.optim.Adam([
            {"params": [logits], "lr": opacity_lr(config)},
            {"params": [log_scales], "lr": config.lr_scale},
            {"params": [quats], "lr": config.lr_rotation},
        ], eps=1e-15)
        rng = np.random.default_rng(config.seed)
        n_aux = len(prepared) - 1
        per_step = n_aux if config.aux_views_per_step is None else \
            max(0, min(n_aux, int(config.aux_views_per_step)))
        backend = config.backend
        losses: list[float] = []
        cancelled = False
        for it in range(config.iterations):
            if _cancelled(cancel):
                cancelled = True
                break
            if per_step < n_aux:  # a seeded subset of the auxiliary views this step
                picked = [0] + sorted(1 + rng.choice(n_aux, per_step, replace=False))
            else:
                picked = list(range(n_aux + 1))
            optimizer.zero_grad(set_to_none=True)
            background = (tuple(float(c) for c in rng.random(3)) if config.random_background
                          else config.background)
            total_w = sum(prepared[i].weight for i in picked) or 1.0
            loss_value = 0.0
            for i in picked:
                pv = prepared[i]
                if pv.weight == 0:
                    continue
                image = _render(pv, quats, log_scales, logits, colors, backend, background,
                                config.low_pass_px2)
                loss = photometric_loss(image, pv.target, pv.mask, config.ssim_weight)
                if loss.requires_grad:  # False when no splat is drawn in this view
                    (loss * (pv.weight / total_w)).backward()  # one graph alive at a time
                loss_value += float(loss.detach()) * pv.weight / total_w
            optimizer.step()
            losses.append(loss_value)
            if progress is not None:
                progress(Progress(it + 1, config.iterations, loss_value))
        with torch.no_grad():
            pv = prepared[0]
            final = _render(pv, quats, log_scales, logits, colors, backend, config.background,
                            config.low_pass_px2)
            main_psnr = psnr(final.clamp(0, 1), pv.target, pv.mask)
            result = _write_back(chunks, quats, log_scales, logits)
        backend_used = "gsplat" if (backend == "gsplat" or (
            backend == "auto" and gsplat_available(device))) else "torch"
    finally:
        torch.set_num_threads(previous_threads)
    stats = OptimizeStats(
        iterations_run=len(losses), cancelled=cancelled,
        initial_loss=losses[0] if losses else math.nan,
        final_loss=losses[-1] if losses else math.nan, losses=tuple(losses),
        main_psnr=main_psnr, seconds=time.perf_counter() - start, threads=threads,
        backend=backend_used, device=str(device))
    return OptimizeResult(result, stats)


def _write_back(chunks: Sequence[SplatChunk], quats: Tensor, log_scales: Tensor,
                logits: Tensor) -> tuple[SplatChunk, ...]:
    """New chunks: optimised rotation / scale / opacity, every other array copied bit for bit."""
    q = normalize_quaternions(quats.detach().cpu().double().numpy())
    ls = np.clip(log_scales.detach().cpu().numpy(), LOG_SCALE_MIN, LOG_SCALE_MAX)
    lo = np.clip(logits.detach().cpu().numpy(), -MAX_ABS_OPACITY_LOGIT, MAX_ABS_OPACITY_LOGIT)
    out = []
    start = 0
    for c in chunks:
        end = start + len(c)
        out.append(SplatChunk(
            origin=c.origin.copy(), positions=c.positions.copy(),
            rotations=q[start:end].astype(np.float32),
            log_scales=ls[start:end].astype(np.float32),
            opacity_logits=lo[start:end].astype(np.float32),
            sh_dc=c.sh_dc.copy(), s_native=c.s_native.copy(), level=c.level,
            sh_rest=c.sh_rest.copy()).validate())
        start = end
    return tuple(out)
