"""The two pipelines, read top to bottom: scene E0 from an image, and one zoom step.

Owns: chaining the stages (`generation.stages.*`) with their backends from a
`GenerationConfig`, the working cameras (C_0 from the image; C_i re-sampled to the working
size), the provisional LoD links the old world is drawn with while the new level is being
made, per-stage timings, progress (`progress(stage, fraction_of_stage)`), cancellation between
stages and optimiser iterations, and packing the outcome: `NewWorld` for `wonderzoom new`,
`ZoomRun` (every stage's output, for tests and benchmarks) and `ZoomResult` for the app;
`request_at_pixel` builds the request of a zoom at a pixel of a stored view.
Does not own: the stages' maths, building requests (`engine.zoom`), processes and queues
(`generation.service`), files or the command line.

Zoom data flow (docs/design.md, "one zoom"): observe -> context -> super_resolve -> edit ->
masks -> harmonize -> depth -> aux_views -> init -> optimize -> split into chunks.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from engine.camera import Camera
from engine.chunking import split_level
from engine.errors import UserError
from engine.lod import LodIndex, LodLinks, link_level
from engine.messages import MAX_PROMPT_CHARS, ZoomRequest, ZoomResult
from engine.history import History
from engine.scene import build_scene
from engine.splats import SplatChunk
from engine.world import World
from engine.zoom import Scene, crop_camera, pick_surface, world_scene, zoom_request
from generation.config import GenerationConfig
from generation.sizes import (DISPLAY_LONG_SIDE, WorkingSize, detail_scale,
                              display_low_pass_px2, working_long_side)
from generation.stages import aux_views as aux_stage
from generation.stages import context as context_stage
from generation.stages import depth as depth_stage
from generation.stages import edit as edit_stage
from generation.stages import harmonize as harmonize_stage
from generation.stages import load_backends
from generation.stages import masks as masks_stage
from generation.stages import observe as observe_stage
from generation.stages import optimize as optimize_stage
from generation.stages import splat_init as init_stage
from generation.stages import super_resolve as sr_stage

VERSION = "1"
AUX_WEIGHT = 0.5  # auxiliary views count half as much as the main view in the loss

ZOOM_STAGES = ("observe", "context", "super_resolve", "edit", "masks", "harmonize", "depth",
               "aux_views", "init", "optimize")
NEW_STAGES = ("load", "depth", "aux_views", "init", "optimize")
# share of a whole request's time each stage takes (for one overall progress fraction)
STAGE_WEIGHTS = {"load": 0.02, "observe": 0.08, "context": 0.01, "super_resolve": 0.08,
                 "edit": 0.02, "masks": 0.01, "harmonize": 0.01, "depth": 0.03, "aux_views": 0.1,
                 "init": 0.03, "optimize": 0.63}

Progress = Callable[[str, float], None]  # (stage, fraction of that stage in [0, 1])
Cancel = Callable[[], bool]


class ZoomInputError(UserError, ValueError):
    """A request the pipeline cannot grow from: a bad prompt, nothing of the world in view."""


class Cancelled(Exception):
    """The request was cancelled between two stages or optimiser iterations."""


def overall_fraction(stages: tuple[str, ...], stage: str, fraction: float) -> float:
    """Progress of the whole request when `stage` is `fraction` done."""
    total = sum(STAGE_WEIGHTS[s] for s in stages)
    done = 0.0
    for s in stages:
        if s == stage:
            return min(1.0, (done + STAGE_WEIGHTS[s] * min(max(fraction, 0.0), 1.0)) / total)
        done += STAGE_WEIGHTS[s]
    return min(1.0, done / total)


class _Runner:
    """Times stages, reports progress and checks for cancellation."""

    def __init__(self, progress: Progress | None, cancel: Cancel | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self.timings: dict[str, float] = {}
        self.start = time.perf_counter()

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled")

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        from generation.progress import stage_ticks

        self.check()
        self.report(name, 0.0)
        t0 = time.perf_counter()

        def tick(fraction: float) -> None:  # a backend's own steps (diffusion, fine-tuning)
            self.report(name, fraction)
            self.check()

        with stage_ticks(tick):
            yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
        self.report(name, 1.0)

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": time.perf_counter() - self.start}


def _set_threads(config: GenerationConfig) -> int:
    """Threads and device for this run (process-wide, like torch's own thread count): the
    builtin stages' renders and the fit follow `config.device` (`generation.raster`)."""
    import cv2
    import torch

    from generation.raster import set_device_policy

    n = config.threads()
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    set_device_policy(config.device)
    return n


# ---- scene E0 ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NewWorld:
    camera: Camera  # C_0
    chunks: tuple[SplatChunk, ...]  # level 0, split for streaming
    rgb: np.ndarray  # [H, W, 3] the working image
    depth: np.ndarray  # [H, W] its depth
    timings: Mapping[str, float]
    backend: Mapping[str, Any]  # name, version, seed, settings (JSON-friendly)
    prompt: str
    hole_fractions: tuple[float, ...]  # of each auxiliary view before filling


def image_camera(width: int, height: int, fov_deg: float) -> Camera:
    """C_0: at the origin looking along +z (OpenCV axes), `fov_deg` across the long side."""
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    return Camera(np.eye(4), f, f, width / 2.0, height / 2.0, width, height, near=1e-3, far=1e4)


def run_new(image: np.ndarray,  # [H, W, 3] uint8, any size
            prompt: str = "", seed: int = 0, config: GenerationConfig = GenerationConfig(),
            progress: Progress | None = None, cancel: Cancel | None = None) -> NewWorld:
    from generation.image_input import resize_long_side

    if len(prompt) > MAX_PROMPT_CHARS:
        raise ZoomInputError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
    load_backends()  # the model backends register themselves (their weights load lazily)
    run = _Runner(progress, cancel)
    threads = _set_threads(config)
    size = working_long_side("new", max(np.shape(image)[:2]), config.new_long_side,
                             device=config.device)
    with run.stage("load"):
        rgb = resize_long_side(np.asarray(image, np.uint8), size.long_side)
        rgb = rgb.astype(np.float64) / 255.0
        H, W = rgb.shape[:2]
        cam = image_camera(W, H, config.new_fov_deg)
    with run.stage("depth"):
        dep = depth_stage.run(depth_stage.DepthInput(cam, rgb, relief=config.relief,
                                                     depth_ratio=config.depth_ratio),
                              config.backend_for("depth"), **config.options_for("depth"))
        depth = dep.depth
    with run.stage("aux_views"):
        centre = cam.unproject(np.array([[cam.cx, cam.cy]]), np.array([np.median(depth)]))[0]
        aux = aux_stage.run(aux_stage.AuxViewsInput(
            cam, rgb, depth, centre, (), config.aux_views_new, config.aux_angle_new_deg,
            config.relief, config.backend_for("depth"), _items(config.options_for("depth")),
            prompt), config.backend_for("aux_views"), **config.options_for("aux_views"))
    with run.stage("init"):
        init = init_stage.run(_init_input(cam, rgb, depth, aux, 0, config,
                                          config.under_edge_px_new),
                              config.backend_for("init"), **config.options_for("init"))
    with run.stage("optimize"):
        opt = optimize_stage.run(
            _optimize_input(init, cam, rgb, aux, (), config.new_iterations, config, seed,
                            threads, display_low_pass_px2(W, DISPLAY_LONG_SIDE)),
            config.backend_for("optimize"), lambda f: run.report("optimize", f), run.check)
        run.check()  # the optimiser stops early when cancelled; that is not a result
    level = SplatChunk.concatenate(list(opt.chunks))
    chunks = tuple(split_level(level, config.max_chunk_splats))
    backend = _backend_info(config, seed, NEW_STAGES, extra={
        "splats": len(level), "working_size": [W, H], "size_rule": size.rule,
        "final_loss": _num(opt.final_loss),
        "depth": "layout prior" if config.backend_for("depth") == "builtin" else
        config.backend_for("depth")})
    return NewWorld(cam, chunks, rgb, depth, run.total(), backend, prompt,
                    tuple(v.hole_fraction for v in aux.views))


# ---- a zoom step ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ZoomRun:
    """Everything one zoom produced, stage by stage (tests and benchmarks look inside)."""

    request: ZoomRequest
    camera: Camera  # the working C_i (request.camera re-sampled to the working size)
    factor: float  # parent native scale / new native scale at the target
    observed: observe_stage.ObserveOutput
    context: context_stage.ContextOutput
    super_resolved: sr_stage.SuperResolveOutput
    edited: edit_stage.EditOutput
    masks: masks_stage.MasksOutput
    harmonized: harmonize_stage.HarmonizeOutput  # the image the level is made from
    depth: depth_stage.DepthOutput
    aux: aux_stage.AuxViewsOutput
    init: init_stage.SplatInitOutput
    optimized: optimize_stage.OptimizeOutput
    chunks: tuple[SplatChunk, ...]  # the new level, split for streaming
    linked_scene: Scene  # the old world with provisional links (as after the append)
    timings: Mapping[str, float]
    backend: Mapping[str, Any]

    def result(self) -> ZoomResult:
        return ZoomResult(self.request.request_id, True, chunks=dict(enumerate(self.chunks)),
                          backend=dict(self.backend), timings=dict(self.timings),
                          request=self.request)


def _scene(request: ZoomRequest) -> Scene:
    pairs = []
    for item in request.scene:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], SplatChunk)):
            raise ValueError("request.scene must hold (SplatChunk, LodLinks | None) pairs")
        chunk, links = item
        if links is not None and not isinstance(links, LodLinks):
            raise ValueError("request.scene must hold (SplatChunk, LodLinks | None) pairs")
        if len(chunk):
            pairs.append((chunk, links))
    return tuple(pairs)


def zoom_factor(camera: Camera, scene: Scene, point: np.ndarray, default: float = 4.0) -> float:
    """How much finer C_i is than the old world at the picked point: the median native scale
    of old splats around the point over C_i's pixel footprint there (1..64)."""
    d = float(camera.points_to_camera(point[None])[0, 2])
    if not (d > 0) or not scene:
        return default
    s_new = d / camera.focal
    picked = []
    radius = 0.1 * max(camera.width, camera.height)
    for chunk, _ in scene:
        uv, z = camera.project(chunk.world_positions())
        with np.errstate(invalid="ignore"):
            near = (z > 0) & (np.hypot(uv[:, 0] - camera.cx, uv[:, 1] - camera.cy) < radius)
            near &= np.abs(z - d) < 0.05 * d
        picked.append(chunk.s_native[near])
    s = np.concatenate(picked) if picked else np.zeros(0)
    if len(s) == 0:
        return default
    return float(np.clip(np.median(s) / s_new, 1.0, 64.0))


def provisional_links(camera: Camera, depth: np.ndarray, rgb: np.ndarray, scene: Scene,
                      level: int) -> Scene:
    """The old world's links once a level made at `camera` with `depth` is appended (what
    `engine.lod.link_level` will derive), so auxiliary views and the optimiser see the old
    splats inside the new patch faded out exactly as the engine will draw them."""
    if not scene:
        return ()
    from engine.synthetic import pixel_aligned_splats

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        probe = pixel_aligned_splats(camera, depth, np.clip(rgb, 0, 1), level=level)
    index = LodIndex()
    older = {}
    for i, (chunk, links) in enumerate(scene):
        index.links[i] = links if links is not None else LodLinks.root(len(chunk))
        older[i] = chunk
    link_level(index, camera, {-1: probe}, older)
    return tuple((older[i], index.links[i]) for i in range(len(scene)))


def working_camera(request: ZoomRequest, config: GenerationConfig) -> tuple[Camera, WorkingSize]:
    """C_i at the size the level is made at (`generation.sizes`): the request camera's own
    size where the machine affords it, the CPU limit or the configured size otherwise."""
    shown = max(request.camera.width, request.camera.height)
    size = working_long_side("zoom", shown, config.zoom_long_side, device=config.device)
    return request.camera.resampled_long_side(size.long_side), size


def run_zoom(request: ZoomRequest, config: GenerationConfig | None = None,
             progress: Progress | None = None, cancel: Cancel | None = None) -> ZoomRun:
    """One zoom step for `request` (C_i, the picked point, prompt, seed, the old world)."""
    config = GenerationConfig.from_settings(request.settings, base=config)
    if not isinstance(request.prompt, str) or len(request.prompt) > MAX_PROMPT_CHARS:
        raise ZoomInputError(f"the prompt must be text of at most {MAX_PROMPT_CHARS} characters")
    load_backends()  # the model backends register themselves (their weights load lazily)
    run = _Runner(progress, cancel)
    threads = _set_threads(config)
    scene = _scene(request)
    if not scene:
        raise ZoomInputError("the request carries no existing world to zoom into")
    cam, size = working_camera(request, config)
    low_pass = display_low_pass_px2(cam.width, request.camera.width)  # the fit sees the screen's
    point = np.asarray(request.point, np.float64).reshape(3)
    H, W = cam.height, cam.width
    seed = int(request.seed)

    with run.stage("observe"):
        factor = zoom_factor(cam, scene, point)
        obs = observe_stage.run(observe_stage.ObserveInput(cam, scene, factor),
                                config.backend_for("observe"), **config.options_for("observe"))
        if (obs.alpha >= 0.5).mean() < 0.05:
            raise ZoomInputError("the existing world covers almost nothing of the zoom view")
    with run.stage("context"):
        ctx = context_stage.run(context_stage.ContextInput(
            obs.rgb, request.prompt, tuple(request.context), request.level),
            config.backend_for("context"), **config.options_for("context"))
    with run.stage("super_resolve"):
        sr_backend = config.backend_for("super_resolve")
        sr_opts = ({"model": config.sr_model, "threads": threads} if sr_backend == "builtin"
                   else config.options_for("super_resolve"))
        detail = config.detail_strength * detail_scale(cam.width, request.camera.width)
        sr = sr_stage.run(sr_stage.SuperResolveInput(obs.low_rgb, W, H, seed, detail,
                                                     ctx.caption,
                                                     config.detail_bound_255 / 255.0,
                                                     config.edge_gain, config.edge_limit),
                          sr_backend, **sr_opts)
    with run.stage("edit"):
        uv, _ = cam.project(point[None])
        centre = (float(uv[0, 0]), float(uv[0, 1])) if np.isfinite(uv).all() else (cam.cx, cam.cy)
        ed = edit_stage.run(edit_stage.EditInput(sr.rgb, request.prompt, centre, seed,
                                                 config.edit_size), config.backend_for("edit"),
                            **config.options_for("edit"))
    with run.stage("masks"):
        msk = masks_stage.run(masks_stage.MasksInput(ed.rgb, request.prompt, centre, ed.mask),
                              config.backend_for("masks"), **config.options_for("masks"))
    with run.stage("harmonize"):
        hm = harmonize_stage.run(harmonize_stage.HarmonizeInput(
            ed.rgb, obs.seen if obs.seen is not None else obs.rgb * obs.alpha[..., None],
            obs.rgb, obs.alpha, msk.mask, factor,
            config.tone_sigma, config.border_fade, config.fade_detail_px),
            config.backend_for("harmonize"),
            **config.options_for("harmonize"))
        rgb = hm.rgb
    with run.stage("depth"):
        dep = depth_stage.run(depth_stage.DepthInput(
            cam, rgb, obs.depth, obs.alpha, msk.mask, ed.height, config.relief),
            config.backend_for("depth"), **config.options_for("depth"))
    with run.stage("aux_views"):
        linked = provisional_links(cam, dep.depth, rgb, scene, request.level)
        aux = aux_stage.run(aux_stage.AuxViewsInput(
            cam, rgb, dep.depth, point, linked, config.aux_views_zoom,
            config.aux_angle_zoom_deg, config.relief, config.backend_for("depth"),
            _items(config.options_for("depth")), ctx.caption),
            config.backend_for("aux_views"), **config.options_for("aux_views"))
    with run.stage("init"):
        init = init_stage.run(_init_input(cam, rgb, dep.depth, aux, request.level, config),
                              config.backend_for("init"), **config.options_for("init"))
    with run.stage("optimize"):
        opt = optimize_stage.run(
            _optimize_input(init, cam, rgb, aux, linked, config.zoom_iterations, config,
                            seed, threads, low_pass),
            config.backend_for("optimize"), lambda f: run.report("optimize", f), run.check)
        run.check()
        solid, fit_alpha = optimize_stage.close_coverage(opt.chunks, cam, low_pass)
        fitted, fit_tone = harmonize_stage.correct_fit_tone(
            solid, cam, rgb, linked, hm.reference, msk.mask,
            config.tone_sigma * max(factor, 1.0), config.fit_tone_steps, low_pass)
    level = SplatChunk.concatenate(list(fitted))
    chunks = tuple(split_level(level, config.max_chunk_splats))
    backend = _backend_info(config, seed, ZOOM_STAGES, extra={
        "caption": ctx.caption, "edit": ed.label, "understood": list(ed.understood),
        "factor": round(factor, 4), "splats": len(level), "working_size": [W, H],
        "size_rule": size.rule,
        "sr_model": sr.model, "mask": msk.source, "depth_fit": [_num(dep.scale), _num(dep.shift)],
        "tone_shift_255": [round(float(v) * 255, 2) for v in  # mean tone correction per channel
                           hm.correction.reshape(-1, 3).mean(axis=0)],
        "fit_tone_255": [round(float(v) * 255, 2) for v in fit_tone.reshape(-1, 3).mean(axis=0)],
        "fit_alpha": _num(fit_alpha), "final_loss": _num(opt.final_loss)})
    return ZoomRun(request, cam, factor, obs, ctx, sr, ed, msk, hm, dep, aux, init, opt, chunks,
                   linked, run.total(), backend)


def request_at_pixel(history: History, chunks: Mapping[int, SplatChunk] | None, view: Camera,
                     pixel: tuple[float, float], prompt: str, *, factor: float = 4.0,
                     seed: int = 0, request_id: int = 0, world: World | None = None
                     ) -> ZoomRequest:
    """The request for a zoom at `pixel` of `view` on the world at the history's head (what
    `wonderzoom zoom --at U,V` sends): the point is picked from the median depth of the old
    world rendered around the pixel, the rest is `engine.zoom.zoom_request`. `world`: the
    scene at the head when the caller built it (a streamed one: only the chunks the pick's
    crop and the new camera see are read), else it is built from `chunks`. C_i has the size
    `play` shows the level at (`DISPLAY_LONG_SIDE` across)."""
    if world is None:
        world = build_scene(history, chunks)
    pairs, _ = world_scene(world, crop_camera(view, pixel))
    point = pick_surface(view, pixel, observe_stage.depth_probe(tuple(pairs)))
    if point is None:
        raise ZoomInputError(f"--at {pixel[0]:g},{pixel[1]:g}: nothing of the world is "
                                "there in this view")
    return zoom_request(request_id, history, world, view, point, prompt, factor=factor,
                        seed=seed, long_side=DISPLAY_LONG_SIDE)


def zoom(request: ZoomRequest, config: GenerationConfig | None = None,
         progress: Progress | None = None, cancel: Cancel | None = None) -> ZoomResult:
    """`run_zoom` as a `ZoomResult`; a cancellation or a stage's error is a failed result."""
    try:
        return run_zoom(request, config, progress, cancel).result()
    except Cancelled:
        return ZoomResult(request.request_id, False, error="cancelled", request=request)
    except MemoryError:
        return ZoomResult(request.request_id, False, error="out of memory", request=request)
    except Exception as exc:  # a failed stage is a failed result with one line
        return ZoomResult(request.request_id, False, error=one_line(exc), request=request)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, UserError):  # already a sentence for the user
        return (text[0] if text else type(exc).__name__)[:300]
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


# ---- shared helpers ---------------------------------------------------------------------
def _init_input(cam: Camera, rgb: np.ndarray, depth: np.ndarray,
                aux: aux_stage.AuxViewsOutput, level: int, config: GenerationConfig,
                under_edge_px: int = 0) -> init_stage.SplatInitInput:
    return init_stage.SplatInitInput(
        init_stage.InitView(cam, rgb, depth, None),
        tuple(init_stage.InitView(v.camera, v.rgb, v.depth, v.holes) for v in aux.views),
        level, config.splat_footprint, under_edge_px)


def _optimize_input(init: init_stage.SplatInitOutput, cam: Camera, rgb: np.ndarray,
                    aux: aux_stage.AuxViewsOutput, old: Scene, iterations: int,
                    config: GenerationConfig, seed: int, threads: int, low_pass_px2: float
                    ) -> optimize_stage.OptimizeInput:
    return optimize_stage.OptimizeInput(
        init.chunks, optimize_stage.TargetView(cam, rgb),
        tuple(optimize_stage.TargetView(v.camera, v.rgb, v.loss_mask, AUX_WEIGHT)
              for v in aux.views),
        old, iterations, config.aux_views_per_step, seed, threads, low_pass_px2)


def _items(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(options.items()))


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _backend_info(config: GenerationConfig, seed: int, stages: tuple[str, ...],
                  extra: Mapping[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in config.to_dict().items() if k != "backends"}
    settings["stages"] = {s: config.backend_for(s) for s in stages if s != "load"}
    return {"name": config.backend, "version": VERSION, "seed": int(seed),
            "settings": settings, **extra}
