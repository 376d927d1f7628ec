"""What a world holds, told without its payloads: per-chunk metadata, per-step LoD links, and
what they mean on the path to one step.

Owns:
- `ChunkMeta`: what the renderer needs to cull, schedule and budget a chunk before reading it
  (its box, splat count, decoded size, native-scale summary and the LoD band it was made with);
- `WorldSource`: the protocol a world's storage implements (a `.wzs` file through
  `saves.WorldFile`, or memory): every chunk's metadata, which older chunks each step covers,
  and reading a chunk's arrays and its links on a path (thread-safe: an I/O thread calls it);
- `MemorySource`: chunks and `StepLinks` held in memory, optionally in front of another
  source (the app's steps grown since the file was opened, over the file);
- `plan_path`: for the path root -> step, which step's `s_child` each chunk shows (the deepest
  step on the path that covered it) and its band there;
- `link_on_path` / `derive_links`: the links an append decides for one step, or for every
  step of a history (each from the older chunks its camera sees on its own path): what a
  writer stores, and what a world file without stored links (format version 1) is given.
Links depend on the path: a chunk's `s_parent` was fixed by the step that made it, its
`s_child` by the finest level grown over it on that path (`engine.lod.StepLinks`).
Does not own: the file format (`saves/`), loading on a thread or the RAM budget
(`engine.scene.ChunkStore`), computing links (`engine.lod`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import numpy as np

from engine.camera import Camera
from engine.history import History, Step
from engine.lod import LodLinks, StepLinks, link_step, seen_by
from engine.splats import SplatChunk

LINK_BYTES_PER_SPLAT = 8  # s_parent + s_child, float32: what a loaded chunk's links cost


@dataclass(frozen=True, eq=False)
class ChunkMeta:
    chunk_id: int
    level: int
    count: int  # splats
    nbytes: int  # decoded arrays + LoD link arrays: what holding it in RAM costs
    lo: np.ndarray  # [3] float64 AABB of the centres padded by 3 sigma (`SplatChunk.bounds`)
    hi: np.ndarray  # [3] float64
    s_native: tuple[float, float, float]  # min, median, max of the splats' native scales
    band: tuple[float, float]  # LoD band (`LodIndex.band`) with the links it was made with


def chunk_meta(chunk_id: int, chunk: SplatChunk, band: tuple[float, float]) -> ChunkMeta:
    lo, hi = chunk.bounds()
    if len(chunk):
        s = chunk.s_native
        stats = (float(s.min()), float(np.median(s)), float(s.max()))
    else:
        stats = (0.0, 0.0, 0.0)
    return ChunkMeta(chunk_id, int(chunk.level), len(chunk),
                     chunk.nbytes() + LINK_BYTES_PER_SPLAT * len(chunk), lo, hi, stats,
                     (float(band[0]), float(band[1])))


class WorldSource(Protocol):
    """A world's chunks and links, read on demand. Every method may be called from an I/O
    thread; `read_*` may block on a disk and raise on damaged data (the caller refuses that
    chunk alone)."""

    def meta(self, chunk_id: int) -> ChunkMeta: ...

    def covers(self, step_id: int) -> Mapping[int, tuple[float, float]]:
        """Older chunks whose s_child the step changed -> their band after it."""
        ...

    def read_chunk(self, chunk_id: int) -> SplatChunk: ...

    def read_links(self, chunk_id: int, child_step: int | None) -> LodLinks:
        """The chunk's s_parent (from the step that made it) and its s_child as `child_step`
        left it (None: zeros, nothing finer)."""
        ...


class MemorySource:
    """Chunks and step links in memory, in front of an optional `fallback` source: what the
    app grows in a session before (and after) the file has it. Thread-safe for readers: a
    step is added whole before anyone is told about it."""

    def __init__(self, fallback: WorldSource | None = None) -> None:
        self.fallback = fallback
        self.chunks: dict[int, SplatChunk] = {}
        self.steps: dict[int, StepLinks] = {}
        self._owner: dict[int, int] = {}  # chunk id -> step id
        self._metas: dict[int, ChunkMeta] = {}

    def add_step(self, step_id: int, chunks: Mapping[int, SplatChunk], links: StepLinks) -> None:
        for cid, chunk in chunks.items():
            self._metas[cid] = chunk_meta(cid, chunk, links.bands[cid])
            self.chunks[cid] = chunk
            self._owner[cid] = step_id
        self.steps[step_id] = links

    def __contains__(self, chunk_id: int) -> bool:
        return chunk_id in self.chunks

    def meta(self, chunk_id: int) -> ChunkMeta:
        if chunk_id in self._metas:
            return self._metas[chunk_id]
        return self._fallback().meta(chunk_id)

    def covers(self, step_id: int) -> Mapping[int, tuple[float, float]]:
        links = self.steps.get(step_id)
        if links is None:
            return self._fallback().covers(step_id)
        return {cid: links.bands[cid] for cid in links.children}

    def read_chunk(self, chunk_id: int) -> SplatChunk:
        chunk = self.chunks.get(chunk_id)
        return chunk if chunk is not None else self._fallback().read_chunk(chunk_id)

    def read_links(self, chunk_id: int, child_step: int | None) -> LodLinks:
        child = self.steps.get(child_step) if child_step is not None else None
        if chunk_id in self.chunks:
            base = self.steps[self._owner[chunk_id]].links_of(chunk_id, len(self.chunks[chunk_id]))
        elif child is not None:  # an older chunk of the fallback, covered by a step in memory
            base = self._fallback().read_links(chunk_id, None)
        else:
            return self._fallback().read_links(chunk_id, child_step)
        if child_step is None:
            return base
        if child is None:
            return LodLinks(base.s_parent, self._fallback().read_links(chunk_id, child_step).s_child)
        return LodLinks(base.s_parent, child.children[chunk_id])

    def _fallback(self) -> WorldSource:
        if self.fallback is None:
            raise KeyError("not held in memory and no source behind it")
        return self.fallback


@dataclass(frozen=True)
class PathPlan:
    """A world on the path root -> `steps[-1]`: the steps, and per chunk on it the step whose
    `s_child` it shows (None: nothing finer was grown over it there) and its band then."""

    steps: tuple[Step, ...]
    child_step: Mapping[int, int | None]
    bands: Mapping[int, tuple[float, float]]


def plan_path(history: History, source: WorldSource, step_id: int | None = None) -> PathPlan:
    """Resolve the path to `step_id` (default: the head): O(chunks on it + their covers)."""
    steps = tuple(history.path(step_id)) if (step_id is not None or history.head is not None) \
        else ()
    child_step: dict[int, int | None] = {}
    bands: dict[int, tuple[float, float]] = {}
    for step in steps:
        for cid, band in source.covers(step.id).items():
            if cid in child_step:  # only chunks of earlier steps on this path
                child_step[cid] = step.id
                bands[cid] = band
        for cid in step.chunk_ids:
            child_step[cid] = None
            bands[cid] = source.meta(cid).band
    return PathPlan(steps, child_step, bands)


def link_on_path(history: History, source: WorldSource, step: Step,
                 chunks: Mapping[int, SplatChunk]) -> StepLinks:
    """The links appending `step` (its `chunks`) over the path to its parent decides: only
    the older chunks its camera sees are read (`seen_by`, from their boxes)."""
    if _linking_camera(step) is None:
        return link_step(None, chunks, {})
    plan = plan_path(history, source, step.parent)
    boxes = {}
    for cid in plan.child_step:
        meta = source.meta(cid)
        if meta.count:
            boxes[cid] = (meta.lo, meta.hi)
    older = {cid: (source.read_chunk(cid), source.read_links(cid, plan.child_step[cid]))
             for cid in seen_by(step.camera, boxes)}
    return link_step(step.camera, chunks, older)


def derive_links(history: History, read_chunk: Callable[[int], SplatChunk]
                 ) -> dict[int, StepLinks]:
    """Every step's `StepLinks`, as appending the steps parents-first decides them. Walks
    the tree depth first keeping the path's state (which step's s_child each chunk on it
    shows), so the work is the chunks each camera sees, not the path length per step.
    `read_chunk` is called once per chunk and per step that sees it."""
    derived: dict[int, StepLinks] = {}
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # chunks on the current path
    counts: dict[int, int] = {}
    child_of: dict[int, int | None] = {}
    kids: dict[int | None, list[Step]] = {}
    for step in history:
        kids.setdefault(step.parent, []).append(step)

    def links_of(cid: int) -> LodLinks:
        owner = derived[owners[cid]]
        base = owner.links_of(cid, counts[cid])
        cs = child_of[cid]
        return base if cs is None else LodLinks(base.s_parent, derived[cs].children[cid])

    owners: dict[int, int] = {}
    todo: list[tuple[Step, bool]] = [(s, True) for s in reversed(kids.get(None, []))]
    undo: dict[int, list[tuple[int, int | None]]] = {}
    while todo:
        step, entering = todo.pop()
        if not entering:
            for cid in step.chunk_ids:
                boxes.pop(cid, None)
                child_of.pop(cid, None)
            for cid, before in undo.pop(step.id):
                child_of[cid] = before
            continue
        new = {cid: read_chunk(cid) for cid in step.chunk_ids}
        if _linking_camera(step) is None:
            links = link_step(None, new, {})
        else:
            seen = seen_by(step.camera, {c: b for c, b in boxes.items() if counts[c]})
            links = link_step(step.camera, new, {c: (read_chunk(c), links_of(c)) for c in seen})
        derived[step.id] = links
        undo[step.id] = [(cid, child_of[cid]) for cid in links.children]
        for cid in links.children:
            child_of[cid] = step.id
        for cid, chunk in new.items():
            boxes[cid] = chunk.bounds()
            counts[cid] = len(chunk)
            child_of[cid] = None
            owners[cid] = step.id
        todo.append((step, False))
        todo.extend((k, True) for k in reversed(kids.get(step.id, [])))
    return derived


def _linking_camera(step: Step) -> Camera | None:
    """The camera a step's level is linked from: a zoom's C_i; an image or an import (or a
    zoom without a camera) is a root level (as `engine.scene.build_scene` treats it)."""
    return step.camera if step.kind == "zoom" and step.parent is not None else None
