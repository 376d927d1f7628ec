"""The open world of the app: its history and chunks, the one home of both.

Owns: `WorldState` — the full history tree (every step ever grown, and the head), the chunks
(held in memory, or streamed from the world's file: then only the levels grown this session
are held, in front of the file in a `engine.catalog.MemorySource` with their links), the file
it lives in and its title — and the only changes the app makes to them: adding a grown step
(`add_grown_step`, which takes the step id and adds the step in one go, so two results that
arrive in one frame never share an id; `add_links` once its links are decided), undo and
redo. The scene the renderer draws (`engine.scene`) is built from this state and mirrors the
path to the head.
Does not own: drawing, the file format (the app's `Saver` writes what changed; the command
line opens the file and hands over its `WorldSource`) or generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.catalog import MemorySource
from engine.history import History, Step, utc_timestamp
from engine.lod import StepLinks
from engine.messages import ZoomResult
from engine.splats import SplatChunk


@dataclass
class WorldState:
    """Everything the app knows of the open world: its full history and its chunks.

    A world held in memory has every chunk in `chunks`. A streamed one (`source` set) has in
    `chunks` only the levels grown since it was opened; the rest is read from `source` when
    needed, and `first_free_chunk_id` is past every chunk id of its file."""

    history: History
    chunks: dict[int, SplatChunk]
    path: Path | None = None
    title: str = "untitled"
    redo_stack: list[int] = field(default_factory=list)  # steps undone, latest last
    source: MemorySource | None = None
    first_free_chunk_id: int = 0
    on_close: Callable[[], None] | None = None  # releases the file behind `source`

    @property
    def streamed(self) -> bool:
        return self.source is not None

    def add_grown_step(self, result: ZoomResult, created: str | None = None
                       ) -> tuple[Step, dict[int, SplatChunk]]:
        """The step of a successful zoom result, added to the history now (the head moves to
        it), with its chunks under fresh ids. Its parent is the step the zoom was asked on."""
        req = result.request
        if req is None or not result.ok:
            raise ValueError("only a successful result with its request becomes a step")
        base = max(max(self.chunks, default=-1) + 1, self.first_free_chunk_id)
        chunks = {base + i: c for i, c in enumerate(result.chunks.values())}
        step = Step(self.history.next_id(), req.parent_step, "zoom", tuple(chunks),
                    camera=req.camera, point=req.point, prompt=req.prompt,
                    backend=dict(result.backend), timings=dict(result.timings),
                    created=created or utc_timestamp())
        self.history.add(step)
        self.chunks.update(chunks)
        self.redo_stack.clear()
        return step, chunks

    def add_links(self, step: Step, links: StepLinks) -> None:
        """A grown step's links are decided (a streamed world: it can be drawn from now)."""
        if self.source is not None:
            self.source.add_step(step.id, {c: self.chunks[c] for c in step.chunk_ids}, links)

    def has_links(self, step_id: int) -> bool:
        """Can a scene through `step_id` be built (a streamed world knows its links)?"""
        return self.source is None or step_id in self.source.steps or \
            not set(self.history.steps[step_id].chunk_ids) <= set(self.chunks)

    # ---- reading chunks -------------------------------------------------------------------
    def chunk(self, chunk_id: int) -> SplatChunk:
        """A chunk's arrays (read from the file if it is not held: blocks)."""
        chunk = self.chunks.get(chunk_id)
        if chunk is None and self.source is not None:
            return self.source.read_chunk(chunk_id)
        return self.chunks[chunk_id]

    def all_chunks(self) -> Mapping[int, SplatChunk]:
        """Every chunk of every step, read on demand where not held (saving a copy)."""
        return _AllChunks(self)

    def level_scale(self, step: Step) -> float:
        """The median native scale of a step's level (streamed: from the chunks' metadata,
        the count-weighted median of their medians)."""
        if self.source is None:
            return float(np.median(np.concatenate([self.chunks[c].s_native
                                                   for c in step.chunk_ids])))
        metas = [self.source.meta(c) for c in step.chunk_ids]
        metas = [m for m in metas if m.count]
        order = sorted(metas, key=lambda m: m.s_native[1])
        half, seen = sum(m.count for m in order) / 2.0, 0
        for m in order:
            seen += m.count
            if seen >= half:
                return m.s_native[1]
        return float("nan")

    # ---- history moves --------------------------------------------------------------------
    def undo(self) -> int | None:
        """Move the head to its parent; the new head, or None at a root (nothing changed)."""
        head = self.history.head
        if head is None or self.history.steps[head].parent is None:
            return None
        self.redo_stack.append(head)
        return self.history.undo()

    def redo(self) -> int | None:
        """Step forward to what was undone, else to the newest child; None if there is none."""
        if self.redo_stack:
            target = self.redo_stack.pop()
        else:
            kids = self.history.children(self.history.head) if self.history.head is not None else []
            if not kids:
                return None
            target = kids[-1].id
        self.history.checkout(target)
        return target

    def close(self) -> None:
        if self.on_close is not None:
            closer, self.on_close = self.on_close, None
            closer()


class _AllChunks(Mapping[int, SplatChunk]):
    def __init__(self, state: WorldState) -> None:
        self._state = state
        self._ids = [c for s in state.history for c in s.chunk_ids]

    def __getitem__(self, chunk_id: int) -> SplatChunk:
        return self._state.chunk(chunk_id)

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
