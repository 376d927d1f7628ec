"""`wonderzoom demo [--out DIR]`: a procedural three-level world built offline, saved as
DIR/demo.wzs and exported as DIR/demo.ply (no models, seconds on a CPU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli import info
from cli.common import now

# depth jitter of the demo's plane, relative: each splat moves along its ray from the eye all
# three levels share, so from there the picture is the same, but every splat has a depth of
# its own and the draw order, and with it the picture, no longer depends on which way the
# camera turns (`engine.synthetic.fractal_plane_world`'s `relief`)
RELIEF = 1e-3


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="build a procedural 3-level world offline (no models needed)",
                       description="Build a procedural 3-level world offline (no models needed): "
                                   "DIR/demo.wzs and DIR/demo.ply.")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--size", type=int, default=192, help="pixels per side of each level")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    from engine.synthetic import fractal_plane_world, levels_history
    from generation.procedural import fade_into_parent
    from saves import save_world
    from saves.ply import export_ply

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    world_path = out_dir / "demo.wzs"
    levels = fractal_plane_world(levels=3, factor=4.0, size=args.size, seed=args.seed,
                                 relief=RELIEF, join=fade_into_parent)
    history, chunks = levels_history(levels, seed=args.seed, created=now())
    save_world(world_path, history, chunks, meta={"demo": True})
    for step, (_, level) in zip(history, levels):
        print(f"level {step.id}: {len(level):,} splats, {len(step.chunk_ids)} chunks, "
              f"pixel scale {float(level.s_native.mean()):.2e} world units")
    ply = out_dir / "demo.ply"
    n = export_ply(ply, [lv for _, lv in levels])
    print(f"saved {world_path} and {ply} ({n:,} splats)")
    print(f"next: wonderzoom info {world_path}")
    return info.run(argparse.Namespace(world=str(world_path), json=False))
