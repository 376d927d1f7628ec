"""`wonderzoom compact WORLD -o OUT`: a clean copy without orphaned data."""

from __future__ import annotations

import argparse

from cli.common import load, new_world_path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compact", help="write a clean copy of a world (drops orphaned data)",
                       description="Write a clean copy of a world (drops orphaned data).")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    from saves import save_world

    out = new_world_path(args.output, args.force)
    loaded = load(args.world)
    used = {c for s in loaded.history for c in s.chunk_ids}
    save_world(out, loaded.history, {c: loaded.chunks[c] for c in sorted(used)},
               meta=loaded.meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(loaded.history)} steps)")
    return 0
