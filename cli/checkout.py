"""`wonderzoom checkout WORLD STEP`: move the head (undo = the parent; nothing is deleted)."""

from __future__ import annotations

import argparse

from cli.common import open_writer, step_arg, world_path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("checkout", help="move the world's head to another step (undo / branch point)",
                       description="Move the world's head to another step. Undo = check out the "
                                   "parent; a new zoom from there starts a branch; nothing is "
                                   "deleted.")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("step", type=int, help="step id (see 'wonderzoom history')")
    return p


def run(args: argparse.Namespace) -> int:
    path = world_path(args.world)
    # (reads the index once, under the lock; an older-version file is not rewritten)
    with open_writer(path, heads_only=True) as writer:
        step = step_arg(writer.history, args.step)
        writer.set_head(step)
    print(f"head is now step {step}")
    return 0
