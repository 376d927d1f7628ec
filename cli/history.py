"""`wonderzoom history WORLD`: the history tree (* marks the head)."""

from __future__ import annotations

import argparse

from cli.common import load_info
from saves.format import collector_paused


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("history", help="print the history tree of a world (* marks the head)",
                       description="Print the history tree of a world (* marks the head).")
    p.add_argument("world", help="world file (.wzs)")
    return p


def run(args: argparse.Namespace) -> int:
    with collector_paused():
        print(load_info(args.world).history.render_tree())
    return 0
