"""Record framing of `.wzs` world files: file header, record headers, checksums, bounded JSON.

Owns: the byte layout below the meaning of records (see saves/FORMAT.md): encoding a record,
scanning a file into a list of `RawRecord`s (checking every header and payload checksum and every
declared length against the file size and the limits before reading it), detecting a torn tail,
and a strict, bounded JSON reader (`parse_json`).
Does not own: what STEP/HEAD/META/CHNK records mean (`saves.steps`, `saves.chunks`,
`saves.format`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Protocol, Sequence

import numpy as np
import orjson

from saves.errors import SaveFormatError
from saves.limits import LoadLimits

MAGIC = b"\x89WZS\r\n\x1a\n"  # PNG-style: catches text-mode transfers and truncation to 7 bits
FORMAT_VERSION = 2  # 2: LINK records (a step's LoD links); version-1 files still open
FILE_HEADER = struct.Struct("<8sIIII")  # magic, version, flags, reserved, crc32(first 20 bytes)
RECORD_HEADER = struct.Struct("<4sIQII")  # tag, flags, payload length, crc32(payload), crc32(first 20)
ALIGN = 8  # every payload length is a multiple of 8, so every record starts 8-aligned

TAG_META, TAG_CHNK, TAG_STEP, TAG_HEAD, TAG_LINK = "META", "CHNK", "STEP", "HEAD", "LINK"
TAGS = (TAG_META, TAG_CHNK, TAG_STEP, TAG_HEAD, TAG_LINK)
_TAG_OF = {t.encode("ascii"): t for t in TAGS}  # a record header's tag bytes -> its tag
BULK_TAGS = (TAG_CHNK, TAG_LINK)  # records with arrays: their payloads are read on demand
CHUNK_SUBHEADER_LEN = struct.Struct("<I")
MAX_SAFE_INT = 1 << 63

Buffer = bytes | bytearray | memoryview


# ---- encoding --------------------------------------------------------------------------
def encode_file_header(version: int = FORMAT_VERSION, flags: int = 0, reserved: int = 0) -> bytes:
    head = FILE_HEADER.pack(MAGIC, version, flags, reserved, 0)[:20]
    return head + struct.pack("<I", zlib.crc32(head))


def record_header(tag: str, payload_len: int, payload_crc: int, flags: int = 0) -> bytes:
    head = RECORD_HEADER.pack(tag.encode("ascii"), flags, payload_len, payload_crc, 0)[:20]
    return head + struct.pack("<I", zlib.crc32(head))


def as_bytes_view(buf: Buffer | np.ndarray) -> memoryview:
    """A flat byte view of a contiguous buffer (numpy arrays included), without copying."""
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
    return memoryview(buf).cast("B")


def encode_record(tag: str, payload_parts: Sequence[Buffer | np.ndarray]) -> list[memoryview]:
    """Header + payload parts of one record, checksummed, ready to write in order.

    The payload (the parts concatenated) must be a multiple of 8 bytes long."""
    parts = [as_bytes_view(p) for p in payload_parts]
    length = sum(p.nbytes for p in parts)
    if length % ALIGN:
        raise ValueError(f"{tag} payload of {length} bytes is not a multiple of {ALIGN}")
    crc = 0
    for p in parts:
        crc = zlib.crc32(p, crc)
    return [memoryview(record_header(tag, length, crc)), *parts]


def pad_to(data: bytes, multiple: int = ALIGN, offset: int = 0, fill: bytes = b" ") -> bytes:
    """`data` padded with `fill` so that `offset + len(result)` is a multiple of `multiple`."""
    return data + fill * ((-(offset + len(data))) % multiple)


def json_default(value: Any) -> Any:
    """Let numpy scalars and small arrays through `json.dumps`."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Inf refused (ValueError)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=json_default).encode("utf-8")


def encode_json_record(tag: str, obj: Any) -> list[memoryview]:
    """A STEP/HEAD/META record: JSON padded with spaces to a multiple of 8 bytes."""
    return encode_record(tag, [pad_to(dump_json(obj))])


def record_nbytes(parts: Iterable[memoryview]) -> int:
    return sum(p.nbytes for p in parts)


# ---- bounded JSON ----------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate JSON key {key[:40]!r}")
            seen.add(key)
    return out


def check_string(s: str, limit: int, what: str) -> str:
    if len(s) > limit:
        raise SaveFormatError(f"{what}: string of {len(s)} characters (limit {limit})")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise SaveFormatError(f"{what}: string holds a lone surrogate") from None
    return s


def check_json_value(value: Any, limits: LoadLimits, what: str) -> None:
    """Iteratively check nesting depth, finite numbers, integer range and string sizes.
    (The exact types a JSON parser makes are dispatched first, the hot path of opening a
    long history whose steps carry backends; anything else takes `_check_json_item`.)"""
    max_depth, max_chars = limits.max_json_depth, limits.max_string_chars
    if type(value) is dict and flat_json_ok(value, max_chars):
        return  # (a flat object of plain scalars: a step's usual backend, checked in one loop)
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        t = type(v)
        if t is str:
            if len(v) > max_chars or not v.isascii():
                check_string(v, max_chars, what)
        elif t is dict and depth <= max_depth:
            for key, item in v.items():
                if type(key) is not str or len(key) > max_chars or not key.isascii():
                    check_string(key, max_chars, what)
                push((item, depth + 1))
        elif t is list and depth <= max_depth:
            for item in v:
                push((item, depth + 1))
        elif t is int:
            if not -MAX_SAFE_INT <= v < MAX_SAFE_INT:
                raise SaveFormatError(f"{what}: integer out of range")
        elif t is float:
            if not math.isfinite(v):
                raise SaveFormatError(f"{what}: number is not finite")
        elif v is not None and t is not bool:
            _check_json_item(v, depth, stack, limits, what)


def flat_json_ok(obj: dict, max_chars: int) -> bool:
    """True if every key of `obj` is a short ASCII string and every value a scalar that
    `check_json_value` accepts (False: let the walk decide, and name what is wrong)."""
    for key, v in obj.items():
        if type(key) is not str or len(key) > max_chars or not key.isascii():
            return False
        t = type(v)
        if t is str:
            if len(v) > max_chars or not v.isascii():
                return False
        elif t is int:
            if not -MAX_SAFE_INT <= v < MAX_SAFE_INT:
                return False
        elif t is float:
            if not math.isfinite(v):
                return False
        elif v is not None and t is not bool:
            return False
    return True


def _check_json_item(v: Any, depth: int, stack: list[tuple[Any, int]], limits: LoadLimits,
                     what: str) -> None:
    """`check_json_value` for one value of any type (subclasses included), pushing its items:
    the reference for the exact-type dispatch above."""
    if isinstance(v, (dict, list)) and depth > limits.max_json_depth:
        raise SaveFormatError(f"{what}: JSON nested deeper than {limits.max_json_depth}")
    if isinstance(v, dict):
        for key, item in v.items():
            check_string(key, limits.max_string_chars, what)
            stack.append((item, depth + 1))
    elif isinstance(v, list):
        stack.extend((item, depth + 1) for item in v)
    elif isinstance(v, str):
        check_string(v, limits.max_string_chars, what)
    elif v is None or isinstance(v, bool):
        return
    elif isinstance(v, int):
        if not -MAX_SAFE_INT <= v < MAX_SAFE_INT:
            raise SaveFormatError(f"{what}: integer out of range")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise SaveFormatError(f"{what}: number is not finite")
    else:
        raise SaveFormatError(f"{what}: unexpected JSON value of type {type(v).__name__}")


# Stateless once built (a constant, not mutable state): strict about NaN and duplicate keys.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_object)
_SCAN = _DECODER.scan_once
_JSON_SPACE = " \t\n\r"  # JSON's whitespace, as json.decoder skips it
_SPACE = re.compile(f"[{_JSON_SPACE}]*").match


_NOT_PLAIN = object()


def _plain_json(raw: bytes) -> Any:
    """The value of `raw` when it is plain JSON as writers make it, else `_NOT_PLAIN` (the
    strict decoder then decides, and names what is wrong). Plain: the record's text, less its
    padding, is what `orjson` writes for the value it reads there, up to the leading zero of
    exponents and then the spaces after separators that Python's `json.dumps` writes
    ("1e-06", ", ", ": "; a text with such spaces in a string is not plain). Such a text has
    no duplicate keys (the re-encoding has none, and these edits change no token boundary
    and edit equal keys alike), no NaN and no integer that orjson reads as a float; and the
    strict decoder reads the same value from it (the edits change no value; tested against
    `_strict_json` on generated texts). The hot path of opening a long history: about twice
    as fast as the strict decoder."""
    try:
        value = orjson.loads(raw)
        text = orjson.dumps(value)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _NOT_PLAIN
    body = raw.rstrip(b" ")
    if text == body:
        return value
    if len(text) < len(body) and b"e-0" in body:  # (a camera's near plane: 1e-06)
        body = body.replace(b"e-0", b"e-")
        if text == body:
            return value
    if len(text) < len(body) and text == body.replace(b", ", b",").replace(b": ", b":"):
        return value
    return _NOT_PLAIN


def _label(what: str | tuple[str, int]) -> str:
    return f"{what[0]} record at byte {what[1]}" if isinstance(what, tuple) else what


def parse_json(data: Buffer, limits: LoadLimits, what: str | tuple[str, int],
               walk: bool = True) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, bounded depth and strings.
    `walk=False` leaves the depth/number/string walk to a caller that checks every field of
    a known schema itself (a STEP record: `saves.steps.step_from_json`, the hot path of
    opening a world with a long history). `what` names the data in messages ((tag, offset):
    "TAG record at byte OFFSET", formatted only on failure)."""
    value = _plain_json(data if type(data) is bytes else bytes(data))
    if value is _NOT_PLAIN:
        value = _strict_json(data, what)
    if walk:
        check_json_value(value, limits, _label(what))
    return value


def _strict_json(data: Buffer, what: str | tuple[str, int]) -> Any:
    """`data` read by the standard library's decoder, strictly: UTF-8, one value, no NaN or
    Infinity, no duplicate keys; SaveFormatError naming what is wrong."""
    try:
        text = str(data, "utf-8")
        # json.JSONDecoder.decode without its two Python frames: leading space, one value,
        # trailing space (records are padded with spaces), nothing else
        try:
            value, end = _SCAN(text, 0 if text[:1] == "{" else _SPACE(text, 0).end())
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", text, stop.value) from None
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            raise json.JSONDecodeError("Extra data", text, _SPACE(text, end).end())
    except RecursionError:
        raise SaveFormatError(f"{_label(what)}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SaveFormatError(f"{_label(what)}: invalid JSON ({exc})") from None
    return value


# ---- reading ---------------------------------------------------------------------------
class Source(Protocol):
    """Random access to the bytes of a world file."""

    size: int

    def read(self, offset: int, n: int) -> Buffer: ...

    def crc(self, offset: int, n: int) -> int: ...


@dataclass
class BufferSource:
    """The whole file, read once into memory (the loader's source)."""

    buf: np.ndarray  # [size] uint8

    @property
    def size(self) -> int:
        return int(self.buf.shape[0])

    def read(self, offset: int, n: int) -> memoryview:
        return memoryview(self.buf[offset:offset + n])

    def crc(self, offset: int, n: int) -> int:
        return zlib.crc32(memoryview(self.buf[offset:offset + n]))


@dataclass
class FileSource:
    """Positioned reads of an open file (the appender's and `read_world_info`'s source: reads
    headers, not chunks). Small reads come from a read-ahead window, so a long run of small
    records (a deep history) costs one system call per window, not two per record; after a
    jump past a big payload (a chunk's arrays) the next read takes `small` bytes only, so
    indexing a file of large chunks reads their headers, not megabytes around them."""

    fd: int
    size: int
    block: int = 1 << 22
    window: int = 1 << 18
    small: int = 1 << 13
    _at: int = 0
    _buf: bytes = b""

    def read(self, offset: int, n: int) -> bytes:
        start = offset - self._at
        if 0 <= start and start + n <= len(self._buf):
            return self._buf[start:start + n]
        if n >= self.window:
            return self._pread(offset, n)
        jumped = offset - (self._at + len(self._buf)) > self.window
        want = max(n, self.small) if jumped else self.window
        self._at, self._buf = offset, self._pread(offset, min(want, self.size - offset))
        if len(self._buf) < n:
            raise SaveFormatError("world file changed size while it was being read")
        return self._buf[:n]

    def _pread(self, offset: int, n: int) -> bytes:
        data = os.pread(self.fd, n, offset)
        if len(data) != n:
            raise SaveFormatError("world file changed size while it was being read")
        return data

    def crc(self, offset: int, n: int) -> int:
        crc = 0
        for start in range(offset, offset + n, self.block):
            crc = zlib.crc32(self.read(start, min(self.block, offset + n - start)), crc)
        return crc


def read_whole_file(fd: int, size: int) -> np.ndarray:
    """Read `size` bytes from `fd` into one fresh uint8 array.  # [size]"""
    buf = np.empty(size, np.uint8)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    if got != size:
        raise SaveFormatError("world file changed size while it was being read")
    return buf


class RawRecord(NamedTuple):
    """One complete, checksum-verified record; `body` is its parsed JSON (for CHNK: the
    sub-header). Offsets are file offsets. (A named tuple: a long history makes one per
    record, and a tuple is made several times faster than a frozen dataclass.)"""

    tag: str
    offset: int  # of the record header
    length: int  # payload bytes
    body: Any
    data_start: int = 0  # CHNK: payload-relative offset just past the sub-header

    @property
    def payload_offset(self) -> int:
        return self.offset + RECORD_HEADER.size

    @property
    def end(self) -> int:
        return self.payload_offset + self.length


@dataclass(frozen=True)
class Scan:
    version: int
    records: list[RawRecord]
    end_complete: int  # end of the last complete record (== size unless the tail is torn)
    size: int
    json_bytes: int  # STEP/HEAD/META payload bytes

    @property
    def torn_bytes(self) -> int:
        return self.size - self.end_complete


def read_file_header(src: Source) -> int:
    """Check magic, header checksum and flags; returns the format version."""
    if src.size < FILE_HEADER.size:
        raise SaveFormatError(f"not a WonderZoom world file (only {src.size} bytes)")
    raw = bytes(src.read(0, FILE_HEADER.size))
    magic, version, flags, reserved, crc = FILE_HEADER.unpack(raw)
    if magic != MAGIC:
        raise SaveFormatError("not a WonderZoom world file (bad magic bytes)")
    if crc != zlib.crc32(raw[:20]):
        raise SaveFormatError("world file header is corrupt (checksum mismatch)")
    if version > FORMAT_VERSION:
        raise SaveFormatError(f"world file was made by a newer WonderZoom (format version "
                              f"{version}; this build reads up to {FORMAT_VERSION})")
    if version < 1:
        raise SaveFormatError(f"unknown world file format version {version}")
    if flags or reserved:
        raise SaveFormatError("world file header has unknown flags set")
    return version


def scan_records(src: Source, limits: LoadLimits, verify_chunk_crc: bool = True) -> Scan:
    """Walk the records. Raises on anything corrupt; stops quietly at a torn tail (a last record
    whose header or payload runs past the end of the file)."""
    version = read_file_header(src)
    records: list[RawRecord] = []
    pos, json_total, link_total = FILE_HEADER.size, 0, 0
    size, head_size, max_records = src.size, RECORD_HEADER.size, limits.max_records
    read, unpack, crc32, tag_of = src.read, RECORD_HEADER.unpack, zlib.crc32, _TAG_OF.get
    while size - pos >= head_size:  # (a long history makes this loop hot: names are local)
        raw = read(pos, head_size)
        tag_b, flags, length, crc, head_crc = unpack(raw)
        tag = tag_of(tag_b)
        if head_crc != crc32(raw[:20]) or tag is None or flags or length % ALIGN:
            _read_record_header(src, pos)  # the reference: raises, naming what is wrong
        payload = pos + head_size
        if length > size - payload:
            break  # torn tail: a crash mid-record
        if len(records) >= max_records:
            raise SaveFormatError(f"world file holds more than {max_records} records")
        if tag in BULK_TAGS:
            record = _read_payload(src, pos, tag, length, crc, limits, verify_chunk_crc, version)
        else:
            record = _read_json_payload(src, pos, tag, length, crc, limits)
        if tag == TAG_LINK:
            link_total += record.data_start  # the entry table (the arrays are not kept)
            if link_total > limits.max_link_table_bytes:
                raise SaveFormatError(f"world file holds more than "
                                      f"{limits.max_link_table_bytes} bytes of link tables")
        json_total += 0 if tag in BULK_TAGS else length
        if json_total > limits.max_json_total_bytes:
            raise SaveFormatError(f"world file holds more than {limits.max_json_total_bytes} "
                                  "bytes of step/head/meta JSON")
        records.append(record)
        pos = payload + length
    return Scan(version, records, pos, size, json_total)


def _read_record_header(src: Source, pos: int) -> tuple[str, int, int]:
    """(tag, payload length, payload crc32) of the record at `pos`, header checked."""
    raw = bytes(src.read(pos, RECORD_HEADER.size))
    tag_b, flags, length, payload_crc, crc = RECORD_HEADER.unpack(raw)
    if crc != zlib.crc32(raw[:20]):
        raise SaveFormatError(f"record header at byte {pos} is corrupt (checksum mismatch)")
    tag = tag_b.decode("latin-1")
    if tag not in TAGS:
        raise SaveFormatError(f"unknown record type {ascii(tag)} at byte {pos}")
    if flags:
        raise SaveFormatError(f"{tag} record at byte {pos} has unknown flags set")
    if length % ALIGN:
        raise SaveFormatError(f"{tag} record at byte {pos} has a misaligned length")
    return tag, length, payload_crc


def _read_json_payload(src: Source, pos: int, tag: str, length: int, stored_crc: int,
                       limits: LoadLimits) -> RawRecord:
    """A STEP/HEAD/META payload, one read: the checksum and the parse use the same bytes.
    (STEP records are the hot path of a long history: no message is formatted unless one
    fails.)"""
    cap = limits.max_meta_bytes if tag == TAG_META else limits.max_json_bytes
    if length > cap:
        raise SaveFormatError(f"{tag} record at byte {pos} is {length} bytes (limit {cap})")
    data = src.read(pos + RECORD_HEADER.size, length)
    if zlib.crc32(data) != stored_crc:
        raise SaveFormatError(f"{tag} record at byte {pos} is corrupt (checksum mismatch)")
    return RawRecord(tag, pos, length, parse_json(data, limits, (tag, pos), tag != TAG_STEP))


def _read_payload(src: Source, pos: int, tag: str, length: int, stored_crc: int,
                  limits: LoadLimits, verify_chunk_crc: bool, version: int) -> RawRecord:
    """Check and parse one complete record's payload. CHNK and LINK payloads are checksummed
    whole only with `verify_chunk_crc` (a full load); otherwise only their headers (the CHNK
    sub-header, the LINK entry table with its own checksum) are read now."""
    if tag not in BULK_TAGS:
        return _read_json_payload(src, pos, tag, length, stored_crc, limits)
    payload = pos + RECORD_HEADER.size
    where = f"{tag} record at byte {pos}"
    if tag == TAG_LINK:
        from saves.links import LINK_HEADER, parse_link_table  # (saves.links uses this module)

        if verify_chunk_crc and src.crc(payload, length) != stored_crc:
            raise SaveFormatError(f"{where} is corrupt (checksum mismatch)")
        head = src.read(payload, LINK_HEADER.size) if length >= LINK_HEADER.size else b""
        table = parse_link_table(
            head, lambda n: src.read(payload + LINK_HEADER.size, n) if n else b"", length,
            version, limits, where)
        table = dataclasses.replace(table, payload_offset=payload)
        return RawRecord(tag, pos, length, table,
                         data_start=LINK_HEADER.size + table.entries.nbytes)
    if verify_chunk_crc and src.crc(payload, length) != stored_crc:
        raise SaveFormatError(f"{where} is corrupt (checksum mismatch)")
    n_len = CHUNK_SUBHEADER_LEN.size
    if length < n_len:
        raise SaveFormatError(f"{where} is too short")
    (sub_len,) = CHUNK_SUBHEADER_LEN.unpack(bytes(src.read(payload, n_len)))
    if sub_len > min(limits.max_chunk_header_bytes, length - n_len):
        raise SaveFormatError(f"{where} declares a {sub_len}-byte sub-header")
    # (no generic walk: `saves.chunks.parse_chunk_header` checks every field of its schema)
    body = parse_json(src.read(payload + n_len, sub_len), limits, where, walk=False)
    return RawRecord(tag, pos, length, body, data_start=n_len + sub_len)
