"""The scene graph of a multi-scale world: levels and their chunks.

Owns: the components that describe a world (`LevelNode`, `ChunkHandle`, `ChunkBounds`), the
`ChunkStore` resource (handles -> data + load state), building a `World` from a history at a
step, and appending a level as deferred commands. Chunk entities hang under their level's
entity; each level hangs under the level it refines.
Does not own: the history itself (its owner, the app's session or a command, adds steps to it;
the scene only mirrors the path to one step), the file format (`saves/`), generation, or
drawing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.camera import Camera
from engine.history import History, Step
from engine.lod import LodIndex, LodLinks, build_lod_index, link_level
from engine.splats import SplatChunk
from engine.world import Entity, World


class LoadState(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class LevelNode:
    step_id: int
    level: int  # depth in the history tree: 0 = the scene from the input image
    camera: Camera | None  # C_i that created it (None for imports)
    prompt: str = ""


@dataclass
class ChunkHandle:
    """A handle: the chunk's data lives in the `ChunkStore`, keyed by `chunk_id`."""

    chunk_id: int


@dataclass
class ChunkBounds:
    lo: np.ndarray  # [3] float64 world AABB (padded by 3 sigma)
    hi: np.ndarray  # [3] float64
    count: int
    band_lo: float  # s_render below which no splat of the chunk is drawn (alpha <= cull)
    band_hi: float  # s_render above which no splat of the chunk is drawn


class ChunkStore:
    """Resolves chunk handles to data and tracks each chunk's load state.

    `loader` is injected (e.g. reading from a save file, or a gated fake in tests); chunks
    inserted directly are READY at once."""

    def __init__(self, loader: Callable[[int], SplatChunk] | None = None) -> None:
        self._data: dict[int, SplatChunk] = {}
        self._state: dict[int, LoadState] = {}
        self._loader = loader

    def insert(self, chunk_id: int, chunk: SplatChunk) -> None:
        self._data[chunk_id] = chunk
        self._state[chunk_id] = LoadState.READY

    def state(self, chunk_id: int) -> LoadState:
        return self._state.get(chunk_id, LoadState.UNLOADED)

    def get(self, chunk_id: int) -> SplatChunk | None:
        """The chunk if READY; otherwise loads it through the loader when there is one."""
        if chunk_id in self._data:
            return self._data[chunk_id]
        if self._loader is None:
            return None
        self._state[chunk_id] = LoadState.LOADING
        try:
            chunk = self._loader(chunk_id)
        except Exception:
            self._state[chunk_id] = LoadState.FAILED
            raise
        self.insert(chunk_id, chunk)
        return chunk

    def __contains__(self, chunk_id: int) -> bool:
        return chunk_id in self._data

    def ids(self) -> list[int]:
        return sorted(self._data)

    def resident_splats(self) -> int:
        return sum(len(c) for c in self._data.values())


def _bounds(index: LodIndex, chunk_id: int, chunk: SplatChunk) -> ChunkBounds:
    lo, hi = chunk.bounds()
    band_lo, band_hi = index.band(chunk_id, chunk)
    return ChunkBounds(lo, hi, len(chunk), band_lo, band_hi)


def build_scene(history: History, chunks: Mapping[int, SplatChunk], step_id: int | None = None) -> World:
    """A World holding the levels on the path root -> step (default: head) of `history`."""
    world = World()
    store = ChunkStore()
    path = history.path(step_id)
    levels = []
    for step in path:
        level_chunks = {cid: chunks[cid] for cid in step.chunk_ids}
        for cid, chunk in level_chunks.items():
            store.insert(cid, chunk)
        levels.append((step.camera if step.kind == "zoom" else None, level_chunks))
    index = build_lod_index(levels)
    world.insert_resource(store)
    world.insert_resource(index)
    parent: Entity | None = None
    for i, step in enumerate(path):
        parent = _spawn_level(world, step, i, parent, index, store)
    return world


def _spawn_level(world: World, step: Step, level: int, parent: Entity | None,
                 index: LodIndex, store: ChunkStore) -> Entity:
    node = world.spawn(LevelNode(step.id, level, step.camera, step.prompt), parent=parent)
    for cid in step.chunk_ids:
        chunk = store.get(cid)
        world.spawn(ChunkHandle(cid), _bounds(index, cid, chunk), parent=node)
    return node


def flat_scene(pieces: list[tuple[SplatChunk, LodLinks | None]]) -> World:
    """A World of the given chunks with the given links and no history (a flat scene: one
    chunk entity each; None links make a root chunk). For tests, benchmarks and tools."""
    world = World()
    store, index = ChunkStore(), LodIndex()
    world.insert_resource(store)
    world.insert_resource(index)
    for cid, (chunk, links) in enumerate(pieces):
        store.insert(cid, chunk)
        index.links[cid] = links if links is not None else LodLinks.root(len(chunk))
        world.spawn(ChunkHandle(cid), _bounds(index, cid, chunk))
    return world


def level_entities(world: World) -> list[tuple[Entity, LevelNode]]:
    return [(e, node) for e, (node,) in world.query(LevelNode)]


def head_level(world: World) -> Entity | None:
    levels = level_entities(world)
    return max(levels, key=lambda x: x[1].level)[0] if levels else None


def append_level(world: World, step: Step, chunks: Mapping[int, SplatChunk]) -> None:
    """Queue a generated level for the frame's apply point: data goes into the store, links
    into the LoD index (older chunks' links change, their data never does), then a level
    entity with its chunk entities is spawned under the current deepest level, and the
    bounds of older chunks whose links changed are refreshed. `step` must already be in the
    history (its owner adds it at once, so step ids never collide)."""

    def apply(w: World) -> None:
        store = w.resource(ChunkStore)
        index = w.resource(LodIndex)
        older = {cid: store.get(cid) for cid in store.ids()}
        for cid, chunk in chunks.items():
            store.insert(cid, chunk)
        if step.camera is None or not older:
            for cid, chunk in chunks.items():
                index.links[cid] = LodLinks.root(len(chunk))
        else:
            link_level(index, step.camera, chunks, older)
        parent = head_level(w)
        level = 0 if parent is None else w.get(parent, LevelNode).level + 1
        _spawn_level(w, step, level, parent, index, store)
        for e, (handle, bounds) in w.query(ChunkHandle, ChunkBounds):
            if handle.chunk_id in older:
                w.insert(e, _bounds(index, handle.chunk_id, older[handle.chunk_id]))

    world.commands.run(apply)
