"""`wonderzoom import PLY -o WORLD [--level N]`: a standard 3DGS PLY as a one-level world."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import new_world_path, now
from engine.errors import UserError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("import", help="import a standard 3DGS PLY (any SH degree) as a one-level world",
                       description="Import a standard 3DGS PLY (any SH degree) as a one-level "
                                   "world. Of a multi-level WonderZoom export, choose the level: "
                                   "its zoom cameras are not in the PLY, so share the .wzs for all.")
    p.add_argument("ply", help="input .ply file")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--level", type=int, default=None, metavar="N",
                   help="the level to import from a multi-level WonderZoom export (the file's "
                        "`level` property)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    from engine.chunking import split_level
    from engine.history import History, Step
    from saves import save_world
    from saves.ply import import_ply, import_ply_levels

    src = Path(args.ply)
    if not src.is_file():
        raise UserError(f"{args.ply}: no such file")
    out = new_world_path(args.output, args.force)
    chunk = one_level(src, import_ply_levels(src), args.level)
    if chunk is None:  # an empty file: an empty level-0 world
        chunk = import_ply(src)
    parts = split_level(chunk, keep_origin=True)  # origin stays 0: the import is lossless
    history = History()
    history.add(Step(0, None, "import", tuple(range(len(parts))), prompt="",
                     backend={"name": "ply-import", "source": src.name}, created=now()))
    save_world(out, history, dict(enumerate(parts)), meta={"source": src.name})
    print(f"imported {len(chunk):,} splats into {out} ({len(parts)} chunks)")
    return 0


def one_level(src: Path, levels: list, wanted: int | None):
    """The chunk to import from a PLY read as `levels` (one chunk per level): its only level,
    or level `wanted` of several. A multi-level export has lost the zoom cameras that link
    its levels, so it cannot come back as a multi-level world. None for an empty file."""
    found = [c.level for c in levels]
    names = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
    if wanted is not None:
        if wanted not in found:
            raise UserError(f"{src.name}: no splats of level {wanted} (levels: {names or 'none'})")
        return levels[found.index(wanted)]
    if len(levels) > 1:
        raise UserError(f"{src.name}: holds splats of {len(levels)} levels ({names}); import "
                        "makes a one-level world: choose one with --level N (a .wzs world "
                        "file keeps every level and its history)")
    return levels[0] if levels else None
