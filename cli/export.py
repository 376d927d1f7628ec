"""`wonderzoom export WORLD (--ply OUT | --web DIR) [--step S]`: the world at a step as a 3DGS
PLY other splat viewers open, or as a static web page any browser shows."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import load, open_file, step_arg
from engine.errors import UserError
from engine.history import printable


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export the world at a step as a 3DGS PLY or a web page",
                       description="Export the world at a step: --ply writes a 3DGS PLY other "
                                   "viewers open (INRIA's 62 properties, SH degree 3, zero-filled "
                                   "where the world's degree is lower); --web writes a folder any "
                                   "static file host serves, with a viewer that draws the world "
                                   "with its scale-aware blending in any WebGL2 browser.")
    p.add_argument("world", help="world file (.wzs)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--ply", metavar="OUT", help="output .ply path")
    out.add_argument("--web", metavar="DIR",
                     help="output folder (new, empty, or an earlier web export); view it with "
                          "'wonderzoom serve DIR' or any static web server")
    p.add_argument("--step", type=int, default=None, help="step to export (default: the head)")
    p.add_argument("--with-levels", action="store_true",
                   help="--ply: also write each splat's s_native and level (256 bytes a vertex "
                        "instead of INRIA's 248: viewers that read a fixed struct, like SIBR, "
                        "need the default; `wonderzoom import --level N` takes one level back)")
    p.add_argument("--finest", action="store_true",
                   help="--ply: only the finest level at each place (other viewers draw every "
                        "level at once, so a coarse level shows through the finer ones where "
                        "it was zoomed into; this drops the coarse splats a finer level covers, "
                        "what this app draws when zoomed all the way in)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.ply is not None and Path(args.ply).suffix.lower() != ".ply":
        raise UserError(f"{printable(args.ply)}: the output must end in .ply")
    if args.web is not None and (args.with_levels or args.finest):
        raise UserError("--with-levels and --finest go with --ply (a web export always keeps "
                        "the levels)")
    if args.web is not None:
        from ui.web.export import export_web

        loaded = load(args.world)
        step = step_arg(loaded.history, args.step)
        r = export_web(loaded.history, loaded.chunks, args.web, step, title=Path(args.world).name)
        print(f"wrote {r.splats:,} splats of step {step} to {printable(str(r.folder))}/ "
              f"({r.bytes_per_splat:.2f} bytes a splat); view it with: wonderzoom serve "
              f"{printable(str(r.folder))}")
        return 0
    from saves.ply import export_ply_stream

    # one chunk at a time from the file: memory does not grow with the world
    with open_file(args.world) as world:
        step = step_arg(world.history, args.step)
        ids = world.history.chunk_ids_at(step)
        if args.finest:
            rows = finest_rows(world, step, ids)
            total = sum(len(r) for r in rows.values())
            chunks = (world.read_chunk(c).take(rows[c]) for c in ids)
        else:
            total = sum(world.chunk_meta(c).count for c in ids)
            chunks = (world.read_chunk(c) for c in ids)
        levels = len(world.history.path(step))
        n = export_ply_stream(args.ply, total, chunks, with_levels=args.with_levels)
    print(f"wrote {n:,} splats of step {step} to {printable(args.ply)}")
    if levels > 1 and not args.finest:
        print(f"note: other viewers draw all {levels} levels at once (a coarse level shows "
              f"through where it was zoomed into); --finest keeps the finest at each place")
    return 0


def finest_rows(world, step: int, ids) -> dict:
    """For each chunk on the path to `step`, the rows the modulation still draws when zoomed
    in without end (`engine.modulation.alpha` at s_render 0: no finer level covers them; a
    link that points the wrong way counts as none, as it does when drawing). Reads each chunk
    once for its native scales; the export reads it again to write it (memory: one chunk)."""
    import numpy as np

    from engine.catalog import plan_path
    from engine.modulation import alpha

    plan = plan_path(world.history, world.source, step)
    rows = {}
    for c in ids:
        links = world.source.read_links(c, plan.child_step.get(c))
        drawn = alpha(0.0, world.read_chunk(c).s_native, links.s_parent, links.s_child) > 0
        rows[c] = np.flatnonzero(drawn)
    return rows
