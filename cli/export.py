"""`wonderzoom export WORLD --ply OUT [--step S]`: a 3DGS PLY other splat viewers open."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import load, step_arg
from engine.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export the world at a step as a 3DGS PLY other viewers open",
                       description="Export the world at a step as a 3DGS PLY other viewers open: "
                                   "INRIA's 62 properties (SH degree 3, zero-filled where the "
                                   "world's degree is lower).")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--ply", required=True, metavar="OUT", help="output .ply path")
    p.add_argument("--step", type=int, default=None, help="step to export (default: the head)")
    p.add_argument("--with-levels", action="store_true",
                   help="also write each splat's s_native and level (256 bytes a vertex instead "
                        "of INRIA's 248: viewers that read a fixed struct, like SIBR, need the "
                        "default; `wonderzoom import --level N` can take one level back)")
    return p


def run(args: argparse.Namespace) -> int:
    from saves.ply import export_ply

    out = Path(args.ply)
    if out.suffix.lower() != ".ply":
        raise UserError(f"{args.ply}: the output must end in .ply")
    loaded = load(args.world)
    step = step_arg(loaded.history, args.step)
    n = export_ply(out, [loaded.chunks[c] for c in loaded.history.chunk_ids_at(step)],
                   with_levels=args.with_levels)
    print(f"wrote {n:,} splats of step {step} to {out}")
    return 0
