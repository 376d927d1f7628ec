"""Reading a world file's chunks and links on demand, each checked when it is read.

Owns: `IndexedReader`, the `engine.catalog.WorldSource` of an indexed `.wzs` file: chunk
metadata from the LINK entry tables (boxes, bands, native-scale summaries) and the CHNK
sub-headers, and positioned reads of one chunk's payload (record header and payload
checksums, then `saves.chunks.decode_chunk`'s bounded decoding and validation) or one link
array (its own checksum, its values). `os.pread` on a shared descriptor: any thread may read.
Does not own: building the index (`saves.format`), opening and migrating files
(`saves.world_file`), or what is done with a damaged chunk (the caller refuses that chunk).
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Mapping

import numpy as np

from engine.catalog import ChunkMeta, LINK_BYTES_PER_SPLAT
from engine.lod import LodLinks, StepLinks
from engine.splats import SplatChunk
from saves.chunks import ChunkDesc, decode_chunk
from saves.errors import SaveFormatError
from saves.links import KIND_CHILD, KIND_ROOT, LinkTable, decode_link_array
from saves.records import RECORD_HEADER, TAG_CHNK


class IndexedReader:
    """Chunks and links of one file, read on demand through `fd` (not owned: the opener
    closes it). `index`: what `saves.format.build_index` made of the file's records;
    `derived`: the links of a file that stores none (format version 1), computed once by
    the opener, with the metadata of its chunks."""

    def __init__(self, fd: int, index: Any, derived: Mapping[int, StepLinks] | None = None,
                 metas: Mapping[int, ChunkMeta] | None = None) -> None:
        self.fd = fd
        self.index = index
        self.derived = derived
        self._metas: dict[int, ChunkMeta] = dict(metas or {})
        self._rows: dict[int, dict[int, int]] = {}  # step id -> chunk id -> table row

    # ---- metadata -----------------------------------------------------------------------
    def meta(self, chunk_id: int) -> ChunkMeta:
        meta = self._metas.get(chunk_id)
        if meta is not None:
            return meta
        desc = self._desc(chunk_id)
        table, k = self._entry(self.index.owner[chunk_id], chunk_id)
        e = table.entries[k]
        meta = ChunkMeta(chunk_id, desc.level, desc.n,
                         desc.raw_nbytes + LINK_BYTES_PER_SPLAT * desc.n,
                         np.array(e["lo"], np.float64), np.array(e["hi"], np.float64),
                         (float(e["s_lo"]), float(e["s_mid"]), float(e["s_hi"])),
                         (float(e["band_lo"]), float(e["band_hi"])))
        self._metas[chunk_id] = meta
        return meta

    def covers(self, step_id: int) -> Mapping[int, tuple[float, float]]:
        if self.derived is not None:
            links = self.derived[step_id]
            return {cid: links.bands[cid] for cid in links.children}
        table = self.index.links[step_id]
        e = table.entries
        rows = np.flatnonzero(e["kind"] == KIND_CHILD)
        return {int(e["chunk_id"][k]): (float(e["band_lo"][k]), float(e["band_hi"][k]))
                for k in rows.tolist()}

    # ---- payloads -----------------------------------------------------------------------
    def read_chunk(self, chunk_id: int) -> SplatChunk:
        """The chunk's arrays, read now and checked: SaveFormatError if the bytes on disk
        are not what the index promised (damaged or changed since the file was opened)."""
        desc = self._desc(chunk_id)
        rec = self.index.chunks[chunk_id][1]
        data = self._pread(rec.offset, RECORD_HEADER.size + rec.length, f"chunk {chunk_id}")
        tag, flags, length, crc, head_crc = RECORD_HEADER.unpack_from(data)
        if head_crc != zlib.crc32(data[:20]) or tag != TAG_CHNK.encode() or flags \
                or length != rec.length:
            raise SaveFormatError(f"chunk {chunk_id}: its record header changed on disk")
        payload = memoryview(data)[RECORD_HEADER.size:]
        if zlib.crc32(payload) != crc:
            raise SaveFormatError(f"chunk {chunk_id} is corrupt (checksum mismatch)")
        return decode_chunk(desc, np.frombuffer(payload, np.uint8))

    def read_links(self, chunk_id: int, child_step: int | None) -> LodLinks:
        if self.derived is not None:
            n = self._desc(chunk_id).n
            base = self.derived[self.index.owner[chunk_id]].links_of(chunk_id, n)
            if child_step is None:
                return base
            return LodLinks(base.s_parent, self.derived[child_step].children[chunk_id])
        n = self._desc(chunk_id).n
        table, k = self._entry(self.index.owner[chunk_id], chunk_id)
        if table.entries["kind"][k] == KIND_ROOT:
            s_parent = np.full(n, np.inf, np.float32)
        else:
            s_parent = self._array(table, k, f"links of chunk {chunk_id}")
        if child_step is None:
            return LodLinks(s_parent, np.zeros(n, np.float32))
        table, k = self._entry(child_step, chunk_id)
        if table.entries["kind"][k] != KIND_CHILD:
            raise SaveFormatError(f"step {child_step} does not cover chunk {chunk_id}")
        return LodLinks(s_parent, self._array(table, k, f"links of chunk {chunk_id}"))

    def step_links(self, step_id: int) -> StepLinks:
        """Every array of one step's links (for copies and full loads)."""
        if self.derived is not None:
            return self.derived[step_id]
        table = self.index.links[step_id]
        parents, children, bands = {}, {}, {}
        for k, e in enumerate(table.entries):
            cid, kind = int(e["chunk_id"]), int(e["kind"])
            bands[cid] = (float(e["band_lo"]), float(e["band_hi"]))
            arr = None if kind == KIND_ROOT else self._array(table, k, f"step {step_id} links")
            if kind == KIND_CHILD:
                children[cid] = arr
            else:
                parents[cid] = arr
        return StepLinks(parents, children, bands)

    # ---- internals ----------------------------------------------------------------------
    def _desc(self, chunk_id: int) -> ChunkDesc:
        if chunk_id not in self.index.owner:
            raise KeyError(f"no chunk {chunk_id} in this world")
        return self.index.chunks[chunk_id][0]

    def _entry(self, step_id: int, chunk_id: int) -> tuple[LinkTable, int]:
        table = self.index.links[step_id]
        rows = self._rows.get(step_id)
        if rows is None:
            rows = {int(c): k for k, c in enumerate(table.entries["chunk_id"].tolist())}
            self._rows[step_id] = rows
        if chunk_id not in rows:
            raise SaveFormatError(f"step {step_id} holds no links for chunk {chunk_id}")
        return table, rows[chunk_id]

    def _array(self, table: LinkTable, k: int, what: str) -> np.ndarray:
        e = table.entries[k]
        n = int(e["n"])
        data = self._pread(table.payload_offset + int(table.offsets[k]), 4 * n, what)
        return decode_link_array(data, int(e["kind"]), n, int(e["crc"]), what)

    def _pread(self, offset: int, n: int, what: str) -> bytes:
        try:
            data = os.pread(self.fd, n, offset)
        except OSError as exc:
            raise SaveFormatError(f"{what}: cannot read ({exc.strerror or exc})") from None
        if len(data) != n:
            raise SaveFormatError(f"{what}: the world file is shorter than when it was opened")
        return data

