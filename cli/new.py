"""`wonderzoom new IMAGE -o WORLD`: grow scene E0 (step 0 of a new world) from one photo."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cli.common import new_world_path, now
from cli.cluster import choose as choose_service
from cli.cluster import make_service, run_on_service
from cli.genargs import (add_generation_arguments, check_generation_args, config_from_args,
                         overrides_from_args)
from cli.progress import StageBars, print_timings


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("new", help="grow a world from one image (JPEG/PNG/WebP): step 0",
                       description="Grow a world from one image (JPEG/PNG/WebP): step 0.")
    p.add_argument("image", help="input image (JPEG, PNG or WebP, any size)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")
    add_generation_arguments(p, "new", default_iterations=12)
    return p


def run(args: argparse.Namespace) -> int:
    from generation.image_input import load_image

    check_generation_args(args)
    out = new_world_path(args.output, args.force)
    choice = choose_service(args.config, args.cluster)
    config = None if choice.is_ray else config_from_args(args, "new")
    image = load_image(args.image)
    seed = 0 if args.seed is None else args.seed
    source = os.fsencode(Path(args.image).name).decode("utf-8", "replace")  # storable text
    if choice.is_ray:  # scene E0 grows on the cluster's workers, with their model config
        service = make_service(choice, args.config, overrides_from_args(args, "new"))
        try:
            n, chunks, size, timings = grow_new_on(service, image, args.prompt, seed, out,
                                                   source=source, quiet=args.quiet)
        finally:
            service.close()
    else:
        n, chunks, size, timings = grow_new(image, args.prompt, seed, config, out,
                                            source=source, quiet=args.quiet)
    print(f"wrote {out}: step 0, {n:,} splats in {chunks} chunks ({size[0]}x{size[1]} working image)")
    print_timings("new: seconds per stage", timings)
    return 0


def grow_new(image, prompt: str, seed: int, config, out: Path, source: str, quiet: bool = False,
             title: str = ""):
    """Run the `new` pipeline with progress bars and write the world file (step 0)."""
    from generation.pipeline import NEW_STAGES, run_new

    with StageBars(NEW_STAGES, not quiet, title) as bars:
        result = run_new(image, prompt, seed, config, progress=bars)
    h, w = result.rgb.shape[:2]
    return write_new_world(out, result.camera, result.chunks, prompt, result.backend,
                           result.timings, source, (w, h))


def grow_new_on(service, image, prompt: str, seed: int, out: Path, source: str,
                quiet: bool = False, title: str = ""):
    """`grow_new` through a generation service (a Ray cluster): the request carries the
    photo; the world is written only once a checked result came back."""
    from generation.new_request import NewRequest
    from generation.pipeline import NEW_STAGES

    request = NewRequest(1, image, prompt, seed)
    result = run_on_service(service, request, NEW_STAGES, quiet, title)
    return write_new_world(out, result.camera, tuple(result.chunks.values()), prompt,
                           result.backend, result.timings, source, result.working_size)


def write_new_world(out: Path, camera, chunks, prompt: str, backend, timings, source: str,
                    size: tuple[int, int]):
    """Step 0 with its level, as a new world file (atomic)."""
    from engine.history import History, Step
    from saves import save_world

    ids = tuple(range(len(chunks)))
    history = History()
    history.add(Step(0, None, "image", ids, camera=camera, prompt=prompt,
                     backend=dict(backend), timings=dict(timings), created=now()))
    save_world(out, history, dict(zip(ids, chunks)),
               meta={"source": source[:200], "prompt": prompt})
    return sum(len(c) for c in chunks), len(ids), tuple(size), dict(timings)
