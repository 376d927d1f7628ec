"""Splitting a generated level into spatial chunks the renderer can cull and stream.

Owns: the kd-split of a level's splats into chunks of at most `max_splats`, each with its own
float64 origin (the centre of its box) so local float32 offsets stay small.
Does not own: deciding which chunks are visible (`engine.modulation`, the renderer).
"""

from __future__ import annotations

import numpy as np

from engine.splats import SplatChunk

DEFAULT_MAX_SPLATS = 1 << 16


def split_level(
    level: SplatChunk,
    max_splats: int = DEFAULT_MAX_SPLATS,
    keep_origin: bool = False,
) -> list[SplatChunk]:
    """Split one level into spatially compact chunks of at most `max_splats` splats.

    Recursive median split along the longest axis of the centres' box (a kd-tree), so chunks
    are balanced and their bounds tight. With `keep_origin` every chunk keeps the input's
    origin, so local offsets stay bit-identical (used by imports, which must round-trip);
    otherwise each chunk is re-expressed around the centre of its own box."""
    if max_splats < 1:
        raise ValueError("max_splats must be positive")
    if len(level) <= max_splats:
        return [level if keep_origin else _recentre(level)]
    out: list[SplatChunk] = []
    for rows in kd_rows(level.world_positions(), max_splats):
        piece = level.take(np.sort(rows))
        out.append(piece if keep_origin else _recentre(piece))
    return out


def kd_rows(points: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Row sets of at most `max_rows` of `points` [N, D], together each row exactly once: a
    median split along the longest axis of each set's box, recursively (a kd-tree's leaves,
    in depth-first order). Serves `split_level` and the web export's chunks."""
    if max_rows < 1:
        raise ValueError("max_rows must be positive")
    out: list[np.ndarray] = []
    stack = [np.arange(len(points))]
    while stack:
        rows = stack.pop()
        if len(rows) <= max_rows:
            out.append(rows)
            continue
        p = points[rows]
        axis = int(np.argmax(p.max(axis=0) - p.min(axis=0)))
        half = len(rows) // 2
        order = np.argpartition(p[:, axis], half)
        stack.append(rows[order[half:]])
        stack.append(rows[order[:half]])
    return out


def _recentre(chunk: SplatChunk) -> SplatChunk:
    if len(chunk) == 0:
        return chunk
    p = chunk.world_positions()
    return chunk.with_origin(0.5 * (p.min(axis=0) + p.max(axis=0)))
