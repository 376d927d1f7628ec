"""`wonderzoom info WORLD [--json]`: levels, splats per level, the history tree, validity."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from cli.common import load_info, world_path
from saves.format import collector_paused
from engine.history import printable


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="show a world's levels, splat counts, history and validity",
                       description="Show a world's levels, splat counts, history and validity.")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def summary(info, path: Path, with_steps: bool = True) -> dict[str, Any]:
    """What `info --json` prints (its `levels` list: one entry per scale level), from the
    world's records alone (`saves.WorldInfo`: no chunk is decoded). `with_steps=False` leaves
    out the per-step list (the text output does not print it)."""
    history = info.history
    levels: dict[int, dict[str, Any]] = {}
    steps = []
    depth = history.depths()
    splats_of = {cid: desc.n for cid, desc in info.chunks.items()}
    by_id = history.steps
    for sid in sorted(by_id):  # (plain loop: a long history makes this a hot path)
        step = by_id[sid]
        level = depth[sid]
        ids = step.chunk_ids
        splats = sum(map(splats_of.__getitem__, ids)) if ids else 0
        entry = levels.get(level)
        if entry is None:
            entry = levels[level] = {"level": level, "steps": [sid], "chunks": len(ids),
                                     "splats": splats}
        else:
            entry["steps"].append(sid)
            entry["chunks"] += len(ids)
            entry["splats"] += splats
        if with_steps:
            steps.append({"id": sid, "parent": step.parent, "kind": step.kind,
                          "level": level, "prompt": step.prompt, "chunks": len(ids),
                          "splats": splats})
    head_path = history.path()
    head_camera = by_id[history.head].camera if history.head in by_id else None
    return {
        "path": str(path),
        "valid": True,  # every record, step and chunk header (payloads: checked on load)
        "file_bytes": info.file_bytes,
        "format_version": info.format_version,
        "head": history.head,
        "head_path": [s.id for s in head_path],
        "splats_at_head": sum(splats_of[c] for s in head_path for c in s.chunk_ids),
        # the size of the view `zoom --at` pixels refer to (None: an import has no camera)
        "head_view": None if head_camera is None else [head_camera.width, head_camera.height],
        "splats_total": sum(splats_of.values()),
        "levels": [levels[k] for k in sorted(levels)],
        "steps": steps,
    }


def _json_text(info: dict[str, Any]) -> str:
    """`info` as one line of JSON in ASCII: what a stranger's prompts hold beyond it (C1
    controls, bidi overrides) is escaped, as JSON escapes control characters. orjson when its
    output is ASCII already (a long history's summary, ~6x faster), else the standard library
    with its ASCII escapes (the summary has no cycles)."""
    try:
        out = orjson.dumps(info)
    except orjson.JSONEncodeError:  # (a path holding surrogates: names that are not UTF-8)
        out = None
    if out is not None and out.isascii():
        return out.decode("ascii")
    return json.dumps(info, check_circular=False)


def run(args: argparse.Namespace) -> int:
    with collector_paused():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    path = world_path(args.world)
    world = load_info(args.world)
    info = summary(world, path, with_steps=args.json)
    if args.json:
        sys.stdout.write(_json_text(info) + "\n")
        return 0
    lines = [f"{printable(str(path))}  ({info['file_bytes'] / 1e6:.2f} MB, records valid)",
             f"head: step {info['head']}  ({info['splats_at_head']:,} splats on the path to it)"]
    if info["head_view"]:
        w, h = info["head_view"]
        lines.append(f"head view: {w}x{h} pixels (what `zoom --at U,V` counts in by default)")
    for lv in info["levels"]:
        steps = ", ".join(map(str, lv["steps"][:20])) + (", ..." if len(lv["steps"]) > 20 else "")
        lines.append(f"  level {lv['level']}: {lv['splats']:,} splats in {lv['chunks']} chunks "
                     f"(steps {steps})")
    lines += ["history:", world.history.render_tree()]
    sys.stdout.write("\n".join(lines) + "\n")  # one write: a deep history is 200k lines
    return 0
