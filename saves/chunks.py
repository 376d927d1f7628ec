"""CHNK payloads: one `SplatChunk` <-> bytes.

Owns: the chunk sub-header (JSON) schema, the array codecs (`raw`, `shuffle-zlib`) and bounded
decoding: every declared shape, size, offset and compression ratio is checked against the record
and the limits before any array is allocated, and decompression never produces more than the
declared size. Decoded chunks pass `SplatChunk.validate()`.
Does not own: record framing and checksums (`saves.records`), which chunks a world uses
(`saves.format`).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.splats import SH_REST_COUNTS, SplatChunk, SplatValidationError
from saves.errors import SaveFormatError
from saves.limits import LoadLimits
from saves.records import ALIGN, CHUNK_SUBHEADER_LEN, Buffer, dump_json, pad_to

ARRAY_NAMES = ("positions", "rotations", "log_scales", "opacity_logits", "sh_dc", "s_native",
               "sh_rest")
CODECS = ("raw", "shuffle-zlib")
DTYPE = "<f4"
ITEMSIZE = 4
MAX_ID = 1 << 53
HEADER_KEYS = frozenset({"id", "level", "origin", "n", "sh_degree", "arrays"})
ARRAY_KEYS = frozenset({"name", "dtype", "shape", "codec", "offset", "nbytes", "raw_nbytes"})


def expected_shape(name: str, n: int, sh_degree: int) -> tuple[int, ...]:
    if name in ("opacity_logits", "s_native"):
        return (n,)
    if name == "rotations":
        return (n, 4)
    if name == "sh_rest":
        return (n, SH_REST_COUNTS[sh_degree], 3)
    return (n, 3)


@dataclass(frozen=True)
class ArrayDesc:
    name: str
    shape: tuple[int, ...]
    codec: str
    offset: int  # from the start of the CHNK payload
    nbytes: int  # stored bytes
    raw_nbytes: int  # bytes after decoding == prod(shape) * 4


@dataclass(frozen=True)
class ChunkDesc:
    """A validated chunk sub-header: everything needed to decode the arrays."""

    id: int
    level: int
    origin: tuple[float, float, float]
    n: int
    sh_degree: int
    arrays: tuple[ArrayDesc, ...]  # in ARRAY_NAMES order

    @property
    def raw_nbytes(self) -> int:
        return sum(a.raw_nbytes for a in self.arrays)


# ---- encoding --------------------------------------------------------------------------
def _shuffle(raw: np.ndarray) -> np.ndarray:
    """float32 bytes [count*4] -> byte planes [4*count]: exponents compress together."""
    return np.ascontiguousarray(raw.reshape(-1, ITEMSIZE).T).reshape(-1)


def _unshuffle(planes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(planes.reshape(ITEMSIZE, -1).T).reshape(-1)


def _encode_array(arr: np.ndarray, codec: str, level: int) -> np.ndarray | bytes:
    raw = np.ascontiguousarray(arr, dtype=DTYPE).reshape(-1).view(np.uint8)  # [count*4]
    if codec == "raw":
        return raw
    if codec == "shuffle-zlib":
        return zlib.compress(_shuffle(raw), level)
    raise ValueError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")


def encode_chunk(chunk_id: int, chunk: SplatChunk, codec: str = "raw",
                 zlib_level: int = 1) -> list[Any]:
    """CHNK payload parts: u32 sub-header length, JSON sub-header, 8-aligned array blobs."""
    n, degree = len(chunk), chunk.sh_degree
    blobs = [_encode_array(getattr(chunk, name), codec, zlib_level) for name in ARRAY_NAMES]
    sizes = [memoryview(b).nbytes for b in blobs]

    def header(data_start: int) -> dict[str, Any]:
        arrays, offset = [], data_start
        for name, size in zip(ARRAY_NAMES, sizes):
            shape = expected_shape(name, n, degree)
            arrays.append({"name": name, "dtype": DTYPE, "shape": list(shape), "codec": codec,
                           "offset": offset, "nbytes": size,
                           "raw_nbytes": math.prod(shape) * ITEMSIZE})
            offset += size + (-size) % ALIGN
        return {"id": int(chunk_id), "level": int(chunk.level),
                "origin": [float(x) for x in chunk.origin], "n": n, "sh_degree": degree,
                "arrays": arrays}

    # Offsets depend on the sub-header's own length: grow the guess until it is a fixed point.
    start = CHUNK_SUBHEADER_LEN.size
    while True:
        sub = pad_to(dump_json(header(start)), ALIGN, CHUNK_SUBHEADER_LEN.size)
        if CHUNK_SUBHEADER_LEN.size + len(sub) <= start:
            sub += b" " * (start - CHUNK_SUBHEADER_LEN.size - len(sub))
            break
        start = CHUNK_SUBHEADER_LEN.size + len(sub)
    parts: list[Any] = [CHUNK_SUBHEADER_LEN.pack(len(sub)), sub]
    for blob, size in zip(blobs, sizes):
        parts.append(blob)
        if size % ALIGN:
            parts.append(b"\0" * ((-size) % ALIGN))
    return parts


# ---- decoding --------------------------------------------------------------------------
def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:  # (a JSON true/false is a bool)
        raise SaveFormatError(f"{what} must be an integer in [{lo}, {hi}]")
    return value


def parse_chunk_header(body: Any, payload_len: int, data_start: int,
                       limits: LoadLimits) -> ChunkDesc:
    """Validate a CHNK sub-header against its record and the limits (allocates nothing big).
    Every field of the schema is checked here (types, ranges, finite numbers, allow-listed
    strings compared, never kept), so the sub-header's JSON needs no generic walk; messages
    are only formatted on failure: indexing a world of thousands of chunks stays fast."""
    if type(body) is not dict or body.keys() != HEADER_KEYS:
        raise SaveFormatError(f"chunk sub-header must have exactly the fields "
                              f"{', '.join(sorted(HEADER_KEYS))}")
    cid = _int(body["id"], "chunk id", 0, MAX_ID)
    level, n, degree = body["level"], body["n"], body["sh_degree"]
    if type(level) is not int or not 0 <= level <= 1023:
        _int(level, f"chunk {cid} level", 0, 1023)
    if type(n) is not int or not 0 <= n <= limits.max_splats_per_chunk:
        _int(n, f"chunk {cid} splat count", 0, limits.max_splats_per_chunk)
    if type(degree) is not int or not 0 <= degree < len(SH_REST_COUNTS):
        _int(degree, f"chunk {cid} sh_degree", 0, len(SH_REST_COUNTS) - 1)
    origin = body["origin"]
    if type(origin) is not list or len(origin) != 3 \
            or not all(type(x) is int or type(x) is float for x in origin):
        raise SaveFormatError(f"chunk {cid} origin must be 3 numbers")
    try:
        finite = all(math.isfinite(float(x)) for x in origin)
    except OverflowError:  # an integer literal past float range
        finite = False
    if not finite:
        raise SaveFormatError(f"chunk {cid} origin is not finite")
    arrays = body["arrays"]
    if type(arrays) is not list or len(arrays) != len(ARRAY_NAMES):
        raise SaveFormatError(f"chunk {cid} must list exactly {len(ARRAY_NAMES)} arrays")
    descs = {}
    for entry in arrays:
        desc = _parse_array(entry, n, degree, payload_len, data_start, limits, cid)
        if desc.name in descs:
            raise SaveFormatError(f"chunk {cid} lists array {desc.name} twice")
        descs[desc.name] = desc
    ordered = sorted(descs.values(), key=lambda a: a.offset)
    for a, b in zip(ordered, ordered[1:]):
        if a.offset + a.nbytes > b.offset:
            raise SaveFormatError(f"chunk {cid} arrays {a.name} and {b.name} overlap")
    return ChunkDesc(cid, level, tuple(float(x) for x in origin), n, degree,
                     tuple(descs[name] for name in ARRAY_NAMES))


def _parse_array(entry: Any, n: int, degree: int, payload_len: int, data_start: int,
                 limits: LoadLimits, cid: int) -> ArrayDesc:
    if type(entry) is not dict or entry.keys() != ARRAY_KEYS:
        raise SaveFormatError(f"chunk {cid}: array entries must have exactly the fields "
                              f"{', '.join(sorted(ARRAY_KEYS))}")
    name = entry["name"]
    if name not in ARRAY_NAMES:
        raise SaveFormatError(f"chunk {cid}: unknown array {ascii(name)[:60]}")
    if entry["dtype"] != DTYPE:
        raise SaveFormatError(f"chunk {cid} array {name}: dtype must be {DTYPE}")
    codec = entry["codec"]
    if codec not in CODECS:
        raise SaveFormatError(f"chunk {cid} array {name}: unknown codec {ascii(codec)[:60]}")
    shape, shape_list, size = _shape_and_size(name, n, degree)
    if entry["shape"] != shape_list:
        raise SaveFormatError(f"chunk {cid} array {name}: shape {ascii(entry['shape'])[:60]} "
                              f"does not match n={n}, sh_degree={degree}")
    raw_nbytes, offset, nbytes = entry["raw_nbytes"], entry["offset"], entry["nbytes"]
    if type(raw_nbytes) is not int or not 0 <= raw_nbytes <= 1 << 62:
        _int(raw_nbytes, f"chunk {cid} array {name} raw_nbytes", 0, 1 << 62)
    if raw_nbytes != size:
        raise SaveFormatError(f"chunk {cid} array {name}: raw_nbytes {raw_nbytes} does not "
                              "match its shape")
    if type(offset) is not int or not data_start <= offset <= payload_len:
        _int(offset, f"chunk {cid} array {name} offset", data_start, payload_len)
    if type(nbytes) is not int or not 0 <= nbytes <= payload_len - offset:
        _int(nbytes, f"chunk {cid} array {name} nbytes", 0, payload_len - offset)
    if offset % ALIGN:
        raise SaveFormatError(f"chunk {cid} array {name}: offset {offset} is not 8-aligned")
    if codec == "raw" and nbytes != raw_nbytes:
        raise SaveFormatError(f"chunk {cid} array {name}: stored size {nbytes} differs from "
                              "its raw size")
    if codec != "raw" and raw_nbytes > max(nbytes, 1) * limits.max_decompression_ratio:
        raise SaveFormatError(f"chunk {cid} array {name}: claims a compression ratio above "
                              f"{limits.max_decompression_ratio:g}")
    # An open world keeps one of these per array (7 a chunk: 28,672 for the 64M-splat bench
    # world): share the objects equal values already have instead of keeping the JSON's
    # copies (the name and codec strings, the shape tuple, the sizes), ~6 MB there.
    name, codec = _CANONICAL[name], _CANONICAL[codec]
    if codec == "raw":
        nbytes = size
    return ArrayDesc(name, shape, codec, offset, nbytes, size)


_CANONICAL = {value: value for value in ARRAY_NAMES + CODECS}


@functools.lru_cache(maxsize=256)
def _shape_and_size(name: str, n: int, sh_degree: int
                    ) -> tuple[tuple[int, ...], list[int], int]:
    """(the array's shape, the same as the list JSON holds, its raw bytes); shared by every
    chunk of that size (nothing may change the list)."""
    shape = expected_shape(name, n, sh_degree)
    return shape, list(shape), math.prod(shape) * ITEMSIZE


def _inflate(data: Buffer, raw_nbytes: int, where: str) -> np.ndarray:
    """Decompress at most `raw_nbytes + 1` bytes; anything but exactly `raw_nbytes` is an error."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, raw_nbytes + 1)
    except zlib.error as exc:
        raise SaveFormatError(f"{where}: compressed data is corrupt ({exc})") from None
    if len(out) != raw_nbytes or not d.eof or d.unconsumed_tail or d.unused_data:
        raise SaveFormatError(f"{where}: compressed data does not decode to its declared size")
    return _unshuffle(np.frombuffer(out, np.uint8))


def _decode_array(desc: ArrayDesc, payload: np.ndarray, what: str) -> np.ndarray:
    blob = payload[desc.offset:desc.offset + desc.nbytes]  # [nbytes] uint8 view
    if desc.codec == "raw":
        raw = blob
    else:
        raw = _inflate(memoryview(blob), desc.raw_nbytes, f"{what} array {desc.name}")
    return raw.view(DTYPE).astype(np.float32).reshape(desc.shape)  # fresh native copy


def decode_chunk(desc: ChunkDesc, payload: np.ndarray) -> SplatChunk:
    """Arrays of a chunk from its CHNK payload ([length] uint8), validated."""
    what = f"chunk {desc.id}"
    arrays = {a.name: _decode_array(a, payload, what) for a in desc.arrays}
    try:
        chunk = SplatChunk(origin=np.array(desc.origin, np.float64), level=desc.level, **arrays)
        return chunk.validate()
    except (SplatValidationError, ValueError, TypeError) as exc:
        raise SaveFormatError(f"{what}: {exc}") from None
