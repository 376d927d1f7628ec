"""`wonderzoom`: the command-line entry point, and the only place that wires packages together.

Start-up stays fast: this module imports only the standard library at the top; each command
imports what it needs when it runs (torch, diffusers and transformers are never imported by
`--help`, `info`, `history`, `checkout`, `export` or `import`).
User mistakes (missing or corrupt files, wrong extensions, bad arguments) print one line and
exit with status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

WORLD_SUFFIX = ".wzs"
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


# ---- helpers ----------------------------------------------------------------------------
def _world_path(path: str, must_exist: bool = True) -> Path:
    p = Path(path)
    if p.suffix.lower() != WORLD_SUFFIX:
        raise UserError(f"{path}: not a world file (expected a {WORLD_SUFFIX} file)")
    if must_exist and not p.exists():
        raise UserError(f"{path}: no such file")
    if must_exist and not p.is_file():
        raise UserError(f"{path}: not a regular file")
    return p


def _load(path: str):
    from saves import load_world

    return load_world(_world_path(path))


def _step_arg(loaded, step: int | None) -> int:
    history = loaded.history
    if step is None:
        if history.head is None:
            raise UserError("the world has no steps yet")
        return history.head
    if step not in history.steps:
        known = ", ".join(str(s) for s in sorted(history.steps))
        raise UserError(f"no step {step} in this world (steps: {known})")
    return step


def _world_summary(loaded, path: Path) -> dict[str, Any]:
    history = loaded.history
    levels: dict[int, dict[str, Any]] = {}
    steps = []
    for step in history:
        level = history.level_of(step.id)
        splats = sum(len(loaded.chunks[c]) for c in step.chunk_ids)
        entry = levels.setdefault(level, {"level": level, "steps": [], "chunks": 0, "splats": 0})
        entry["steps"].append(step.id)
        entry["chunks"] += len(step.chunk_ids)
        entry["splats"] += splats
        steps.append({"id": step.id, "parent": step.parent, "kind": step.kind, "level": level,
                      "prompt": step.prompt, "chunks": len(step.chunk_ids), "splats": splats})
    head_path = [s.id for s in history.path()] if history.head is not None else []
    return {
        "path": str(path),
        "valid": True,
        "file_bytes": path.stat().st_size,
        "format_version": loaded.format_version,
        "head": history.head,
        "head_path": head_path,
        "splats_at_head": sum(len(loaded.chunks[c]) for c in history.chunk_ids_at()) if head_path else 0,
        "splats_total": sum(len(c) for c in loaded.chunks.values()),
        "levels": [levels[k] for k in sorted(levels)],
        "steps": steps,
    }


# ---- commands ---------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    path = _world_path(args.world)
    loaded = _load(args.world)
    summary = _world_summary(loaded, path)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{path}  ({summary['file_bytes'] / 1e6:.2f} MB, valid)")
    print(f"head: step {summary['head']}  ({summary['splats_at_head']:,} splats on the path to it)")
    for lv in summary["levels"]:
        print(f"  level {lv['level']}: {lv['splats']:,} splats in {lv['chunks']} chunks "
              f"(steps {', '.join(map(str, lv['steps']))})")
    print("history:")
    print(loaded.history.render_tree())
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    loaded = _load(args.world)
    print(loaded.history.render_tree())
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    from saves import WorldWriter

    path = _world_path(args.world)
    loaded = _load(args.world)
    step = _step_arg(loaded, args.step)
    with WorldWriter.open(path) as writer:
        writer.set_head(step)
    print(f"head is now step {step}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from saves.ply import export_ply

    loaded = _load(args.world)
    step = _step_arg(loaded, args.step)
    out = Path(args.ply)
    if out.suffix.lower() != ".ply":
        raise UserError(f"{args.ply}: the output must end in .ply")
    chunks = [loaded.chunks[c] for c in loaded.history.chunk_ids_at(step)]
    n = export_ply(out, chunks)
    print(f"wrote {n:,} splats of step {step} to {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from engine.chunking import split_level
    from engine.history import History, Step
    from saves import save_world
    from saves.ply import import_ply

    src = Path(args.ply)
    if not src.is_file():
        raise UserError(f"{args.ply}: no such file")
    out = _world_path(args.output, must_exist=False)
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    chunk = import_ply(src)
    parts = split_level(chunk, keep_origin=True)  # origin stays 0: the import is lossless
    history = History()
    history.add(Step(0, None, "import", tuple(range(len(parts))), prompt="",
                     backend={"name": "ply-import", "source": src.name}, created=_now()))
    save_world(out, history, dict(enumerate(parts)), meta={"source": src.name})
    print(f"imported {len(chunk):,} splats into {out} ({len(parts)} chunks)")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from saves import save_world

    loaded = _load(args.world)
    out = _world_path(args.output, must_exist=False)
    if out.exists() and not args.force:
        raise UserError(f"{out}: already exists (use --force to replace it)")
    used = {c for s in loaded.history for c in s.chunk_ids}
    save_world(out, loaded.history, {c: loaded.chunks[c] for c in sorted(used)}, meta=loaded.meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(loaded.history)} steps)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a small procedural three-level world offline, save it, and export a PLY."""
    from engine.chunking import split_level
    from engine.history import History, Step
    from engine.synthetic import nested_plane_world
    from saves import WorldWriter, save_world
    from saves.ply import export_ply

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    world_path = out_dir / "demo.wzs"
    levels = nested_plane_world(levels=3, factor=4.0, size=args.size, seed=args.seed)
    history = History()
    next_chunk = 0
    for i, (camera, level) in enumerate(levels):
        parts = split_level(level, max_splats=16384)
        ids = tuple(range(next_chunk, next_chunk + len(parts)))
        next_chunk += len(parts)
        step = Step(i, i - 1 if i else None, "zoom" if i else "image", ids, camera=camera,
                    prompt="" if i == 0 else f"procedural detail x{4 ** i}",
                    backend={"name": "procedural", "version": "1", "seed": args.seed + i},
                    created=_now())
        if i == 0:
            history.add(step)
            save_world(world_path, history, dict(zip(ids, parts)), meta={"demo": True})
        else:
            with WorldWriter.open(world_path) as writer:
                writer.append_step(step, dict(zip(ids, parts)))
            history.add(step)
        print(f"level {i}: {len(level):,} splats, {len(parts)} chunks, "
              f"pixel scale {float(level.s_native.mean()):.2e} world units")
    ply = out_dir / "demo.ply"
    n = export_ply(ply, [lv for _, lv in levels])
    print(f"saved {world_path} and {ply} ({n:,} splats)")
    print(f"next: wonderzoom info {world_path}")
    return cmd_info(argparse.Namespace(world=str(world_path), json=False))


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---- parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wonderzoom",
        description="WonderZoom engine: a multi-scale 3D Gaussian-splat world you can zoom into "
                    "without limit. Worlds are .wzs files holding their whole append-only history.",
        epilog="Run 'wonderzoom COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("info", cmd_info, "show a world's levels, splat counts, history and validity")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    p = add("history", cmd_history, "print the history tree of a world (* marks the head)")
    p.add_argument("world", help="world file (.wzs)")

    p = add("checkout", cmd_checkout, "move the world's head to another step (undo / branch point)")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("step", type=int, help="step id (see 'wonderzoom history')")

    p = add("export", cmd_export, "export the world at a step as a 3DGS PLY other viewers open")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--ply", required=True, metavar="OUT", help="output .ply path")
    p.add_argument("--step", type=int, default=None, help="step to export (default: the head)")

    p = add("import", cmd_import, "import a standard 3DGS PLY (any SH degree) as a one-level world")
    p.add_argument("ply", help="input .ply file")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")

    p = add("compact", cmd_compact, "write a clean copy of a world (drops orphaned data)")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("-o", "--output", required=True, metavar="WORLD", help="output world (.wzs)")
    p.add_argument("--force", action="store_true", help="replace WORLD if it exists")

    p = add("demo", cmd_demo, "build a procedural 3-level world offline (no models needed)")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--size", type=int, default=192, help="pixels per side of each level")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.fn(args) or 0)
    except UserError as exc:
        print(f"wonderzoom: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("wonderzoom: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # file-format and input errors from the packages, as one line
        message = _user_message(exc)
        if message is None:
            raise
        print(f"wonderzoom: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


def _user_message(exc: Exception) -> str | None:
    """One line for errors caused by the user's files; None for real bugs (re-raised)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"SaveFormatError", "WorldBusyError", "PlyError", "HistoryError", "CameraError"}:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
        return f"{exc.filename}: {os.strerror(exc.errno) if exc.errno else exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
