"""GPU residency of splat chunks: a paged arena in GL buffers, LRU eviction, capped uploads.

Owns: the static per-splat GPU attributes (`splat_attributes`, `lod_attributes`), the arena
(`PagedArena`: two vertex buffers cut into pages of `PAGE_SPLATS` rows, grown by copying up to
the byte budget) and which chunks hold which pages (`Residency`: on-demand uploads limited to
a byte count per frame, least-recently-used eviction of chunks not wanted this frame).
A chunk's pages need not be contiguous: its arena rows are `page << PAGE_BITS | row % PAGE`,
so freeing and reusing pages never fragments the arena.
Does not own: deciding which chunks are wanted (`engine.render.visibility`), per-frame data
(the sorted index list, the per-page origins: `engine.render.streaming`) or drawing.

Attribute layout (float32, in the chunk's layout order, see `visibility.ChunkLayout`):
    main [N, 16]: local xyz (splat centre - chunk centre, world axes), the 3x3 factor
                  M = R diag(scale) of the covariance Sigma = M M^T by columns (world axes),
                  rgb (degree-0 colour clamped to [0, 1]), opacity (sigmoid of the logit)
    lod  [N, 3]:  log s_native, log s_parent, log s_child, where an absent link is written as
                  log s_native +- 1e30 (the ramp over it is then exactly 1 in float32; no inf
                  ever reaches the shader). Rewritten alone when a new level changes links.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import moderngl
import numpy as np

from engine.lod import LodLinks
from engine.render.prepare import FLAG_HAS_CHILD, FLAG_HAS_PARENT, link_columns
from engine.render.visibility import PAGE_BITS, PAGE_SPLATS, ChunkBands, ChunkLayout
from engine.splats import SH_C0

MAIN_WIDTH = 16
LOD_WIDTH = 3
BYTES_PER_SPLAT = 4 * (MAIN_WIDTH + LOD_WIDTH)
PAGE_BYTES = PAGE_SPLATS * BYTES_PER_SPLAT
NO_LINK = np.float32(1e30)
STALE_FRAMES = 2  # a resident chunk no frame wanted this long is evicted before the arena grows
HOST_ARENA_GROWTH = 0.125  # an arena in host memory grows by an eighth (on a GPU: a quarter)


def splat_attributes(layout: ChunkLayout) -> np.ndarray:
    """[N, MAIN_WIDTH] float32 static attributes of a chunk, in layout order."""
    chunk, order = layout.chunk, layout.order
    out = np.empty((layout.count, MAIN_WIDTH), np.float32)
    out[:, 0:3] = layout.local
    q = chunk.rotations[order]  # [N, 4] float32 (w, x, y, z)
    q = q / np.sqrt((q * q).sum(axis=1, keepdims=True))
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    s = np.exp(chunk.log_scales[order])  # [N, 3] float32
    # M = R diag(s) by columns (GLSL mat3 order); R as in engine.splats.quaternions_to_matrices
    out[:, 3] = (1 - 2 * (y * y + z * z)) * s[:, 0]
    out[:, 4] = 2 * (x * y + w * z) * s[:, 0]
    out[:, 5] = 2 * (x * z - w * y) * s[:, 0]
    out[:, 6] = 2 * (x * y - w * z) * s[:, 1]
    out[:, 7] = (1 - 2 * (x * x + z * z)) * s[:, 1]
    out[:, 8] = 2 * (y * z + w * x) * s[:, 1]
    out[:, 9] = 2 * (x * z + w * y) * s[:, 2]
    out[:, 10] = 2 * (y * z - w * x) * s[:, 2]
    out[:, 11] = (1 - 2 * (x * x + y * y)) * s[:, 2]
    out[:, 12:15] = np.clip(0.5 + SH_C0 * chunk.sh_dc[order], 0.0, 1.0)
    with np.errstate(over="ignore"):
        out[:, 15] = 1.0 / (1.0 + np.exp(-chunk.opacity_logits[order]))
    return out


def lod_attributes(layout: ChunkLayout, links: LodLinks | None) -> np.ndarray:
    """[N, LOD_WIDTH] float32 link columns in layout order (absent links: +-1e30 offsets)."""
    chunk, order = layout.chunk, layout.order
    links = LodLinks.root(layout.count) if links is None else links
    cols = link_columns(chunk.s_native[order], links.s_parent[order], links.s_child[order])
    flags = cols[:, 3].astype(np.int64)
    out = np.empty((layout.count, LOD_WIDTH), np.float32)
    out[:, 0] = cols[:, 0]
    out[:, 1] = np.where(flags & FLAG_HAS_PARENT, cols[:, 1], cols[:, 0] + NO_LINK)
    out[:, 2] = np.where(flags & FLAG_HAS_CHILD, cols[:, 2], cols[:, 0] - NO_LINK)
    return out


class PagedArena:
    """Two GL buffers (main, lod) of `capacity` pages; grows by `growth` of its size (or what
    is missing) up to `max_pages`."""

    def __init__(self, ctx: moderngl.Context, max_pages: int, initial_pages: int = 16,
                 growth: float = 0.25) -> None:
        self.ctx = ctx
        self.max_pages = int(max_pages)
        self.growth = float(growth)  # the fraction of its capacity the arena grows by
        self.capacity = 0
        self.version = 0  # bumped when the buffers are replaced (VAOs must be rebuilt)
        self.main: moderngl.Buffer | None = None
        self.lod: moderngl.Buffer | None = None
        self._free: list[int] = []  # heap: lowest pages first keeps the arena compact
        self._grow(min(max(initial_pages, 1), self.max_pages))

    @property
    def pages_used(self) -> int:
        return self.capacity - len(self._free)

    @property
    def pages_free_or_growable(self) -> int:
        # (`max_pages` may be lowered below the capacity already grown: free pages still count)
        return len(self._free) + max(self.max_pages - self.capacity, 0)

    def allocate(self, count: int) -> np.ndarray | None:
        """`count` free pages (growing the buffers if needed), or None if over the budget.
        The buffers grow by `growth` of their size (or what is missing): on a software GL
        they are host memory, and doubling would hold up to twice the chunks drawn."""
        if count > self.pages_free_or_growable:
            return None
        if count > len(self._free):
            self._grow(min(self.max_pages, max(self.capacity + int(self.capacity * self.growth),
                                               self.capacity + count - len(self._free))))
        return np.array([heapq.heappop(self._free) for _ in range(count)], np.int64)

    def free(self, pages: np.ndarray) -> None:
        for page in pages.tolist():
            heapq.heappush(self._free, page)

    def write(self, page: int, main: np.ndarray, lod: np.ndarray) -> None:
        # contiguous arrays go in through the buffer protocol, without a bytes copy
        self.main.write(np.ascontiguousarray(main, np.float32),
                        offset=page * PAGE_SPLATS * MAIN_WIDTH * 4)
        self.write_lod(page, lod)

    def write_lod(self, page: int, lod: np.ndarray) -> None:
        self.lod.write(np.ascontiguousarray(lod, np.float32),
                       offset=page * PAGE_SPLATS * LOD_WIDTH * 4)

    def release(self) -> None:
        for buf in (self.main, self.lod):
            if buf is not None:
                buf.release()
        self.main = self.lod = None

    def _grow(self, pages: int) -> None:
        if pages <= self.capacity:
            return
        main = self.ctx.buffer(reserve=pages * PAGE_SPLATS * MAIN_WIDTH * 4)
        lod = self.ctx.buffer(reserve=pages * PAGE_SPLATS * LOD_WIDTH * 4)
        if self.main is not None:
            self.ctx.copy_buffer(main, self.main, self.main.size)
            self.ctx.copy_buffer(lod, self.lod, self.lod.size)
            # Wait for the copies. GL orders them before the page writes that follow, but
            # NVIDIA's driver (580, H200) was seen to land a write into the copied range
            # first and then overwrite it with the copy. Growth is rare (doubling).
            self.ctx.finish()
            self.release()
        for page in range(self.capacity, pages):
            heapq.heappush(self._free, page)
        self.main, self.lod, self.capacity = main, lod, pages
        self.version += 1


@dataclass(eq=False)
class ResidentChunk:
    chunk_id: int
    layout: ChunkLayout
    bands: ChunkBands
    links: LodLinks | None
    last_used: int
    pages: np.ndarray | None = None  # [ceil(N / PAGE)] arena pages, once allocated
    uploaded: int = 0  # pages written so far
    pending_main: np.ndarray | None = None  # attributes still being uploaded
    pending_lod: np.ndarray | None = None
    gpu_rows: np.ndarray | None = None  # [N] uint32 arena rows, once every page is written

    @property
    def ready(self) -> bool:
        return self.gpu_rows is not None

    @property
    def page_count(self) -> int:
        return -(-self.layout.count // PAGE_SPLATS)


@dataclass(frozen=True)
class Wanted:
    """A chunk the frame wants drawn (in priority order: earlier ones upload first)."""

    chunk_id: int
    layout: ChunkLayout
    bands: ChunkBands
    links: LodLinks | None
    attributes: np.ndarray | None = None  # splat_attributes(layout) if computed already


class Residency:
    """Which chunks are on the GPU; uploads on demand under a per-frame byte cap.

    `host_memory`: the arena lives in host RAM (a software GL): chunks no frame wanted for
    STALE_FRAMES are evicted every frame, so the arena (which never shrinks) grows only to
    what recent frames drew, not to the LRU's reach. On a GPU they stay until their pages are
    needed (a view that comes back needs no upload)."""

    def __init__(self, arena: PagedArena, host_memory: bool = False) -> None:
        self.arena = arena
        self.host_memory = host_memory
        if host_memory:  # it never shrinks: grow it in smaller steps past what frames need
            arena.growth = HOST_ARENA_GROWTH
        self.chunks: dict[int, ResidentChunk] = {}
        self.evictions = 0

    # ---- queries --------------------------------------------------------------------------
    def ready(self, chunk_id: int) -> ResidentChunk | None:
        entry = self.chunks.get(chunk_id)
        return entry if entry is not None and entry.ready else None

    @property
    def bytes_resident(self) -> int:
        """Arena bytes held by chunks (whole pages, uploads in progress included)."""
        return self.arena.pages_used * PAGE_BYTES

    @property
    def chunks_ready(self) -> int:
        return sum(1 for e in self.chunks.values() if e.ready)

    @property
    def splats_ready(self) -> int:
        return sum(e.layout.count for e in self.chunks.values() if e.ready)

    # ---- the frame's update ---------------------------------------------------------------
    def update(self, frame: int, wanted: Sequence[Wanted], cap_bytes: int | None) -> int:
        """Mark `wanted` as used this frame, upload missing pages in `wanted` order, then
        apply changed LoD links, until `cap_bytes` (None: no cap) is spent; returns bytes
        uploaded. At least one page (or one chunk's links) goes up per frame when any is
        missing, so a cap smaller than that still makes progress.

        Links: a resident chunk keeps drawing with the links it has (`entry.links`) until
        no wanted chunk is still uploading. A new level changes its parents' links at once
        (they fade where the child covers them); applying that before the child is on the
        GPU would open a hole for the frames of its upload."""
        for w in wanted:
            entry = self.chunks.get(w.chunk_id)
            if entry is not None and entry.layout is not w.layout:
                self.evict(w.chunk_id)  # the store holds another chunk under this id now
                entry = None
            if entry is None:
                entry = ResidentChunk(w.chunk_id, w.layout, w.bands, w.links, frame)
                self.chunks[w.chunk_id] = entry
            entry.last_used = frame
        for chunk_id in [c for c, e in self.chunks.items() if e.pages is None and e.last_used < frame]:
            del self.chunks[chunk_id]  # wanted once, never allocated, not wanted now
        if self.host_memory:
            for chunk_id in [c for c, e in self.chunks.items()
                             if e.last_used < frame - STALE_FRAMES]:
                self.evict(chunk_id)
        budget = [None if cap_bytes is None else int(cap_bytes)]
        uploaded = 0

        def spend(size: int) -> bool:
            if budget[0] is not None and size > budget[0] and uploaded > 0:
                return False
            if budget[0] is not None:
                budget[0] -= size
            return True

        for w in wanted:
            entry = self.chunks[w.chunk_id]
            if entry.ready:
                continue
            if entry.pages is None and not self._allocate(entry, frame, w.attributes):
                continue  # over the byte budget even after evicting everything unwanted
            while entry.uploaded < entry.page_count:
                size = self._page_rows(entry, entry.uploaded) * 4 * (MAIN_WIDTH + LOD_WIDTH)
                if not spend(size):
                    return uploaded
                self._upload_page(entry)
                uploaded += size
            self._finish(entry)
        if any(not self.chunks[w.chunk_id].ready for w in wanted):
            return uploaded  # some chunk did not fit the budget: keep the old links
        for w in wanted:
            entry = self.chunks[w.chunk_id]
            if entry.links is w.links and entry.bands is w.bands:
                continue
            size = entry.layout.count * 4 * LOD_WIDTH
            if not spend(size):
                break
            self._refresh_links(entry, w)
            uploaded += size
        return uploaded

    def evict(self, chunk_id: int) -> None:
        entry = self.chunks.pop(chunk_id, None)
        if entry is not None and entry.pages is not None:
            self.arena.free(entry.pages)
            self.evictions += 1

    def drop_unused(self, keep: set[int]) -> None:
        """Evict every chunk whose id is not in `keep` (e.g. chunks that left the world)."""
        for chunk_id in [c for c in self.chunks if c not in keep]:
            self.evict(chunk_id)

    # ---- internals ------------------------------------------------------------------------
    def _allocate(self, entry: ResidentChunk, frame: int, attributes: np.ndarray | None) -> bool:
        need = entry.page_count
        # Chunks no frame wanted for STALE_FRAMES (in host memory: any not wanted this frame)
        # give their pages back before the arena grows (the arena never shrinks: it stays
        # near the pages recent frames drew, not the budget); then, at the budget, any chunk
        # not wanted this frame, least recent first.
        stale_before = frame if self.host_memory else frame - STALE_FRAMES
        for stale, room in ((stale_before, lambda: len(self.arena._free)),
                            (frame, lambda: self.arena.pages_free_or_growable)):
            if need <= room():
                continue
            victims = sorted((e for e in self.chunks.values()
                              if e.last_used < stale and e.pages is not None),
                             key=lambda e: e.last_used)
            for victim in victims:
                if need <= room():
                    break
                self.evict(victim.chunk_id)
        pages = self.arena.allocate(need)
        if pages is None:
            return False
        entry.pages = pages
        entry.uploaded = 0
        entry.pending_main = (splat_attributes(entry.layout) if attributes is None
                              else attributes)
        entry.pending_lod = lod_attributes(entry.layout, entry.links)
        return True

    def _page_rows(self, entry: ResidentChunk, k: int) -> int:
        return min(PAGE_SPLATS, entry.layout.count - k * PAGE_SPLATS)

    def _upload_page(self, entry: ResidentChunk) -> None:
        k = entry.uploaded
        rows = slice(k * PAGE_SPLATS, k * PAGE_SPLATS + self._page_rows(entry, k))
        self.arena.write(int(entry.pages[k]), entry.pending_main[rows], entry.pending_lod[rows])
        entry.uploaded += 1

    def _finish(self, entry: ResidentChunk) -> None:
        rows = np.arange(entry.layout.count, dtype=np.int64)
        entry.gpu_rows = ((entry.pages[rows >> PAGE_BITS] << PAGE_BITS)
                          | (rows & (PAGE_SPLATS - 1))).astype(np.uint32)
        entry.pending_main = entry.pending_lod = None

    def _refresh_links(self, entry: ResidentChunk, w: Wanted) -> None:
        """New LoD links for a resident chunk: rewrite its lod columns."""
        entry.links, entry.bands = w.links, w.bands
        lod = lod_attributes(entry.layout, entry.links)
        for k in range(entry.page_count):
            rows = slice(k * PAGE_SPLATS, k * PAGE_SPLATS + self._page_rows(entry, k))
            self.arena.write_lod(int(entry.pages[k]), lod[rows])
