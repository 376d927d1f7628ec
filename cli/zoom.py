"""`wonderzoom zoom WORLD --at U,V --prompt P`: grow a finer level at a pixel of a view."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cli.common import now, open_file, open_writer, parse_at, parse_view, world_path
from cli.cluster import choose as choose_service
from cli.cluster import make_service, run_on_service
from cli.genargs import (add_generation_arguments, check_generation_args, config_from_args,
                         overrides_from_args)
from cli.progress import StageBars, print_timings
from engine.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("zoom", help="zoom into a pixel of a view and grow a finer level there "
                                    "(appends a step)",
                       description="Zoom into a pixel of a view and grow a finer level there; "
                                   "the level is appended to the world as a new step.")
    p.add_argument("world", help="world file (.wzs); the new level is appended to it")
    p.add_argument("--at", required=True, metavar="U,V",
                   help="pixel of the view to zoom into (column, row; 0,0 = top left), or "
                        "percentages of its width and height, e.g. 50%%,40%%")
    p.add_argument("--view", default=None, metavar="STEP_OR_CAMERA_JSON",
                   help="the view --at refers to: a step id (its camera), a camera JSON file, "
                        "inline JSON, or FILE#K: camera K of a list such as the cameras.json "
                        "`render` writes (frame K's view) (default: the head step's camera)")
    p.add_argument("--factor", type=float, default=4.0,
                   help="how many times narrower the new view is (default 4)")
    add_generation_arguments(p, "zoom", default_iterations=10)
    return p


def run(args: argparse.Namespace) -> int:
    path = world_path(args.world)
    check_generation_args(args)
    if not (math.isfinite(args.factor) and 1.0 < args.factor <= 64.0):
        raise UserError(f"--factor {args.factor:g}: must be in (1, 64]")
    source = open_file(args.world)  # the index: only what the pick and C_i see is read
    history = source.history
    if history.head is None:
        raise UserError(f"{path}: the world has no steps yet")
    view = parse_view(args.view, history)
    pixel = parse_at(args.at, view.width, view.height)
    choice = choose_service(args.config, args.cluster)
    config = None if choice.is_ray else config_from_args(args, "zoom")
    seed = history.next_id() if args.seed is None else args.seed
    request = streamed_request(source, view, pixel, args.prompt, args.factor, seed)
    if choice.is_ray:  # the level grows on the cluster's workers, with their model config
        service = make_service(choice, args.config, overrides_from_args(args, "zoom"))
        try:
            step, result = grow_zoom_on(service, request, path, quiet=args.quiet)
        finally:
            service.close()
    else:
        step, run_ = grow_zoom(request, config, path, quiet=args.quiet)
        result = run_.result()
    n = sum(len(c) for c in result.chunks.values())
    info = result.backend
    print(f"appended step {step.id} (level {request.level}, x{float(info.get('factor', 0)):.2f} "
          f"finer): {n:,} splats in {len(step.chunk_ids)} chunks; "
          f"{info.get('edit') or 'no structure'}; context: {info.get('caption', '')}")
    print_timings("zoom: seconds per stage", dict(result.timings))
    return 0


def streamed_request(source, view, pixel, prompt: str, factor: float, seed: int):
    """`request_at_pixel` on a world opened by its index (`cli.common.open_file`, closed
    here): of a huge world only the chunks the pick's crop and the new camera's view see are
    read."""
    from engine.scene import build_streamed_scene, close_scene
    from generation.pipeline import request_at_pixel

    try:
        world = build_streamed_scene(source.history, source.source)
        try:
            return request_at_pixel(source.history, None, view, pixel, prompt, factor=factor,
                                    seed=seed, world=world)
        finally:
            close_scene(world)
    finally:
        source.close()


def grow_zoom(request, config, path: Path, quiet: bool = False, title: str = ""):
    """Run one zoom with progress bars, then append its level to the world file as a step
    (the file is only touched once the generation has succeeded; the append is crash-safe)."""
    from engine.history import Step
    from generation.pipeline import ZOOM_STAGES, run_zoom

    with StageBars(ZOOM_STAGES, not quiet, title) as bars:
        run_ = run_zoom(request, config, progress=bars)
    # another writer may have appended meanwhile: the level is then a sibling branch of its
    # step (its parent is the step it was grown on), with the next free ids
    with open_writer(path) as writer:
        base = max(writer.chunk_ids, default=-1) + 1
        ids = tuple(range(base, base + len(run_.chunks)))
        step = Step(writer.history.next_id(), request.parent_step, "zoom", ids,
                    camera=run_.camera, point=request.point, prompt=request.prompt,
                    backend=dict(run_.backend), timings=dict(run_.timings), created=now())
        writer.append_step(step, dict(zip(ids, run_.chunks)))
    return step, run_


def grow_zoom_on(service, request, path: Path, quiet: bool = False, title: str = ""):
    """`grow_zoom` through a generation service (a Ray cluster): the same bars, fed by its
    progress events; the level is appended only once a checked result came back."""
    from engine.history import Step
    from generation.pipeline import ZOOM_STAGES

    result = run_on_service(service, request, ZOOM_STAGES, quiet, title)
    with open_writer(path) as writer:
        base = max(writer.chunk_ids, default=-1) + 1
        chunks = list(result.chunks.values())
        ids = tuple(range(base, base + len(chunks)))
        step = Step(writer.history.next_id(), request.parent_step, "zoom", ids,
                    camera=working_camera(request.camera, result.backend), point=request.point,
                    prompt=request.prompt, backend=dict(result.backend),
                    timings=dict(result.timings), created=now())
        writer.append_step(step, dict(zip(ids, chunks)))
    return step, result


def working_camera(camera, backend):
    """C_i at the working size the worker used (what the in-process path stores)."""
    size = backend.get("working_size")
    if isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 1 << 14 for v in size):
        return camera.resampled_long_side(max(size))
    return camera
