"""A world file opened for streaming, and copies of one that never hold it whole.

Owns:
- `WorldFile` (`open_world`): a `.wzs` opened by its index alone — record headers, steps,
  chunk sub-headers, LINK entry tables — in time and memory that do not grow with the payload
  bytes; it is the `engine.catalog.WorldSource` the scene streams from (each chunk and link
  array is read and checked when asked for, `saves.reader`). A format-version-1 file, which
  stores no links, is migrated when opened: its links are derived from its payloads once
  (`engine.catalog.derive_links`, the old cost of opening it) and kept in memory.
- `copy_world`: a new file (atomically) holding a world's committed steps: chunk and link
  records copied byte for byte once their checksums and arrays check out, steps re-encoded,
  orphans and torn tails left behind; for a version-1 source the derived links are encoded.
  Memory: one record at a time (plus a version-1 source's derived links). `compact` and
  `upgrade_world` are copies.
Does not own: the index rules (`saves.format`), payload decoding (`saves.chunks`,
`saves.links`), what the engine does with a damaged chunk.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import atomic_write
from engine.catalog import ChunkMeta, chunk_meta, derive_links
from engine.history import History, Step
from engine.lod import LodLinks, StepLinks
from engine.splats import SplatChunk
from saves.errors import SaveFormatError
from saves.format import (WorldIndex, _encode_links, _encode_meta, _encode_step, _guarded,
                          _open_regular, _write_all, build_index)
from saves.limits import LoadLimits
from saves.reader import IndexedReader
from saves.records import (FILE_HEADER, RECORD_HEADER, TAG_HEAD, FileSource,
                           encode_file_header, encode_json_record, scan_records)
from saves.steps import head_to_json


class WorldFile:
    """An open world file: its history and metadata in memory, payloads on disk. Thread-safe
    for reading (positioned reads); appending goes through `saves.WorldWriter` (any process),
    which never changes the bytes this index points at."""

    def __init__(self, path: Path, fd: int, size: int, index: WorldIndex,
                 reader: IndexedReader) -> None:
        self.path = path
        self.fd = fd
        self.file_bytes = size
        self.index = index
        self.reader = reader

    # ---- what the file says ---------------------------------------------------------------
    @property
    def history(self) -> History:
        return self.index.history

    @property
    def meta(self) -> dict[str, Any]:
        return self.index.meta

    @property
    def format_version(self) -> int:
        return self.index.version

    @property
    def chunk_ids(self) -> frozenset[int]:
        """Every chunk a committed step made."""
        return frozenset(self.index.owner)

    @property
    def first_free_chunk_id(self) -> int:
        """An id past every chunk stored (committed or not): where new chunks may start."""
        return max(self.index.chunks, default=-1) + 1

    @property
    def source(self) -> IndexedReader:
        """The file as an `engine.catalog.WorldSource` (what `engine.scene` streams from)."""
        return self.reader

    def chunk_meta(self, chunk_id: int) -> ChunkMeta:
        return self.reader.meta(chunk_id)

    def read_chunk(self, chunk_id: int) -> SplatChunk:
        return self.reader.read_chunk(chunk_id)

    def read_links(self, chunk_id: int, child_step: int | None) -> LodLinks:
        return self.reader.read_links(chunk_id, child_step)

    def step_links(self, step_id: int) -> StepLinks:
        return self.reader.step_links(step_id)

    # ---- lifetime -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> "WorldFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            try:
                self.close()
            except Exception:  # interpreter shutdown: os may be gone already
                pass


def open_world(path: str | os.PathLike[str], limits: LoadLimits = LoadLimits()) -> WorldFile:
    """Open a world file by its index (every record header, step, chunk sub-header and link
    table checked, no payload read; a version-1 file is migrated: see the module docstring).
    Raises only `SaveFormatError`; the caller closes the result."""
    return _guarded(lambda: _open(Path(path), limits))


def _open(path: Path, limits: LoadLimits) -> WorldFile:
    fd, size = _open_regular(path, os.O_RDONLY, limits.max_file_bytes)
    try:
        scan = scan_records(FileSource(fd, size), limits, verify_chunk_crc=False)
        index = build_index(scan, limits)
        del scan
        reader = IndexedReader(fd, index)
        if index.version < 2:
            reader = _migrated_reader(fd, index)
        return WorldFile(path, fd, size, index, reader)
    except BaseException:
        os.close(fd)
        raise


def _migrated_reader(fd: int, index: WorldIndex) -> IndexedReader:
    """A version-1 file's reader: links derived from the payloads (every chunk read once per
    step whose camera sees it), chunk metadata from the chunks themselves."""
    plain = IndexedReader(fd, index)
    facts: dict[int, tuple[int, np.ndarray, np.ndarray, tuple[float, float, float]]] = {}

    def read(cid: int) -> SplatChunk:
        chunk = plain.read_chunk(cid)
        if cid not in facts:
            meta = chunk_meta(cid, chunk, (0.0, 0.0))
            facts[cid] = (meta.nbytes, meta.lo, meta.hi, meta.s_native)
        return chunk

    derived = derive_links(index.history, read)
    metas = {}
    for cid, sid in index.owner.items():
        nbytes, lo, hi, stats = facts[cid]
        desc = index.chunks[cid][0]
        metas[cid] = ChunkMeta(cid, desc.level, desc.n, nbytes, lo, hi, stats,
                               derived[sid].bands[cid])
    return IndexedReader(fd, index, derived, metas)


# ---- copies -------------------------------------------------------------------------------
def copy_world(src: WorldFile, out: str | os.PathLike[str]) -> int:
    """Write `src`'s committed steps to a new file at `out` (atomically: `out` is the old file
    or the complete new one), in the current format version; returns the bytes written.
    Every chunk is checked (checksum, arrays) on the way through. Raises SaveFormatError for
    damaged data in `src` (nothing is written then), OSError for the output."""
    return _guarded(lambda: _copy(src, Path(out)))


def _copy(src: WorldFile, out: Path) -> int:
    index = src.index
    limits = LoadLimits()
    order = _parents_first(index.history)
    written = [FILE_HEADER.size]
    with atomic_write(out) as fd:
        def put(parts) -> None:
            _write_all(fd, [memoryview(p) for p in parts])
            written[0] += sum(memoryview(p).nbytes for p in parts)

        put([encode_file_header()])
        put(_encode_meta(index.meta, limits))
        for step in order:
            for cid in step.chunk_ids:
                src.reader.read_chunk(cid)  # checksum, bounded decoding, validation
                rec = index.chunks[cid][1]
                put([_raw_record(src.fd, rec.offset, RECORD_HEADER.size + rec.length)])
            if index.version >= 2:
                table = index.links[step.id]
                if len(table.entries):  # (a step that links nothing has no LINK record)
                    raw = _raw_record(src.fd, table.payload_offset - RECORD_HEADER.size, None)
                    src.reader.step_links(step.id)  # every array's checksum and values
                    put([raw])
            else:
                chunks = {cid: src.reader.read_chunk(cid) for cid in step.chunk_ids}
                for record in _encode_links(step, chunks, src.reader.step_links(step.id),
                                            limits)[1]:
                    put(record)
            put(_encode_step(step, False, limits))
        if index.history.head is not None:
            put(encode_json_record(TAG_HEAD, head_to_json(index.history.head)))
    return written[0]


def _raw_record(fd: int, offset: int, n: int | None) -> bytes:
    """One record's bytes (header and payload) read from `fd`, both checksums checked."""
    head = os.pread(fd, RECORD_HEADER.size, offset)
    if len(head) != RECORD_HEADER.size:
        raise SaveFormatError("the world file is shorter than when it was opened")
    tag, flags, length, crc, head_crc = RECORD_HEADER.unpack(head)
    if head_crc != zlib.crc32(head[:20]) or (n is not None and n != RECORD_HEADER.size + length):
        raise SaveFormatError(f"record at byte {offset} changed on disk")
    data = os.pread(fd, RECORD_HEADER.size + length, offset)
    if len(data) != RECORD_HEADER.size + length or zlib.crc32(data[RECORD_HEADER.size:]) != crc:
        raise SaveFormatError(f"{tag.decode('latin-1')} record at byte {offset} is corrupt "
                              "(checksum mismatch)")
    return data


def _parents_first(history: History) -> list[Step]:
    kids: dict[int | None, list[Step]] = {}
    for step in history:
        kids.setdefault(step.parent, []).append(step)
    order: list[Step] = []
    todo = list(reversed(kids.get(None, [])))
    while todo:
        step = todo.pop()
        order.append(step)
        todo.extend(reversed(kids.get(step.id, [])))
    return order


def upgrade_world(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                  limits: LoadLimits = LoadLimits()) -> int:
    """Rewrite an older-version world file in the current version (at `out`, default: over
    itself, atomically), with its derived links stored. Returns the bytes written."""
    with open_world(path, limits) as src:
        return copy_world(src, path if out is None else out)

