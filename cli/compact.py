"""`wonderzoom compact WORLD -o OUT`: a clean copy without orphaned data."""

from __future__ import annotations

import argparse

from cli.common import new_world_path, open_file


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compact", help="write a clean copy of a world (drops orphaned data)",
                       description="Write a clean copy of a world (drops orphaned data; an "
                                   "older-format world comes out in the current format).")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    from saves.world_file import copy_world

    out = new_world_path(args.output, args.force)
    # record by record, each chunk checked on the way: memory does not grow with the world
    # (a format-version-1 world is upgraded: its links are derived and stored)
    with open_file(args.world) as world:
        copy_world(world, out)
        steps = len(world.history)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {steps} steps)")
    return 0
