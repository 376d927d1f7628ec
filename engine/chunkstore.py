"""Chunk data by handle, with a load state: a RAM pool under a byte budget fed by an I/O thread.

Owns: `ChunkStore`, the resource that resolves a chunk id to its decoded arrays (and puts
its LoD links into the world's `LodIndex`), and each chunk's `LoadState`:
- UNLOADED -> LOADING when a frame asks for it (`request`) and the pool has room for it
  (least recently used chunks that no frame asked for lately are evicted to make room);
- LOADING -> READY (or FAILED, with a one-line message) when the store's I/O thread has read,
  checked and decoded it through the injected `loader` and the frame takes the result
  (`poll`, on the frame thread: the pool and the index change only there);
- READY -> UNLOADED when evicted; FAILED stays (a damaged chunk is refused alone, once).
Chunks `insert`ed directly (a world built in memory, a level grown this session) are pinned:
READY at once, never evicted, outside the budget. Decoded bytes of pooled chunks (READY and
LOADING, counted from the sizes the world's index gives before reading) never exceed
`budget_bytes`. Nothing here blocks the frame: `get` answers from memory; only the tools'
`load_now` and `wait` block, on purpose.
Does not own: what to ask for (the renderer's visible set and prefetch,
`engine.render.streaming`), reading files (the loader: `engine.catalog.WorldSource`
through `engine.scene`), drawing or GPU residency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import heapq
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import first_line
from engine.lod import LodIndex, LodLinks
from engine.splats import SplatChunk

DEFAULT_RAM_BYTES = 192 << 20  # decoded chunks + their links held in RAM (see docs/streaming.md)
# a decoded splat's bytes at SH degree 0 (position, rotation, scales, opacity, colour,
# s_native: 15 float32) and its links (s_parent, s_child): the least a pooled splat costs
MIN_SPLAT_BYTES = 4 * 15 + 8
PREFETCH_GRACE_FRAMES = 4  # a prefetch never evicts a chunk a frame asked for this recently
TRIM_AFTER_BYTES = 32 << 20  # evicted this much since the last time: give free memory back
TRIM_EVERY_FRAMES = 30  # ... and this often while streaming (frames free big temporaries too)
PRIORITY_VISIBLE, PRIORITY_PREFETCH = 0, 1

Loader = Callable[[int], tuple[SplatChunk, LodLinks | None]]  # blocking, thread-safe


class LoadState(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ChunkFailure:
    chunk_id: int
    message: str  # one line


def links_nbytes(links: LodLinks | None) -> int:
    return 0 if links is None else int(links.s_parent.nbytes + links.s_child.nbytes)


class ChunkStore:
    """Resolves chunk handles to data and tracks each chunk's load state (module docstring).

    `loader(chunk_id) -> (chunk, links)` reads one chunk (on the store's I/O thread; it may
    raise: the chunk becomes FAILED). `sizes`: its decoded bytes (arrays + links) for every
    chunk the loader can give, known before reading it. `index`: the LodIndex that receives
    the links of loaded chunks (and loses them on eviction)."""

    def __init__(self, loader: Loader | None = None, *, budget_bytes: int = DEFAULT_RAM_BYTES,
                 sizes: Mapping[int, int] | None = None, index: LodIndex | None = None) -> None:
        self._loader = loader
        self.budget_bytes = int(budget_bytes)
        self.index = index if index is not None else LodIndex()
        self._sizes: dict[int, int] = dict(sizes or {})
        self._data: dict[int, SplatChunk] = {}
        self._state: dict[int, LoadState] = {}
        self._pinned: set[int] = set()
        self._charged: dict[int, int] = {}  # pooled chunk -> bytes counted (READY or LOADING)
        self._last_used: dict[int, int] = {}
        self._child_override: dict[int, np.ndarray] = {}  # s_child set by a level grown here
        self.used_bytes = 0  # READY pooled chunks
        self.reserved_bytes = 0  # LOADING chunks
        self.peak_bytes = 0
        self.tick = 0
        self.evictions = 0
        self._evicted_bytes = 0  # since free memory was last given back
        self.failures: deque[ChunkFailure] = deque(maxlen=64)
        # the I/O thread's side, guarded by _cond
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, int]] = []  # (priority, seq, chunk id)
        self._queued: dict[int, tuple[int, int]] = {}  # chunk id -> its live heap key
        self._done: list[tuple[int, bool, object]] = []
        self._seq = 0
        self._started: set[int] = set()  # being read now
        self._trim = False  # the I/O thread gives free heap memory back when it is next idle
        self._wanted_tick: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = False

    # ---- what is held ---------------------------------------------------------------------
    def insert(self, chunk_id: int, chunk: SplatChunk, links: LodLinks | None = None) -> None:
        """Hold `chunk` in memory for good (pinned): READY now, never evicted, not budgeted."""
        self._release(chunk_id)
        self._data[chunk_id] = chunk
        self._state[chunk_id] = LoadState.READY
        self._pinned.add(chunk_id)
        if links is not None:
            self.index.links[chunk_id] = self._with_override(chunk_id, links)

    def state(self, chunk_id: int) -> LoadState:
        return self._state.get(chunk_id, LoadState.UNLOADED)

    def get(self, chunk_id: int) -> SplatChunk | None:
        """The chunk if READY (marked used this frame), else None; never blocks."""
        chunk = self._data.get(chunk_id)
        if chunk is not None:
            self._last_used[chunk_id] = self.tick
        return chunk

    def __contains__(self, chunk_id: int) -> bool:
        return chunk_id in self._data

    def ids(self) -> list[int]:
        return sorted(self._data)

    def resident_splats(self) -> int:
        return sum(len(c) for c in self._data.values())

    @property
    def max_splats(self) -> int:
        """The most splats the pool can hold at once (each at least `MIN_SPLAT_BYTES`)."""
        return self.budget_bytes // MIN_SPLAT_BYTES

    @property
    def streaming(self) -> bool:
        """Does this store load chunks on demand (a loader), or hold them all?"""
        return self._loader is not None

    def pending(self) -> int:
        """Chunks being loaded now."""
        return sum(1 for s in self._state.values() if s is LoadState.LOADING)

    def override_child(self, chunk_id: int, s_child: np.ndarray) -> None:
        """A level grown in this session covers `chunk_id`: its s_child is now `s_child`, for
        the copy held and for every later load (the loader's source predates the level)."""
        self._child_override[chunk_id] = s_child
        links = self.index.links.get(chunk_id)
        if links is not None:
            self.index.links[chunk_id] = LodLinks(links.s_parent, s_child)

    # ---- the frame's side -----------------------------------------------------------------
    def begin_frame(self) -> None:
        """A new frame: loads queued for chunks no frame asked for since the last one are
        dropped (the camera moved on) before they start."""
        self.tick += 1
        if self._thread is not None and (self._evicted_bytes >= TRIM_AFTER_BYTES
                                         or self.tick % TRIM_EVERY_FRAMES == 0):
            self._evicted_bytes = 0
            with self._cond:  # done on the I/O thread: the frame does not pay for it
                self._trim = True
                self._cond.notify()
        stale = [cid for cid in self._queued if self._wanted_tick.get(cid, -1) < self.tick - 1]
        if stale:
            with self._cond:
                for cid in stale:
                    if self._queued.pop(cid, None) is not None:
                        self._release(cid)

    def request(self, chunk_ids: Iterable[int], prefetch: bool = False) -> int:
        """Ask for chunks, most wanted first: READY ones count as used this frame, UNLOADED
        ones start loading while the pool has room (LRU chunks not used since
        `protect_since` are evicted for them). Returns how many loads were started."""
        if self._loader is None:
            for cid in chunk_ids:
                if cid in self._data:
                    self._last_used[cid] = self.tick
            return 0
        priority = PRIORITY_PREFETCH if prefetch else PRIORITY_VISIBLE
        protect_since = self.tick - (PREFETCH_GRACE_FRAMES if prefetch else 0)
        started = 0
        full = False
        for order, cid in enumerate(chunk_ids):
            state = self._state.get(cid, LoadState.UNLOADED)
            self._wanted_tick[cid] = self.tick
            if state is LoadState.READY:
                if not prefetch:
                    self._last_used[cid] = self.tick
                continue
            if state is LoadState.FAILED or cid not in self._sizes:
                continue
            key = (priority, order)
            if state is LoadState.LOADING:
                self._requeue(cid, key)
                continue
            if full or not self._make_room(self._sizes[cid], protect_since):
                full = True  # the pool holds what is wanted more: stop asking this frame
                continue
            self._charged[cid] = self._sizes[cid]
            self.reserved_bytes += self._sizes[cid]
            self._state[cid] = LoadState.LOADING
            self._requeue(cid, key)
            started += 1
        self.peak_bytes = max(self.peak_bytes, self.used_bytes + self.reserved_bytes)
        return started

    def poll(self) -> list[ChunkFailure]:
        """Take the loads the I/O thread finished (on the frame thread); returns new failures
        (also kept in `failures`)."""
        with self._cond:
            done, self._done = self._done, []
        failed = []
        for cid, ok, value in done:
            if self._state.get(cid) is not LoadState.LOADING:
                continue  # released meanwhile
            size = self._charged.pop(cid)
            self.reserved_bytes -= size
            if not ok:
                self._state[cid] = LoadState.FAILED
                failure = ChunkFailure(cid, f"chunk {cid} refused: {value}")
                self.failures.append(failure)
                failed.append(failure)
                continue
            chunk, links = value
            actual = chunk.nbytes() + links_nbytes(links)
            self._data[cid] = chunk
            self._state[cid] = LoadState.READY
            self._charged[cid] = actual
            self.used_bytes += actual
            self._last_used[cid] = self.tick
            if links is not None:
                self.index.links[cid] = self._with_override(cid, links)
            if self.used_bytes + self.reserved_bytes > self.budget_bytes:  # a size that lied
                self._make_room(0, self.tick + 1)
        return failed

    def wait(self, timeout: float) -> bool:
        """Block until a load finishes (or `timeout` seconds): for tools and tests, never the
        frame. True if a result is waiting for `poll`."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._done), timeout)

    def load_now(self, chunk_ids: Sequence[int]) -> dict[int, tuple[SplatChunk, LodLinks]]:
        """(chunk, links) of each id, read on this thread where not held (blocks; outside the
        pool: for tools that need a few chunks once, e.g. linking a new level). A chunk that
        cannot be read raises."""
        out = {}
        for cid in chunk_ids:
            chunk = self._data.get(cid)
            links = self.index.links.get(cid)
            if chunk is None or links is None:
                if self._loader is None:
                    raise KeyError(f"chunk {cid} is not held and there is no loader")
                chunk, links = self._loader(cid)
                links = self._with_override(cid, links if links is not None
                                            else LodLinks.root(len(chunk)))
            out[cid] = (chunk, links)
        return out

    def close(self) -> None:
        """Stop the I/O thread (a load in progress finishes first)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # ---- internals ------------------------------------------------------------------------
    def _with_override(self, cid: int, links: LodLinks) -> LodLinks:
        s_child = self._child_override.get(cid)
        return links if s_child is None else LodLinks(links.s_parent, s_child)

    def _requeue(self, cid: int, key: tuple[int, int]) -> None:
        """Queue a LOADING chunk's read with `key` (or a better one it has), unless it is
        being read already."""
        with self._cond:
            live = self._queued.get(cid)
            if cid in self._started or (live is not None and live <= key):
                return
            self._seq += 1
            self._queued[cid] = key
            heapq.heappush(self._heap, (key[0], key[1], self._seq, cid))
            if self._thread is None:
                map_big_blocks()
                self._thread = threading.Thread(target=self._run, name="chunk-io", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        started = self._started
        while True:
            with self._cond:
                while not self._stop and not self._heap and not self._trim:
                    self._cond.wait()
                if self._stop:
                    return
                trim, self._trim = self._trim, False
            if trim:
                return_free_memory()  # (ctypes lets go of the GIL meanwhile)
            with self._cond:
                if not self._heap:
                    continue
                priority, order, _, cid = heapq.heappop(self._heap)
                if self._queued.get(cid) != (priority, order):
                    continue  # superseded by a better key, or dropped
                del self._queued[cid]
                started.add(cid)
            try:
                result: object = self._loader(cid)
                ok = True
            except Exception as exc:  # a damaged chunk: refused alone, with one line
                result, ok = first_line(exc), False
            with self._cond:
                started.discard(cid)
                self._done.append((cid, ok, result))
                self._cond.notify_all()

    def _make_room(self, need: int, protect_since: int) -> bool:
        """Evict pooled READY chunks unused since before `protect_since`, least recently used
        first, until `need` more bytes fit the budget; False if they cannot."""
        if self.used_bytes + self.reserved_bytes + need <= self.budget_bytes:
            return True
        victims = sorted((self._last_used.get(c, -1), c) for c, s in self._state.items()
                         if s is LoadState.READY and c not in self._pinned
                         and self._last_used.get(c, -1) < protect_since)
        for _, cid in victims:
            if self.used_bytes + self.reserved_bytes + need <= self.budget_bytes:
                break
            self._release(cid)
            self.evictions += 1
        return self.used_bytes + self.reserved_bytes + need <= self.budget_bytes

    def _release(self, cid: int) -> None:
        """Forget a pooled chunk (READY: evicted; LOADING and still queued: dropped)."""
        state = self._state.get(cid)
        size = self._charged.pop(cid, 0)
        if state is LoadState.READY and cid not in self._pinned:
            self.used_bytes -= size
            self._evicted_bytes += size
            self._data.pop(cid, None)
            self.index.links.pop(cid, None)
            self._state[cid] = LoadState.UNLOADED
        elif state is LoadState.LOADING:
            self.reserved_bytes -= size
            self._state[cid] = LoadState.UNLOADED
        self._pinned.discard(cid)


def _libc_function(name: str, argtypes: list, restype):
    """A glibc malloc tuning function, or None elsewhere."""
    lib = ctypes.util.find_library("c")
    try:
        fn = getattr(ctypes.CDLL(lib), name) if lib else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


# constant function pointers, looked up once (not state)
_MALLOC_TRIM = _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
_MALLOPT = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 64 << 10  # blocks this big get their own mapping (see map_big_blocks)


def map_big_blocks() -> None:
    """Give every heap block of `MMAP_THRESHOLD_BYTES` or more its own memory mapping, which
    goes back to the OS when it is freed (glibc: `mallopt(M_MMAP_THRESHOLD)`; a no-op
    elsewhere). A streaming process frees ~1 MB of chunk arrays at every eviction and
    hundreds of MB of frame temporaries a second; glibc's default threshold rises to the
    largest block freed so far (up to 32 MB), after which all of those land in the heap,
    whose free holes stayed resident: the 8M-splat bench world held 200 MB more after its
    fly-through than with this (bench/scale.py, docs/streaming.md). Costs a page fault per
    4 KB of each such block when it is first written; idempotent."""
    if _MALLOPT is not None:
        _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def return_free_memory() -> None:
    """Give the heap's free pages back to the OS (glibc: `malloc_trim(0)`, 10-20 ms on a GB
    heap; a no-op elsewhere). Evicted chunks and each frame's big temporaries are freed into
    the C heap, where they would otherwise keep the process's resident size at its
    high-water mark plus fragmentation (190 MB of it after flying the 64M world)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
