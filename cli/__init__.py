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
import warnings
from typing import Sequence

from cli import (checkout, compact, demo, export, history, importply, info, models, new, play,
                 render, serve, zoom)
from engine.errors import UserError, first_line
from engine.history import printable

EXIT_USER_ERROR = 2
COMMANDS = (info, history, checkout, export, importply, compact, play, new, zoom, models, demo,
            render, serve)
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
    if not os.environ.get("WONDERZOOM_DEBUG"):
        # inputs are validated before they reach numpy; its floating-point warnings would only
        # break the promise of one line on stderr (WONDERZOOM_DEBUG=1 shows them)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        # multiprocessing's resource tracker is a child process writing to our stderr: when a
        # Ray bridge dies with the cluster, it can report a queue semaphore as leaked that
        # was already unlinked ("No such file"), two warnings after the error line. It reads
        # its warning filters from the environment it is started with.
        quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
        current = os.environ.get("PYTHONWARNINGS", "")
        if quiet not in current:
            os.environ["PYTHONWARNINGS"] = f"{current},{quiet}" if current else quiet
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        return _fail(first_line(exc))
    except BrokenPipeError:  # `wonderzoom history w.wzs | head`: the reader has had enough
        _silence_stdout()
        return 0
    except OSError as exc:  # a full disk, a path under a file, a name too long, no permission
        return _fail(os_error_line(exc))
    except KeyboardInterrupt:
        print("wonderzoom: interrupted", file=sys.stderr)
        return 130


def os_error_line(exc: OSError) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return f"{printable(os.fsdecode(names[0]))}: {reason}" if names else reason


def _fail(message: str) -> int:
    print(f"wonderzoom: error: {printable(message)}", file=sys.stderr)
    return EXIT_USER_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
