"""The append-only world file (`.wzs`): load, save atomically, append steps.

Owns: the meaning of the record sequence (commit semantics, orphans, torn tails, ids, head),
format-version migration, `load_world` (hostile input -> `LoadedWorld` or `SaveFormatError`,
nothing else), `save_world` (atomic new file) and `WorldWriter` (O(step) appends, crash-safe).
The byte layout is documented in saves/FORMAT.md. Since format version 2 every step carries
its LoD links (a LINK record before its STEP record, `saves.links`): the writers compute them
at append time from the older chunks the new level's camera sees (`engine.catalog.
link_on_path`), so opening a world never recomputes them from every payload.
Does not own: record framing (`saves.records`), chunk payloads (`saves.chunks`), step JSON
(`saves.steps`), link payloads (`saves.links`), reading payloads on demand (`saves.reader`,
`saves.world_file`), PLY import/export (`saves.ply`), or the history rules
(`engine.history`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from engine.catalog import derive_links, link_on_path
from engine.history import History, HistoryError, Step
from engine.lod import StepLinks
from engine.textfiles import open_regular
from engine.splats import SplatChunk
from engine.atomic import atomic_write, write_all
from saves.chunks import CODECS, ChunkDesc, decode_chunk, encode_chunk, parse_chunk_header
from saves.errors import SaveFormatError, WorldBusyError
from saves.limits import LoadLimits
from saves.links import (KIND_CHILD, KIND_ROOT, LINK_HEADER, LinkTable, decode_link_array,
                         empty_link_table, encode_links, parse_link_table)
from saves.reader import IndexedReader
from saves.records import (
    CHUNK_SUBHEADER_LEN, FILE_HEADER, FORMAT_VERSION, TAG_CHNK, TAG_HEAD, TAG_LINK, TAG_META,
    TAG_STEP, BufferSource, FileSource, RawRecord, Scan, Source, check_json_value, dump_json,
    encode_file_header, encode_json_record, encode_record, parse_json, read_whole_file,
    record_nbytes, scan_records,
)
from saves.steps import head_from_json, head_to_json, meta_from_json, step_from_json, step_to_json

try:  # advisory lock against two writers; absent on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "LoadLimits", "LoadedWorld", "SaveFormatError",
           "WorldBusyError", "WorldInfo", "WorldWriter", "load_world", "read_world_info",
           "save_world"]

Migration = Callable[[list[RawRecord]], list[RawRecord]]


def _upgrade_1_to_2(records: list[RawRecord]) -> list[RawRecord]:
    """Version 1 records are version 2 records whose steps carry no LINK record: their links
    are derived from the payloads when the world is opened for display
    (`saves.world_file.WorldFile`) and stored by `upgrade_world` / `compact`."""
    return records


# version v -> function turning the parsed records of a version-v file into version v+1 ones.
MIGRATIONS: Mapping[int, Migration] = MappingProxyType({1: _upgrade_1_to_2})


# ---- the result ------------------------------------------------------------------------
@dataclass
class LoadedWorld:
    history: History
    chunks: dict[int, SplatChunk]  # every chunk a committed step references
    meta: dict[str, Any]
    path: Path
    ignored_tail_bytes: int = 0  # a torn last record (a crash while appending), not loaded
    orphan_chunk_ids: tuple[int, ...] = ()  # complete chunks no committed step references
    format_version: int = FORMAT_VERSION  # as written in the file (before any migration)
    # step id -> the LoD links its append decided, as stored (None: a version-1 file, which
    # stores none; `engine.scene.build_scene` derives them)
    links: dict[int, StepLinks] | None = None


# ---- the record index (shared by the loader and the appender) ---------------------------
@dataclass
class Budget:
    """Running totals checked against `LoadLimits`; `error` is what exceeding one raises."""

    limits: LoadLimits
    error: type[Exception] = SaveFormatError
    file_bytes: int | None = None  # bounds the decoded bytes by the file's size when known
    chunks: int = 0
    splats: int = 0
    decoded_bytes: int = 0

    @property
    def max_decoded_bytes(self) -> int:
        if self.file_bytes is None:
            return self.limits.max_decoded_bytes
        by_size = int(self.limits.max_decoded_per_file_byte * self.file_bytes) \
            + self.limits.decoded_slack_bytes
        return min(self.limits.max_decoded_bytes, by_size)

    def add_chunk(self) -> None:
        self.chunks += 1
        if self.chunks > self.limits.max_chunks:
            raise self.error(f"world holds more than {self.limits.max_chunks} chunks")

    def claim(self, desc: ChunkDesc) -> None:
        self.splats += desc.n
        self.decoded_bytes += desc.raw_nbytes
        if self.splats > self.limits.max_splats_total:
            raise self.error(f"world holds more than {self.limits.max_splats_total} splats")
        if self.decoded_bytes > self.max_decoded_bytes:
            raise self.error(f"world decodes to more than {self.max_decoded_bytes} bytes "
                             f"({self.limits.max_decoded_per_file_byte:g}x its file size plus "
                             f"{self.limits.decoded_slack_bytes >> 20} MiB)")


@dataclass
class WorldIndex:
    """What the records of a file say, before any chunk array is decoded."""

    history: History
    meta: dict[str, Any]
    chunks: dict[int, tuple[ChunkDesc, RawRecord]]  # every complete CHNK record (body dropped)
    owner: dict[int, int]  # chunk id -> the step that appended it
    budget: Budget
    n_records: int
    json_bytes: int  # STEP/HEAD/META payload bytes
    end_committed: int  # end of the last STEP/HEAD/META record (or of the file header)
    torn_bytes: int  # bytes of a torn last record (not part of any record)
    version: int = FORMAT_VERSION  # as written in the file
    links: dict[int, LinkTable] = field(default_factory=dict)  # committed step -> its LINK
    pending_links: dict[int, LinkTable] = field(default_factory=dict)  # LINK, no STEP yet

    def orphans(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.chunks) - set(self.owner)))


def migrate(version: int, records: list[RawRecord], migrations: Mapping[int, Migration],
            current: int) -> list[RawRecord]:
    while version < current:
        if version not in migrations:
            raise SaveFormatError(f"no upgrade from world format version {version}")
        records = migrations[version](records)
        version += 1
    return records


def build_index(scan: Scan, limits: LoadLimits, migrations: Mapping[int, Migration] = MIGRATIONS,
                current: int = FORMAT_VERSION) -> WorldIndex:
    """Replay the records in file order: a step commits when its STEP record is complete."""
    records = migrate(scan.version, scan.records, migrations, current)
    index = WorldIndex(History(), {}, {}, {}, Budget(limits, file_bytes=scan.size), len(records),
                       scan.json_bytes, FILE_HEADER.size, scan.torn_bytes, scan.version)
    for rec in records:
        if rec.tag == TAG_CHNK:
            _index_chunk(index, rec, limits)
            continue
        if rec.tag == TAG_LINK:
            _index_link(index, rec.body)
            continue
        if rec.tag == TAG_STEP:
            _index_step(index, rec, limits)
        elif rec.tag == TAG_HEAD:
            _index_head(index, rec)
        elif rec.tag == TAG_META:
            index.meta = meta_from_json(rec.body)
        index.end_committed = rec.end
    return index


def _index_chunk(index: WorldIndex, rec: RawRecord, limits: LoadLimits) -> None:
    desc = parse_chunk_header(rec.body, rec.length, rec.data_start, limits)
    if desc.id in index.chunks:
        raise SaveFormatError(f"chunk id {desc.id} is stored twice")
    index.budget.add_chunk()
    index.chunks[desc.id] = (desc, RawRecord(rec.tag, rec.offset, rec.length, None, rec.data_start))


def _index_step(index: WorldIndex, rec: RawRecord, limits: LoadLimits) -> None:
    step, move_head = step_from_json(rec.body, limits)
    if len(index.history) >= limits.max_steps:
        raise SaveFormatError(f"world holds more than {limits.max_steps} steps")
    if step.id in index.history.steps:
        raise SaveFormatError(f"step id {step.id} is stored twice")
    for cid in step.chunk_ids:
        if cid not in index.chunks:
            raise SaveFormatError(f"step {step.id} references chunk {cid}, not stored before it")
        if cid in index.owner:
            raise SaveFormatError(f"chunk {cid} is claimed by steps {index.owner[cid]} and {step.id}")
        index.owner[cid] = step.id
        index.budget.claim(index.chunks[cid][0])
    try:
        index.history.add(step, move_head=move_head)
    except HistoryError as exc:  # parent not stored before it (so cycles are impossible)
        raise SaveFormatError(str(exc)) from None
    if index.version >= 2:
        _claim_links(index, step)


def _index_link(index: WorldIndex, table: LinkTable) -> None:
    """A LINK record: kept until its step's STEP record commits it. Its entries must name
    chunks stored before it, with their splat counts."""
    sid = table.step_id
    if sid in index.history.steps or sid in index.pending_links:
        raise SaveFormatError(f"links of step {sid} are stored twice or after the step")
    for cid, n in zip(table.entries["chunk_id"].tolist(), table.entries["n"].tolist()):
        entry = index.chunks.get(cid)
        if entry is None:
            raise SaveFormatError(f"links of step {sid} name chunk {cid}, not stored before them")
        if entry[0].n != n:
            raise SaveFormatError(f"links of step {sid} give chunk {cid} {n} splats, "
                                  f"it has {entry[0].n}")
    index.pending_links[sid] = table


def _claim_links(index: WorldIndex, step: Step) -> None:
    """A version-2 step commits with its LINK record: one entry for each of its own chunks,
    and the others for chunks of earlier steps (the ones it covers)."""
    table = index.pending_links.pop(step.id, None)
    if table is None:
        if step.chunk_ids:  # only a step that made nothing may go without (it links nothing)
            raise SaveFormatError(f"step {step.id} has no LINK record before it")
        index.links[step.id] = empty_link_table(step.id)
        return
    if not len(table.entries) and not step.chunk_ids:  # (quick: most of a deep history)
        index.links[step.id] = table
        return
    kinds = table.entries["kind"]
    ids = table.entries["chunk_id"]
    own = sorted(ids[kinds != KIND_CHILD].tolist())
    if own != sorted(step.chunk_ids):
        raise SaveFormatError(f"links of step {step.id} do not name exactly its own chunks")
    for cid in ids[kinds == KIND_CHILD].tolist():
        if index.owner.get(cid, step.id) == step.id:
            raise SaveFormatError(f"links of step {step.id} cover chunk {cid}, which no "
                                  "earlier step made")
    index.links[step.id] = table


def _index_head(index: WorldIndex, rec: RawRecord) -> None:
    head = head_from_json(rec.body)
    if head not in index.history.steps:
        raise SaveFormatError(f"head points to step {head}, which does not exist")
    index.history.head = head


# ---- loading ---------------------------------------------------------------------------
def _open_regular(path: Path, flags: int, max_bytes: int) -> tuple[int, int]:
    """Open without blocking on FIFOs/devices; refuse anything but a regular file. -> (fd, size)"""
    return open_regular(path, flags, max_bytes, SaveFormatError, "world file")


def load_world(path: str | os.PathLike[str], limits: LoadLimits = LoadLimits()) -> LoadedWorld:
    """Read and fully validate a world file. Raises only `SaveFormatError`."""
    return _guarded(lambda: _load(Path(path), limits, MIGRATIONS, FORMAT_VERSION))


@dataclass
class WorldInfo:
    """What a world file says without decoding a single chunk array."""

    history: History
    chunks: dict[int, ChunkDesc]  # every chunk a committed step references: its header
    meta: dict[str, Any]
    path: Path
    file_bytes: int
    ignored_tail_bytes: int = 0
    orphan_chunk_ids: tuple[int, ...] = ()
    format_version: int = FORMAT_VERSION


def read_world_info(path: str | os.PathLike[str], limits: LoadLimits = LoadLimits()) -> WorldInfo:
    """Validate a world file's records (record headers, the step/head/meta JSON and its
    checksums, the steps, every chunk header, every limit) without reading chunk payloads:
    positioned reads of the headers, so time and memory do not grow with the payload bytes
    (`info`, `history`, `checkout`). The payloads are checked when they are loaded. Raises
    only `SaveFormatError`."""
    return _guarded(lambda: _read_info(Path(path), limits))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused meanwhile, for work that makes many small objects
    over a long history and keeps them, with no cycles to collect: reading one (~10 objects a
    step; the collector's passes over the growing heap took ~40% of opening a 100,000-step
    history), or `info` and `history` working over it (~15% of `info`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _guarded(read: Callable[[], Any]) -> Any:
    """`read()`, with every failure turned into one `SaveFormatError` line, the collector
    paused (`collector_paused`). What was read is then frozen out of later collections
    (`gc.freeze`: reference counting still frees it), so the caller's own work over a long
    history does not pay for those passes either."""
    with collector_paused():
        try:
            return read()
        except SaveFormatError:
            raise
        except MemoryError:
            raise SaveFormatError("not enough memory to load this world") from None
        except RecursionError:
            raise SaveFormatError("world file nests too deeply") from None
        except OSError as exc:
            raise SaveFormatError(f"cannot read world file: {exc.strerror or exc}") from None
        except Exception as exc:  # a bug or an unforeseen input: still one clean line
            raise SaveFormatError(f"unreadable world file ({type(exc).__name__}: {exc})") \
                from exc
        finally:
            gc.freeze()


def _read_info(path: Path, limits: LoadLimits) -> WorldInfo:
    fd, size = _open_regular(path, os.O_RDONLY, limits.max_file_bytes)
    try:
        scan = scan_records(FileSource(fd, size), limits, verify_chunk_crc=False)
    finally:
        os.close(fd)
    index = build_index(scan, limits)
    chunks = {cid: index.chunks[cid][0] for cid in index.owner}
    return WorldInfo(index.history, chunks, index.meta, path, size, index.torn_bytes,
                     index.orphans(), scan.version)


def _load(path: Path, limits: LoadLimits, migrations: Mapping[int, Migration],
          current: int) -> LoadedWorld:
    fd, size = _open_regular(path, os.O_RDONLY, limits.max_file_bytes)
    try:
        buf = read_whole_file(fd, size)  # [size] uint8, the one read of the file
    finally:
        os.close(fd)
    src = BufferSource(buf)
    scan = scan_records(src, limits)
    version = scan.version
    index = build_index(scan, limits, migrations, current)
    del scan  # drop the parsed JSON bodies before decoding arrays
    chunks = {}
    for cid in sorted(index.owner, key=lambda c: index.chunks[c][1].offset):
        desc, rec = index.chunks[cid]
        chunks[cid] = decode_chunk(desc, buf[rec.payload_offset:rec.end])
    links = None
    if index.version >= 2:
        links = {sid: _links_in_buffer(table, buf) for sid, table in index.links.items()}
    return LoadedWorld(index.history, chunks, index.meta, path, index.torn_bytes,
                       index.orphans(), version, links)


def _links_in_buffer(table: LinkTable, buf: np.ndarray) -> StepLinks:
    """Every array of a LINK record from the whole file in memory, each checked."""
    parents, children, bands = {}, {}, {}
    for k, e in enumerate(table.entries):
        cid, kind, n = int(e["chunk_id"]), int(e["kind"]), int(e["n"])
        bands[cid] = (float(e["band_lo"]), float(e["band_hi"]))
        arr = None
        if kind != KIND_ROOT:
            at = table.payload_offset + int(table.offsets[k])
            arr = decode_link_array(memoryview(buf[at:at + 4 * n]), kind, n, int(e["crc"]),
                                    f"links of step {table.step_id}")
        if kind == KIND_CHILD:
            children[cid] = arr
        else:
            parents[cid] = arr
    return StepLinks(parents, children, bands)


# ---- writing ---------------------------------------------------------------------------
def _write_all(fd: int, parts: list[memoryview]) -> None:
    for part in parts:
        write_all(fd, part)


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")


def _encode_step(step: Step, move_head: bool, limits: LoadLimits) -> list[memoryview]:
    """The STEP record, proven loadable by parsing it back with the loader's own checks."""
    body = step_to_json(step, move_head)
    try:
        step_from_json(parse_json(dump_json(body), limits, f"step {step.id}"), limits)
    except SaveFormatError as exc:
        raise ValueError(f"step {step.id} cannot be saved: {exc}") from None
    return encode_json_record(TAG_STEP, body)


def _encode_meta(meta: Mapping[str, Any], limits: LoadLimits) -> list[memoryview]:
    body = dict(meta)
    try:
        check_json_value(body, limits, "meta")
    except SaveFormatError as exc:
        raise ValueError(str(exc)) from None
    parts = encode_json_record(TAG_META, body)
    if record_nbytes(parts[1:]) > limits.max_meta_bytes:
        raise ValueError(f"meta is larger than {limits.max_meta_bytes} bytes")
    return parts


def _encode_links(step: Step, chunks: Mapping[int, SplatChunk], links: StepLinks,
                  limits: LoadLimits) -> tuple[LinkTable, list[list[memoryview]]]:
    """The links of a step and the records that store them: its LINK record, proven readable
    by parsing its table back with the reader's own checks (ValueError otherwise), or no
    record at all for a step that links nothing (readers give it empty links)."""
    try:
        rec = encode_record(TAG_LINK, encode_links(step.id, step.chunk_ids, chunks, links))
        payload = b"".join(bytes(p) for p in rec[1:3])
        length = record_nbytes(rec[1:])
        table = parse_link_table(payload[:LINK_HEADER.size],
                                 lambda n: payload[LINK_HEADER.size:LINK_HEADER.size + n],
                                 length, FORMAT_VERSION, limits, f"links of step {step.id}")
    except SaveFormatError as exc:
        raise ValueError(f"links of step {step.id} cannot be saved: {exc}") from None
    for cid, n in zip(table.entries["chunk_id"].tolist(), table.entries["n"].tolist()):
        if table.entries["kind"][table.row(cid)] != KIND_CHILD and n != len(chunks[cid]):
            raise ValueError(f"links of step {step.id}: chunk {cid} has {len(chunks[cid])} "
                             f"splats, its links {n}")
    return table, ([rec] if len(table.entries) else [])


def _encode_chunks(step: Step, chunks: Mapping[int, SplatChunk], codec: str,
                   budget: Budget) -> list[tuple[ChunkDesc, list[memoryview]]]:
    """CHNK records of a step's chunks (validated), counted into `budget` (raises ValueError)."""
    out = []
    for cid in step.chunk_ids:
        chunk = chunks[cid].validate()
        budget.add_chunk()
        parts = encode_chunk(cid, chunk, codec)  # [u32 length, sub-header, blobs...]
        rec = encode_record(TAG_CHNK, parts)
        try:
            sub = parse_json(parts[1], budget.limits, f"chunk {cid}")
            desc = parse_chunk_header(sub, record_nbytes(rec[1:]),
                                      CHUNK_SUBHEADER_LEN.size + len(parts[1]), budget.limits)
        except SaveFormatError as exc:
            raise ValueError(f"chunk {cid} cannot be saved: {exc}") from None
        budget.claim(desc)
        out.append((desc, rec))
    return out


def _topological(history: History) -> list[Step]:
    """Steps parents-first; ValueError for unknown parents or cycles."""
    kids: dict[int | None, list[Step]] = {}
    for step in history:
        if step.parent is not None and step.parent not in history.steps:
            raise ValueError(f"step {step.id} has unknown parent {step.parent}")
        kids.setdefault(step.parent, []).append(step)
    order: list[Step] = []
    todo = list(reversed(kids.get(None, [])))
    while todo:
        step = todo.pop()
        order.append(step)
        todo.extend(reversed(kids.get(step.id, [])))
    if len(order) != len(history.steps):
        raise ValueError("history has a cycle")
    return order


def save_world(path: str | os.PathLike[str], history: History, chunks: Mapping[int, SplatChunk],
               meta: Mapping[str, Any] | None = None, *, codec: str = "raw",
               limits: LoadLimits = LoadLimits(),
               links: Mapping[int, StepLinks] | None = None) -> None:
    """Write a new world file atomically: a temporary file in the same directory, fsync,
    `os.replace`, fsync of the directory. The old file (if any) stays intact until the rename.
    `links`: every step's LoD links when known (e.g. `LoadedWorld.links`); derived from the
    chunks otherwise (`engine.catalog.derive_links`).
    Raises ValueError for a history/chunk set that cannot be saved or loaded back."""
    _check_codec(codec)
    path = Path(path)
    records = _encode_world(history, chunks, meta or {}, codec, limits, links)
    with atomic_write(path) as fd:
        _write_all(fd, [memoryview(encode_file_header())])
        for rec in records:
            _write_all(fd, rec)


def _encode_world(history: History, chunks: Mapping[int, SplatChunk], meta: Mapping[str, Any],
                  codec: str, limits: LoadLimits,
                  links: Mapping[int, StepLinks] | None = None) -> list[list[memoryview]]:
    order = _topological(history)
    if len(order) > limits.max_steps:
        raise ValueError(f"history has more than {limits.max_steps} steps")
    claimed = [cid for step in order for cid in step.chunk_ids]
    if len(set(claimed)) != len(claimed):
        raise ValueError("a chunk id is listed by more than one step")
    missing = sorted(set(claimed) - set(chunks))
    if missing:
        raise ValueError(f"chunks {missing[:5]} are referenced by steps but not given")
    extra = sorted(set(chunks) - set(claimed))
    if extra:
        raise ValueError(f"chunks {extra[:5]} are not referenced by any step")
    budget = Budget(limits, ValueError)
    if links is None:
        links = derive_links(history, chunks.__getitem__)
    elif set(links) != set(history.steps):
        raise ValueError("links are not given for exactly the history's steps")
    records = [_encode_meta(meta, limits)]
    for step in order:
        records += [rec for _, rec in _encode_chunks(step, chunks, codec, budget)]
        records += _encode_links(step, chunks, links[step.id], limits)[1]
        records.append(_encode_step(step, False, limits))
    if history.head is not None:
        if history.head not in history.steps:
            raise ValueError(f"head {history.head} is not a step")
        records.append(encode_json_record(TAG_HEAD, head_to_json(history.head)))
    _check_totals(records, limits, FILE_HEADER.size, 0)
    json_bytes = sum(record_nbytes(r[1:]) for r in records
                     if bytes(r[0][:4]) not in (b"CHNK", b"LINK"))
    if json_bytes > limits.max_json_total_bytes:
        raise ValueError(f"world would hold more than {limits.max_json_total_bytes} bytes of "
                         "step/head/meta JSON")
    return records


def _check_totals(records: list[list[memoryview]], limits: LoadLimits, size: int,
                  n_records: int) -> None:
    size += sum(record_nbytes(r) for r in records)
    if size > limits.max_file_bytes:
        raise ValueError(f"world file would exceed {limits.max_file_bytes} bytes")
    if n_records + len(records) > limits.max_records:
        raise ValueError(f"world file would exceed {limits.max_records} records")


@dataclass
class WorldWriter:
    """Appends steps to an existing world file. Each append writes only that step's records:
    its CHNK records and its LINK record, fsync, then the STEP record (the commit point),
    fsync.

    Use `WorldWriter.open(path)`; holds an exclusive advisory lock until `close()`.
    Not thread-safe: use it from one thread (the frame loop's save point)."""

    path: Path
    fd: int
    index: WorldIndex = field(repr=False)
    codec: str = "raw"
    limits: LoadLimits = field(default_factory=LoadLimits, repr=False)
    end: int = 0  # file offset where the next record goes

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, codec: str = "raw",
             limits: LoadLimits = LoadLimits(), wait_s: float = 0.0,
             on_wait: Callable[[], None] | None = None,
             upgrade: bool = False, heads_only: bool = False) -> "WorldWriter":
        """Open for appending. Validates the record index (headers, checksums of every record
        but the chunk and link arrays, ids, parents, head) and truncates what follows the last
        commit record: a torn record, or chunks of a step that never committed. `wait_s`: how
        long to wait for another writer's lock (`on_wait` is called once when waiting starts).
        A file of an older format version is refused, or with `upgrade` first rewritten as
        the current version (`saves.world_file.upgrade_world`, atomic, under the lock), or
        with `heads_only` opened as it is for `set_head`/`set_meta` alone (HEAD and META
        records are the same in every version: `checkout` moves the head of a long old
        history without rewriting it; `append_step` then refuses).
        Raises SaveFormatError (bad file), WorldBusyError (another writer), OSError."""
        _check_codec(codec)
        path = Path(path)
        for _ in range(8):  # the file may be replaced (an upgrade) while we wait for its lock
            fd, _ = _open_regular(path, os.O_RDWR, limits.max_file_bytes)
            try:
                _lock(fd, wait_s, on_wait)
                if not _same_file(fd, path):
                    os.close(fd)
                    continue
                size = os.fstat(fd).st_size  # after the lock: another writer may have appended
                if size > limits.max_file_bytes:
                    raise SaveFormatError(f"world file is {size} bytes (limit "
                                          f"{limits.max_file_bytes})")
                # (nothing is frozen, as `_guarded` does: a writer lives in the app, whose
                # later garbage must stay collectable)
                with collector_paused():
                    index = _index_for_append(fd, size, limits, upgrade and not heads_only,
                                              older_ok=heads_only)
                if index is None:  # an older version: rewrite it, then open the new file
                    from saves.world_file import upgrade_world

                    upgrade_world(path, limits=limits)
                    os.close(fd)
                    continue
                if index.end_committed < size:
                    os.ftruncate(fd, index.end_committed)
                    os.fsync(fd)
                return cls(path, fd, index, codec, limits, index.end_committed)
            except BaseException:
                os.close(fd)
                raise
        raise WorldBusyError("world file keeps being replaced while opening it for appending")

    # ---- queries ----------------------------------------------------------------------
    @property
    def history(self) -> History:
        """A copy of the committed history (steps are immutable and shared)."""
        return History(dict(self.index.history.steps), self.index.history.head)

    @property
    def chunk_ids(self) -> frozenset[int]:
        return frozenset(self.index.owner)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    # ---- appends ----------------------------------------------------------------------
    def append_step(self, step: Step, chunks: Mapping[int, SplatChunk], *,
                    move_head: bool = True, links: StepLinks | None = None) -> StepLinks:
        """Append `step` and the chunks it created (`chunks` keys == `step.chunk_ids`, all new)
        with its LoD links: `links` when the caller computed them already (the app, from the
        chunks it holds), else computed here from the older chunks the step's camera sees on
        the path to its parent, read back from this file (`engine.catalog.link_on_path`).
        Returns the links stored, once the step is durable. Raises ValueError (HistoryError,
        SplatValidationError) for a step that does not fit the history, leaving the file
        unchanged."""
        self._check_open()
        if self.index.version != FORMAT_VERSION:
            raise SaveFormatError(f"world file is format version {self.index.version}; "
                                  "`wonderzoom compact` it to upgrade before appending steps")
        self._check_step(step, chunks)
        if links is None:
            links = link_on_path(self.index.history, IndexedReader(self.fd, self.index), step,
                                 chunks)
        self._check_links(step, links)
        budget = Budget(self.limits, ValueError, chunks=self.index.budget.chunks,
                        splats=self.index.budget.splats,
                        decoded_bytes=self.index.budget.decoded_bytes)
        encoded = _encode_chunks(step, chunks, self.codec, budget)
        chunk_records = [rec for _, rec in encoded]
        table, link_records = _encode_links(step, chunks, links, self.limits)
        step_record = _encode_step(step, move_head, self.limits)
        self._check_totals([*chunk_records, *link_records, step_record], step_record)
        offset = self.end
        self._append([*chunk_records, *link_records], step_record)
        for desc, rec in encoded:
            length = record_nbytes(rec[1:])
            self.index.chunks[desc.id] = (desc, RawRecord(TAG_CHNK, offset, length, None))
            self.index.owner[desc.id] = step.id
            offset += record_nbytes(rec)
        self.index.links[step.id] = (dataclasses.replace(
            table, payload_offset=offset + link_records[0][0].nbytes) if link_records else table)
        self.index.budget = budget
        self.index.n_records += len(chunk_records) + len(link_records) + 1
        self.index.json_bytes += record_nbytes(step_record[1:])
        self.index.history.add(step, move_head=move_head)
        return links

    def set_head(self, step_id: int) -> None:
        """Make `step_id` current (undo / checkout): appends one small HEAD record."""
        self._check_open()
        if step_id not in self.index.history.steps:
            raise HistoryError(f"no step {step_id}")
        record = encode_json_record(TAG_HEAD, head_to_json(step_id))
        self._check_totals([record], record)
        self._append([], record)
        self.index.n_records += 1
        self.index.json_bytes += record_nbytes(record[1:])
        self.index.history.head = step_id

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace the world's meta dict (a later META record wins)."""
        self._check_open()
        record = _encode_meta(meta, self.limits)
        self._check_totals([record], record)
        self._append([], record)
        self.index.n_records += 1
        self.index.json_bytes += record_nbytes(record[1:])
        self.index.meta = dict(meta)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)  # also releases the lock

    def __enter__(self) -> "WorldWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            self.close()

    # ---- internals --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.fd < 0:
            raise ValueError("world writer is closed")

    def _check_step(self, step: Step, chunks: Mapping[int, SplatChunk]) -> None:
        steps = self.index.history.steps
        if step.id in steps:
            raise HistoryError(f"step {step.id} already exists")
        if step.parent is not None and step.parent not in steps:
            raise HistoryError(f"step {step.id} has unknown parent {step.parent}")
        if step.parent is None and step.kind == "zoom":
            raise HistoryError("a zoom step needs a parent")
        if len(set(step.chunk_ids)) != len(step.chunk_ids):
            raise ValueError(f"step {step.id} lists a chunk twice")
        if set(chunks) != set(step.chunk_ids):
            raise ValueError(f"chunks given ({sorted(chunks)[:5]}) differ from step "
                             f"{step.id}'s chunk_ids ({list(step.chunk_ids)[:5]})")
        stored = set(step.chunk_ids) & set(self.index.chunks)
        if stored:
            raise ValueError(f"chunk ids {sorted(stored)[:5]} are already stored")

    def _check_links(self, step: Step, links: StepLinks) -> None:
        """Links given by a caller name the step's own chunks and chunks on its parent's path
        (with their splat counts); ValueError otherwise (the file is not touched)."""
        if set(links.parents) != set(step.chunk_ids):
            raise ValueError(f"links of step {step.id} do not name exactly its chunks")
        if not links.children:
            return
        on_path = {c for s in self.index.history.path(step.parent) for c in s.chunk_ids} \
            if step.parent is not None else set()
        for cid, s_child in links.children.items():
            if cid not in on_path:
                raise ValueError(f"links of step {step.id} cover chunk {cid}, which is not "
                                 "on the path to its parent")
            if len(s_child) != self.index.chunks[cid][0].n:
                raise ValueError(f"links of step {step.id}: chunk {cid} has "
                                 f"{self.index.chunks[cid][0].n} splats, its links "
                                 f"{len(s_child)}")

    def _check_totals(self, records: list[list[memoryview]], json_record: list[memoryview]) -> None:
        _check_totals(records, self.limits, self.end, self.index.n_records)
        if self.index.json_bytes + record_nbytes(json_record[1:]) > self.limits.max_json_total_bytes:
            raise ValueError(f"world file would hold more than {self.limits.max_json_total_bytes} "
                             "bytes of step/head/meta JSON")

    def _append(self, chunk_records: list[list[memoryview]], commit: list[memoryview]) -> None:
        """Write chunk records, fsync, then the commit record, fsync. On any failure the file is
        cut back to where it was, so no half record stays behind (a crash leaves a torn tail
        that the next open removes)."""
        start = self.end
        try:
            os.lseek(self.fd, start, os.SEEK_SET)
            for rec in chunk_records:
                self._write(rec)
            if chunk_records:
                os.fsync(self.fd)
            self._write(commit)
            os.fsync(self.fd)
        except BaseException:
            os.ftruncate(self.fd, start)
            raise
        self.end = start + sum(record_nbytes(r) for r in [*chunk_records, commit])
        self.index.end_committed = self.end

    def _write(self, parts: list[memoryview]) -> None:
        """The single point where record bytes reach the file (tests subclass it to crash)."""
        _write_all(self.fd, parts)


LOCK_POLL_S = 0.05


def _lock(fd: int, wait_s: float = 0.0, on_wait: Callable[[], None] | None = None) -> None:
    """Take the exclusive append lock, waiting up to `wait_s` for another writer to finish
    (`on_wait` is called once if it has to wait); WorldBusyError after that."""
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + wait_s
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise WorldBusyError("world file is already open for appending elsewhere"
                                     + (f" (waited {wait_s:g} s)" if wait_s else "")) from None
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(LOCK_POLL_S)


def _same_file(fd: int, path: Path) -> bool:
    """Is `fd` still the file at `path` (not replaced by a rename meanwhile)?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _index_for_append(fd: int, size: int, limits: LoadLimits, upgrade: bool = False,
                      older_ok: bool = False) -> WorldIndex | None:
    """The index of a file about to be appended to, minus what follows the last commit record
    (the caller truncates that away). None for an older version when `upgrade` is asked;
    `older_ok`: an older version is indexed as it is (its writer appends heads only)."""
    src: Source = FileSource(fd, size)
    scan = scan_records(src, limits, verify_chunk_crc=False)
    if scan.version != FORMAT_VERSION and not older_ok:
        if upgrade:
            return None
        raise SaveFormatError(f"world file is format version {scan.version}; `wonderzoom "
                              "compact` it to upgrade before appending")
    index = build_index(scan, limits)
    dropped = [cid for cid, (_, rec) in index.chunks.items() if rec.offset >= index.end_committed]
    for cid in dropped:
        del index.chunks[cid]
    index.budget.chunks -= len(dropped)
    index.n_records -= len(dropped) + len(index.pending_links)
    index.pending_links.clear()
    return index
