"""`wonderzoom info WORLD [--json]`: levels, splats per level, the history tree, validity."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.common import load, world_path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="show a world's levels, splat counts, history and validity",
                       description="Show a world's levels, splat counts, history and validity.")
    p.add_argument("world", help="world file (.wzs)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def summary(loaded, path: Path) -> dict[str, Any]:
    """What `info --json` prints (its `levels` list: one entry per scale level)."""
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
        "splats_at_head": (sum(len(loaded.chunks[c]) for c in history.chunk_ids_at())
                           if head_path else 0),
        "splats_total": sum(len(c) for c in loaded.chunks.values()),
        "levels": [levels[k] for k in sorted(levels)],
        "steps": steps,
    }


def run(args: argparse.Namespace) -> int:
    path = world_path(args.world)
    loaded = load(args.world)
    info = summary(loaded, path)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{path}  ({info['file_bytes'] / 1e6:.2f} MB, valid)")
    print(f"head: step {info['head']}  ({info['splats_at_head']:,} splats on the path to it)")
    for lv in info["levels"]:
        print(f"  level {lv['level']}: {lv['splats']:,} splats in {lv['chunks']} chunks "
              f"(steps {', '.join(map(str, lv['steps']))})")
    print("history:")
    print(loaded.history.render_tree())
    return 0
