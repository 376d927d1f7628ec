"""LINK payloads: the LoD links one step decided (`engine.lod.StepLinks`) <-> bytes.

Owns: the LINK payload layout (saves/FORMAT.md), encoding a step's links with the metadata
a reader needs to cull and budget its chunks without their arrays (box, native-scale summary,
band), parsing the entry table (checked against its own checksum, the record length and the
limits before anything else is read), and reading one entry's array, checked when it is read
(its checksum, its values).
Does not own: which chunks a step may name (`saves.format` checks entries against the
chunks and steps), record framing (`saves.records`), computing links (`engine.lod`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from engine.catalog import chunk_meta
from engine.lod import StepLinks
from engine.splats import SplatChunk
from saves.errors import SaveFormatError
from saves.limits import LoadLimits
from saves.records import ALIGN, Buffer

LINK_HEADER = struct.Struct("<QII")  # step id, entry count, crc32 of the entry table
ENTRY = np.dtype([("chunk_id", "<u8"), ("kind", "<u4"), ("n", "<u4"), ("crc", "<u4"),
                  ("s_lo", "<f4"), ("s_mid", "<f4"), ("s_hi", "<f4"),
                  ("band_lo", "<f8"), ("band_hi", "<f8"), ("lo", "<f8", (3,)),
                  ("hi", "<f8", (3,))])
assert ENTRY.itemsize == 96 and LINK_HEADER.size == 16
KIND_ROOT = 1  # a chunk of this step with no coarser level: s_parent = +inf, no array
KIND_PARENT = 2  # a chunk of this step: its s_parent [n]
KIND_CHILD = 3  # an older chunk this step covers: its whole s_child [n] on this path
MAX_ID = 1 << 53
MAX_ABS_COORD = 1e13  # origins are within 1e12 (engine.splats); boxes add 3 sigma


@dataclass(frozen=True, eq=False)
class LinkTable:
    """A checked LINK entry table; array offsets are from the start of the payload."""

    step_id: int
    entries: np.ndarray  # [K] ENTRY
    offsets: np.ndarray  # [K] int64 (0 for a root entry)
    payload_offset: int = 0  # file offset of the payload (set by the reader)

    def row(self, chunk_id: int) -> int | None:
        hits = np.flatnonzero(self.entries["chunk_id"] == chunk_id)
        return int(hits[0]) if len(hits) else None


def empty_link_table(step_id: int) -> LinkTable:
    """The links of a step that made no chunks and covers none: no LINK record is stored."""
    return LinkTable(step_id, _NO_ENTRIES, _NO_OFFSETS)


def _pad(n: int) -> int:
    return n + (-n) % ALIGN


# ---- encoding --------------------------------------------------------------------------
def encode_links(step_id: int, chunk_ids: Sequence[int], chunks: Mapping[int, SplatChunk],
                 links: StepLinks) -> list[bytes | np.ndarray]:
    """LINK payload parts for a step that made `chunks` (in `chunk_ids` order) and decided
    `links`. ValueError if the links do not fit the chunks."""
    if set(links.parents) != set(chunk_ids):
        raise ValueError(f"step {step_id}: links name other chunks than the step's own")
    rows, arrays = [], []
    for cid in chunk_ids:
        chunk = chunks[cid]
        meta = chunk_meta(cid, chunk, links.bands[cid])
        s_parent = links.parents[cid]
        kind = KIND_ROOT if s_parent is None else KIND_PARENT
        arr = None if s_parent is None else _checked(s_parent, len(chunk), step_id, cid)
        rows.append((cid, kind, len(chunk), arr, meta.s_native, meta.band, meta.lo, meta.hi))
        arrays.append(arr)
    for cid in sorted(links.children):
        arr = _checked(links.children[cid], len(links.children[cid]), step_id, cid)
        rows.append((cid, KIND_CHILD, len(arr), arr, (0.0, 0.0, 0.0), links.bands[cid],
                     np.zeros(3), np.zeros(3)))
        arrays.append(arr)
    table = np.zeros(len(rows), ENTRY)
    for k, (cid, kind, n, arr, stats, band, lo, hi) in enumerate(rows):
        table[k] = (cid, kind, n, 0 if arr is None else zlib.crc32(arr.view(np.uint8)),
                    *stats, *band, lo, hi)
    parts: list[bytes | np.ndarray] = [
        LINK_HEADER.pack(step_id, len(rows), zlib.crc32(table.view(np.uint8))), table]
    for arr in arrays:
        if arr is not None:
            parts.append(arr)
            if arr.nbytes % ALIGN:
                parts.append(bytes((-arr.nbytes) % ALIGN))
    return parts


def _checked(values: np.ndarray, n: int, step_id: int, cid: int) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype="<f4")
    if arr.shape != (n,):
        raise ValueError(f"step {step_id}: links of chunk {cid} have shape {arr.shape}, "
                         f"expected ({n},)")
    return arr


# ---- decoding --------------------------------------------------------------------------
def parse_link_table(head: Buffer, read_table, length: int, version: int, limits: LoadLimits,
                     where: str) -> LinkTable:
    """The entry table of a LINK payload of `length` bytes: `head` is its first 16 bytes,
    `read_table(n)` reads the n bytes after them. Everything the table declares is checked
    against its checksum, the payload length and the limits; arrays are read later."""
    if version < 2:
        raise SaveFormatError(f"{where}: LINK records need format version 2")
    if length < LINK_HEADER.size:
        raise SaveFormatError(f"{where} is too short")
    step_id, count, crc = LINK_HEADER.unpack(bytes(head))
    if step_id >= MAX_ID:
        raise SaveFormatError(f"{where}: step id out of range")
    if count > limits.max_chunks or ENTRY.itemsize * count > length - LINK_HEADER.size:
        raise SaveFormatError(f"{where} declares {count} entries")
    raw = bytes(read_table(ENTRY.itemsize * count))
    if zlib.crc32(raw) != crc:
        raise SaveFormatError(f"{where} is corrupt (entry table checksum mismatch)")
    if count == 0:  # a step that made no chunks and linked none (most of a deep history)
        if length != LINK_HEADER.size:
            raise SaveFormatError(f"{where}: arrays do not fill the record exactly")
        return empty_link_table(int(step_id))
    entries = np.frombuffer(raw, ENTRY).copy()
    kind, n = entries["kind"], entries["n"].astype(np.int64)
    if not np.isin(kind, (KIND_ROOT, KIND_PARENT, KIND_CHILD)).all():
        raise SaveFormatError(f"{where}: unknown entry kind")
    if (entries["chunk_id"] >= MAX_ID).any() or len(np.unique(entries["chunk_id"])) != count:
        raise SaveFormatError(f"{where}: chunk ids out of range or named twice")
    if (n > limits.max_splats_per_chunk).any():
        raise SaveFormatError(f"{where}: an entry holds more than "
                              f"{limits.max_splats_per_chunk} splats")
    if ((kind[:-1] == KIND_CHILD) & (kind[1:] != KIND_CHILD)).any():
        raise SaveFormatError(f"{where}: entries out of order")
    _check_numbers(entries, where)
    sizes = np.where(kind == KIND_ROOT, 0, 4 * n)
    padded = sizes + (-sizes) % ALIGN
    start = LINK_HEADER.size + ENTRY.itemsize * count
    ends = start + np.cumsum(padded)
    if (ends[-1] if count else start) != length:
        raise SaveFormatError(f"{where}: arrays do not fill the record exactly")
    offsets = np.where(kind == KIND_ROOT, 0, ends - padded)
    if (kind == KIND_ROOT).any() and (entries["crc"][kind == KIND_ROOT] != 0).any():
        raise SaveFormatError(f"{where}: a root entry has an array checksum")
    return LinkTable(int(step_id), entries, offsets.astype(np.int64))


_NO_ENTRIES = np.zeros(0, ENTRY)
_NO_ENTRIES.flags.writeable = False
_NO_OFFSETS = np.zeros(0, np.int64)
_NO_OFFSETS.flags.writeable = False


def _check_numbers(entries: np.ndarray, where: str) -> None:
    band = np.stack([entries["band_lo"], entries["band_hi"]], axis=1)
    if np.isnan(band).any() or (band < 0).any():
        raise SaveFormatError(f"{where}: a band is not a scale")
    own = entries["kind"] != KIND_CHILD
    stats = np.stack([entries["s_lo"], entries["s_mid"], entries["s_hi"]], axis=1)
    boxes = np.concatenate([entries["lo"], entries["hi"]], axis=1)
    if not (np.isfinite(stats).all() and np.isfinite(boxes).all()):
        raise SaveFormatError(f"{where}: a box or scale summary is not finite")
    if (stats[~own] != 0).any() or (boxes[~own] != 0).any():
        raise SaveFormatError(f"{where}: an older chunk's entry carries a box")
    full = own & (entries["n"] > 0)
    if (stats[full] <= 0).any() or (np.diff(stats[full], axis=1) < 0).any():
        raise SaveFormatError(f"{where}: native scales out of order")
    if (np.abs(boxes) > MAX_ABS_COORD).any() or (entries["lo"][own] > entries["hi"][own]).any():
        raise SaveFormatError(f"{where}: a chunk box is absurd")


def decode_link_array(data: Buffer, kind: int, n: int, crc: int, where: str) -> np.ndarray:
    """[n] float32 of one entry, from its `4 n` stored bytes, checked: its checksum, and
    s_parent > 0 (+inf allowed) or s_child finite and >= 0."""
    if zlib.crc32(data) != crc:
        raise SaveFormatError(f"{where} is corrupt (checksum mismatch)")
    arr = np.frombuffer(data, "<f4", count=n).astype(np.float32)
    with np.errstate(invalid="ignore"):
        if kind == KIND_PARENT:
            bad = np.isnan(arr).any() or (arr <= 0).any()
        else:
            bad = not np.isfinite(arr).all() or (arr < 0).any()
    if bad:
        raise SaveFormatError(f"{where} holds impossible scales")
    return arr


def band_of(entry: np.void) -> tuple[float, float]:
    return float(entry["band_lo"]), float(entry["band_hi"])

