"""Benchmark of the `.wzs` world file: size per splat, 1M-splat save/load, append cost.

Run from the repo root: `python bench/saves.py [--json] [--codec raw|shuffle-zlib]`.
Targets: bytes_per_splat <= 64, load_1m_s <= 1, append_step_bytes_ratio <= 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine.history import History, Step  # noqa: E402
from saves import WorldWriter, load_world, save_world  # noqa: E402
from tests.factories import random_camera, random_chunk  # noqa: E402

N_SPLATS = 1_000_000
N_CHUNKS = 16
APPEND_SPLATS = 100_000


def _wchar() -> int:
    """Bytes this process passed to write()-like syscalls so far (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def build_world(rng: np.random.Generator) -> tuple[History, dict]:
    """A 1M-splat SH0 world: a root step of 4 chunks and 3 zoom steps of 4 chunks each."""
    history, chunks = History(), {}
    per_chunk = N_SPLATS // N_CHUNKS
    for sid in range(N_CHUNKS // 4):
        ids = tuple(range(sid * 4, sid * 4 + 4))
        for cid in ids:
            chunks[cid] = random_chunk(rng, per_chunk, level=sid)
        history.add(Step(sid, None if sid == 0 else sid - 1, "image" if sid == 0 else "zoom",
                         ids, random_camera(rng), prompt=f"level {sid}",
                         backend={"name": "bench", "version": "0", "seed": sid, "settings": {}}))
    return history, chunks


def run(codec: str) -> dict:
    rng = np.random.default_rng(1234)
    history, chunks = build_world(rng)
    n = sum(len(c) for c in chunks.values())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wzs"
        t0 = time.perf_counter()
        save_world(path, history, chunks, {"app": "bench"}, codec=codec)
        save_s = time.perf_counter() - t0
        size = path.stat().st_size
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            world = load_world(path)
            loads.append(time.perf_counter() - t0)
        assert sum(len(c) for c in world.chunks.values()) == n
        del world
        step_chunk = random_chunk(rng, APPEND_SPLATS, level=4)
        step = Step(history.next_id(), history.head, "zoom", (N_CHUNKS,), random_camera(rng))
        before, t0 = _wchar(), time.perf_counter()
        with WorldWriter.open(path, codec=codec) as writer:
            writer.append_step(step, {N_CHUNKS: step_chunk})
        append_s = time.perf_counter() - t0
        written = _wchar() - before
        grown = path.stat().st_size - size
    bytes_per_splat = size / n
    return {
        "codec": codec,
        "splats": n,
        "file_bytes": size,
        "bytes_per_splat": round(bytes_per_splat, 3),
        "save_1m_s": round(save_s, 4),
        "load_1m_s": round(statistics.median(loads), 4),
        "load_1m_all_s": [round(t, 4) for t in loads],
        "append_step_s": round(append_s, 4),
        "append_step_bytes_written": written,
        "append_step_file_growth": grown,
        "append_step_bytes_ratio": round(written / (APPEND_SPLATS * bytes_per_splat), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--codec", default="raw", choices=("raw", "shuffle-zlib"))
    args = parser.parse_args()
    result = run(args.codec)
    if args.json:
        print(json.dumps(result))
        return
    print(f"world: {result['splats']:,} splats, codec {result['codec']}, "
          f"{result['file_bytes'] / 1e6:.1f} MB = {result['bytes_per_splat']:.2f} bytes/splat "
          f"(target <= 64)")
    print(f"save: {result['save_1m_s']:.3f} s   load (median of 3): {result['load_1m_s']:.3f} s "
          f"(target <= 1)")
    print(f"append {APPEND_SPLATS:,}-splat step: {result['append_step_s']:.3f} s, "
          f"{result['append_step_bytes_written']:,} bytes written, ratio "
          f"{result['append_step_bytes_ratio']:.3f} (target <= 2)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
