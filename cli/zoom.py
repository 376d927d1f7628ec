"""`wonderzoom zoom WORLD --at U,V --prompt P`: grow a finer level at a pixel of a view."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cli.common import load, now, open_writer, parse_at, parse_view, world_path
from cli.genargs import add_generation_arguments, check_generation_args, config_from_args
from cli.progress import StageBars, print_timings
from engine.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("zoom", help="zoom into a pixel of a view and grow a finer level there "
                                    "(appends a step)",
                       description="Zoom into a pixel of a view and grow a finer level there; "
                                   "the level is appended to the world as a new step.")
    p.add_argument("world", help="world file (.wzs); the new level is appended to it")
    p.add_argument("--at", required=True, metavar="U,V",
                   help="pixel of the view to zoom into (column, row; 0,0 = top left)")
    p.add_argument("--view", default=None, metavar="STEP_OR_CAMERA_JSON",
                   help="the view --at refers to: a step id (its camera), a camera JSON file or "
                        "inline JSON (default: the head step's camera)")
    p.add_argument("--factor", type=float, default=4.0,
                   help="how many times narrower the new view is (default 4)")
    add_generation_arguments(p, default_size=320, default_iterations=10)
    return p


def run(args: argparse.Namespace) -> int:
    from generation.pipeline import request_at_pixel

    path = world_path(args.world)
    check_generation_args(args)
    if not (math.isfinite(args.factor) and 1.0 < args.factor <= 64.0):
        raise UserError(f"--factor {args.factor:g}: must be in (1, 64]")
    loaded = load(args.world)
    history = loaded.history
    if history.head is None:
        raise UserError(f"{path}: the world has no steps yet")
    view = parse_view(args.view, history)
    pixel = parse_at(args.at, view.width, view.height)
    config = config_from_args(args, "zoom")
    seed = history.next_id() if args.seed is None else args.seed
    request = request_at_pixel(history, loaded.chunks, view, pixel, args.prompt,
                               factor=args.factor, seed=seed)
    step, run_ = grow_zoom(request, config, path, quiet=args.quiet)
    n = sum(len(c) for c in run_.chunks)
    print(f"appended step {step.id} (level {request.level}, x{run_.factor:.2f} finer): "
          f"{n:,} splats in {len(step.chunk_ids)} chunks; {run_.edited.label or 'no structure'}; "
          f"context: {run_.context.caption}")
    print_timings("zoom: seconds per stage", dict(run_.timings))
    return 0


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
