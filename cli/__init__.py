"""`wonderzoom`: the command line, one small module per command over one parser.

Owns: the parser (`build_parser`, built from `COMMANDS` in the order `--help` lists them),
`main`, and the promise that a user's mistake prints one `wonderzoom: error: ...` line and
exits with status 2: every `engine.errors.UserError`, and the OS errors a user causes (a
missing file, a folder where a file should be, no permission). Anything else is a bug and
keeps its traceback.
Each command module has `add_parser(subparsers)` and `run(args) -> int`; a command only
parses its arguments, calls the libraries, and prints. This package (with `main.py`, which
only calls `main`) is the one place that wires `engine`, `generation`, `ui` and `saves`
together. Start-up stays fast: the modules import torch, GL and the like inside `run`, so
`--help`, `info` or `history` never load them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from cli import (checkout, compact, demo, export, history, importply, info, models, new, play,
                 render, zoom)
from engine.errors import UserError, first_line

EXIT_USER_ERROR = 2
COMMANDS = (info, history, checkout, export, importply, compact, play, new, zoom, models, demo,
            render)
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # our own output only


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wonderzoom",
        description="WonderZoom engine: a multi-scale 3D Gaussian-splat world you can zoom into "
                    "without limit. Worlds are .wzs files holding their whole append-only history.",
        epilog="Run 'wonderzoom COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):  # no command given
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        return _fail(first_line(exc))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        return _fail(f"{exc.filename}: {os.strerror(exc.errno) if exc.errno else exc}")
    except KeyboardInterrupt:
        print("wonderzoom: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"wonderzoom: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR
