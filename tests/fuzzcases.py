"""Hostile and damaged `.wzs` files for the fuzz test and the fuzz benchmark.

`fuzz_case(seed)` -> (name, bytes): a deterministic damaged or hand-crafted hostile file.
`crafted_cases()` -> [(name, bytes, expect)]: every hand-crafted attack, with the outcome it
must have ("refused", "loaded" or "either"). `run_case` loads one file and reports what happened.
Structured mutations re-compute checksums so that they reach the semantic checks.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.catalog import plan_path
from engine.history import History, Step
from engine.splats import SplatChunk
from engine.synthetic import levels_history, nested_plane_world
from saves import (LoadLimits, SaveFormatError, WorldWriter, load_world, read_world_info,
                   save_world)
from saves.chunks import ARRAY_NAMES, encode_chunk, expected_shape
from saves.links import ENTRY, LINK_HEADER
from saves.records import FILE_HEADER, FORMAT_VERSION, RECORD_HEADER, encode_file_header, pad_to
from saves.world_file import open_world
from tests.factories import random_camera, random_chunk

Record = tuple[str, bytes]  # (tag, payload)
HOSTILE_STRINGS = ["../../etc/passwd", "/dev/zero", "C:\\Windows\\system32", "\u202e\u0000x",
                   "__import__('os').system('id')", "%s%n%x", "\x1b[2J", "A" * 5000]
JSON_NUMBER_ATTACKS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 5000,
                       "123456789012345678901234567890", "-1", "1.5", "true", "null", '"7"',
                       "[]", "{}", "1e-400"]


# ---- building blocks -------------------------------------------------------------------
def json_payload(obj: Any) -> bytes:
    return pad_to(json.dumps(obj, allow_nan=True).encode())


def text_payload(text: str) -> bytes:
    return pad_to(text.encode("utf-8", "surrogatepass"))


def join_records(records: list[Record], header: bytes | None = None) -> bytes:
    """A file of hand-made records. They are version-1 records (no LINK records, which
    version 2 requires before every STEP), so the file says version 1; version-2 files come
    from the real writer (`base_worlds`) and `linked_cases`."""
    out = [encode_file_header(1) if header is None else header]
    for tag, payload in records:
        out.append(_raw_record(tag.encode("latin-1"), payload))
    return b"".join(out)


def split_records(data: bytes) -> list[Record]:
    """Records of an intact file."""
    pos, out = FILE_HEADER.size, []
    while pos + RECORD_HEADER.size <= len(data):
        tag, _, length, _, _ = RECORD_HEADER.unpack_from(data, pos)
        start = pos + RECORD_HEADER.size
        out.append((tag.decode(), data[start:start + length]))
        pos = start + length
    return out


def chunk_payload(chunk_id: int, chunk, codec: str = "raw") -> bytes:
    return b"".join(bytes(memoryview(p).cast("B")) for p in encode_chunk(chunk_id, chunk, codec))


def reheader(payload: bytes, mutate: Callable[[dict], Any]) -> bytes:
    """Rewrite a CHNK sub-header, shifting offsets so the blobs stay where they are meant."""
    (sub_len,) = struct.unpack_from("<I", payload)
    head = json.loads(payload[4:4 + sub_len])
    blobs = payload[4 + sub_len:]
    mutate(head)
    start = 4 + sub_len
    while True:
        shifted = shift_offsets(head, start - (4 + sub_len))
        sub = pad_to(json.dumps(shifted, allow_nan=True).encode(), 8, 4)
        if 4 + len(sub) <= start:
            sub += b" " * (start - 4 - len(sub))
            return struct.pack("<I", len(sub)) + sub + blobs
        start = 4 + len(sub)


def shift_offsets(head: Any, delta: int) -> Any:
    head = json.loads(json.dumps(head, allow_nan=True))
    for entry in head.get("arrays", []) if isinstance(head, dict) else []:
        if isinstance(entry, dict) and type(entry.get("offset")) is int:
            entry["offset"] += delta
    return head


def chunk_from_parts(head: dict, blobs: list[bytes]) -> bytes:
    """A CHNK payload with `head` (its arrays' offsets filled in) followed by `blobs`."""
    sizes = [len(b) for b in blobs]
    start = 4
    while True:
        offset, arrays = start, []
        for entry, size in zip(head["arrays"], sizes):
            arrays.append({**entry, "offset": entry.get("offset", offset)})
            offset += size + (-size) % 8
        sub = pad_to(json.dumps({**head, "arrays": arrays}).encode(), 8, 4)
        if 4 + len(sub) <= start:
            sub += b" " * (start - 4 - len(sub))
            break
        start = 4 + len(sub)
    body = b"".join(b + b"\0" * ((-len(b)) % 8) for b in blobs)
    return struct.pack("<I", len(sub)) + sub + body


def step_body(sid: int, parent: int | None, kind: str, chunk_ids: list[int],
              camera: bool = True, **extra: Any) -> dict:
    body = {"id": sid, "parent": parent, "kind": kind, "chunk_ids": chunk_ids,
            "camera": random_camera(np.random.default_rng(sid)).to_dict() if camera else None,
            "point": None, "prompt": "", "backend": {}, "timings": {}, "created": "",
            "move_head": True}
    body.update(extra)
    return body


def small_chunk(seed: int, n: int = 16, **kw: Any):
    return random_chunk(np.random.default_rng(seed), n, **kw)


def minimal_world(chunk_n: int = 16) -> list[Record]:
    """META, one chunk, one image step."""
    return [("META", json_payload({"app": "fuzz"})),
            ("CHNK", chunk_payload(0, small_chunk(0, chunk_n))),
            ("STEP", json_payload(step_body(0, None, "image", [0])))]


# ---- base worlds (real files written by the real writer) --------------------------------
@lru_cache(maxsize=1)
def base_worlds() -> tuple[bytes, ...]:
    rng = np.random.default_rng(2024)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, codec in enumerate(["raw", "shuffle-zlib", "raw"]):
            h, chunks = History(), {}
            chunks[0] = random_chunk(rng, 40, sh_degree=i)
            chunks[1] = random_chunk(rng, 0)
            h.add(Step(0, None, "image", (0, 1), random_camera(rng), prompt="meadow",
                       backend={"name": "builtin", "version": "1", "seed": 1,
                                "settings": {"k": [1, 2.5, {"x": None}]}},
                       timings={"sr": 1.0}, created="2026-01-01T00:00:00Z"))
            path = Path(tmp) / f"w{i}.wzs"
            save_world(path, h, chunks, {"app": "fuzz", "n": i}, codec=codec)
            with WorldWriter.open(path, codec=codec) as w:
                w.append_step(Step(1, 0, "zoom", (2,), random_camera(rng), point=(0.1, 0.2, 3.0),
                                   prompt="sunflower"), {2: random_chunk(rng, 24, level=1)})
                w.append_step(Step(2, 0, "zoom", (3, 4), random_camera(rng), prompt="branch"),
                              {3: random_chunk(rng, 8, level=1), 4: random_chunk(rng, 5, level=1)})
                w.set_head(1)
            out.append(path.read_bytes())
    return tuple(out)


# ---- blind mutations --------------------------------------------------------------------
def flip_bytes(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def truncate(rng: np.random.Generator, data: bytes) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def insert_garbage(rng: np.random.Generator, data: bytes) -> bytes:
    i = int(rng.integers(0, len(data) + 1))
    return data[:i] + rng.bytes(int(rng.integers(1, 64))) + data[i:]


def delete_range(rng: np.random.Generator, data: bytes) -> bytes:
    i = int(rng.integers(0, len(data)))
    return data[:i] + data[i + int(rng.integers(1, 200)):]


def append_garbage(rng: np.random.Generator, data: bytes) -> bytes:
    return data + rng.bytes(int(rng.integers(1, 100)))


def shuffle_records(rng: np.random.Generator, data: bytes) -> bytes:
    records = split_records(data)
    op = int(rng.integers(0, 3))
    i = int(rng.integers(0, len(records)))
    if op == 0:
        records.insert(int(rng.integers(0, len(records) + 1)), records[i])  # duplicate
    elif op == 1:
        del records[i]  # drop
    else:
        j = int(rng.integers(0, len(records)))
        records[i], records[j] = records[j], records[i]  # swap
    return join_records(records)


# ---- structured mutations (checksums recomputed) ----------------------------------------
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def hostile_value(rng: np.random.Generator) -> Any:
    options: list[Any] = [math.nan, math.inf, -math.inf, 10 ** 30, -1, 2 ** 64, True, None, "",
                          [], {}, 1.5, "0", [1, 2, 3], {"__class__": "os.system"},
                          *HOSTILE_STRINGS, "\ud800", _nest(40), {"a": _nest(20)}]
    return options[int(rng.integers(0, len(options)))]


def _nest(depth: int) -> Any:
    v: Any = 0
    for _ in range(depth):
        v = [v]
    return v


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    cur = obj
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return obj


def mutate_json(rng: np.random.Generator, data: bytes) -> bytes:
    records = split_records(data)
    idx = [i for i, (tag, _) in enumerate(records) if tag != "CHNK"]
    i = idx[int(rng.integers(0, len(idx)))]
    tag, payload = records[i]
    body = json.loads(payload)
    paths = _paths(body)
    path = paths[int(rng.integers(0, len(paths)))]
    op = int(rng.integers(0, 4))
    if op == 0 and path and isinstance(body, dict):
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    elif op == 1 and isinstance(body, dict):
        body[str(HOSTILE_STRINGS[int(rng.integers(0, 4))])] = hostile_value(rng)
    else:
        body = _set(body, path, hostile_value(rng))
    text = json.dumps(body, allow_nan=True)
    records[i] = (tag, text_payload(text))
    return join_records(records)


def mutate_json_text(rng: np.random.Generator, data: bytes) -> bytes:
    """Replace one number token in a JSON record by a raw attack token (1e999, NaN, 10^5000...)."""
    records = split_records(data)
    idx = [i for i, (tag, _) in enumerate(records) if tag != "CHNK"]
    i = idx[int(rng.integers(0, len(idx)))]
    tag, payload = records[i]
    text = payload.decode().rstrip()
    digits = [k for k, c in enumerate(text) if c.isdigit() and (k == 0 or not text[k - 1].isalnum()
                                                             and text[k - 1] not in ".-")]
    if not digits:
        return data
    k = digits[int(rng.integers(0, len(digits)))]
    end = k
    while end < len(text) and (text[end].isdigit() or text[end] in ".eE+-"):
        end += 1
    token = JSON_NUMBER_ATTACKS[int(rng.integers(0, len(JSON_NUMBER_ATTACKS)))]
    records[i] = (tag, text_payload(text[:k] + token + text[end:]))
    return join_records(records)


def mutate_chunk_header(rng: np.random.Generator, data: bytes) -> bytes:
    records = split_records(data)
    idx = [i for i, (tag, _) in enumerate(records) if tag == "CHNK"]
    i = idx[int(rng.integers(0, len(idx)))]
    attacks: list[Callable[[dict], Any]] = [
        lambda h: h.update(n=2 ** 40), lambda h: h.update(n=h["n"] + 1),
        lambda h: h.update(n=-1), lambda h: h.update(sh_degree=7),
        lambda h: h.update(id="../../etc/passwd"), lambda h: h.update(id=0),
        lambda h: h.update(level=5000), lambda h: h.update(origin=[math.nan, 0, 0]),
        lambda h: h.update(origin=[1e300, 0, 0]), lambda h: h.update(origin="here"),
        lambda h: h.update(extra=1), lambda h: h.pop("arrays"),
        lambda h: h["arrays"].pop(), lambda h: h["arrays"].append(h["arrays"][0]),
        lambda h: _array(h, rng).update(shape=[2 ** 31, 3]),
        lambda h: _array(h, rng).update(offset=2 ** 62),
        lambda h: _array(h, rng).update(offset=-8),
        lambda h: _array(h, rng).update(offset=_array(h, rng)["offset"] + 4),
        lambda h: _array(h, rng).update(offset=h["arrays"][0]["offset"]),
        lambda h: _array(h, rng).update(nbytes=2 ** 62),
        lambda h: _array(h, rng).update(nbytes=0),
        lambda h: _array(h, rng).update(raw_nbytes=2 ** 40),
        lambda h: _array(h, rng).update(codec="pickle"),
        lambda h: _array(h, rng).update(codec="../../bin/sh"),
        lambda h: _array(h, rng).update(dtype="<f8"),
        lambda h: _array(h, rng).update(dtype="O"),
        lambda h: _array(h, rng).update(name="../../etc/passwd"),
        lambda h: _array(h, rng).update(name="positions"),
        lambda h: _array(h, rng).update(shape="[1, 2]"),
    ]
    attack = attacks[int(rng.integers(0, len(attacks)))]
    tag, payload = records[i]
    records[i] = (tag, reheader(payload, attack))
    return join_records(records)


def _array(head: dict, rng: np.random.Generator) -> dict:
    return head["arrays"][int(rng.integers(0, len(head["arrays"])))]


def poison_arrays(rng: np.random.Generator, data: bytes) -> bytes:
    """Overwrite floats of a raw array with NaN/Inf/absurd values (checksum recomputed)."""
    records = split_records(data)
    idx = [i for i, (tag, _) in enumerate(records) if tag == "CHNK"]
    i = idx[int(rng.integers(0, len(idx)))]
    tag, payload = records[i]
    (sub_len,) = struct.unpack_from("<I", payload)
    head = json.loads(payload[4:4 + sub_len])
    arrays = [a for a in head["arrays"] if a["codec"] == "raw" and a["nbytes"] >= 4]
    if not arrays:
        return data
    a = arrays[int(rng.integers(0, len(arrays)))]
    values = np.frombuffer(payload, "<f4", a["nbytes"] // 4, a["offset"]).copy()
    bad = [np.nan, np.inf, -np.inf, 1e30, -1.0, 0.0, 1e-45, 3e38]
    k = int(rng.integers(0, len(values)))
    values[k] = bad[int(rng.integers(0, len(bad)))]
    b = bytearray(payload)
    b[a["offset"]:a["offset"] + a["nbytes"]] = values.tobytes()
    records[i] = (tag, bytes(b))
    return join_records(records)


def recrc_flip(rng: np.random.Generator, data: bytes) -> bytes:
    """Flip payload bits and fix the checksums: the damage reaches the parsers."""
    records = split_records(data)
    i = int(rng.integers(0, len(records)))
    tag, payload = records[i]
    if not payload:
        return data
    b = bytearray(payload)
    for _ in range(int(rng.integers(1, 4))):
        b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
    records[i] = (tag, bytes(b))
    return join_records(records)


MUTATORS: tuple[Callable[[np.random.Generator, bytes], bytes], ...] = (
    flip_bytes, truncate, insert_garbage, delete_range, append_garbage, shuffle_records,
    mutate_json, mutate_json, mutate_json_text, mutate_chunk_header, mutate_chunk_header,
    poison_arrays, recrc_flip,
)


# ---- hand-crafted attacks ---------------------------------------------------------------
def _zlib_chunk(chunk_id: int, n: int, stream_for: Callable[[int], bytes],
                name: str | None = "positions") -> bytes:
    """A chunk whose `name` array (every array if None) is a crafted zlib stream; the others
    are valid raw data."""
    c = small_chunk(chunk_id, n if name is not None else 0)
    head = {"id": chunk_id, "level": 0, "origin": [0.0, 0.0, 0.0], "n": n, "sh_degree": 0,
            "arrays": []}
    blobs = []
    for nm in ARRAY_NAMES:
        shape = expected_shape(nm, n, 0)
        raw_nbytes = math.prod(shape) * 4
        if name is None or nm == name:
            blob, codec = stream_for(raw_nbytes), "shuffle-zlib"
        else:
            blob, codec = np.ascontiguousarray(getattr(c, nm), "<f4").tobytes(), "raw"
        head["arrays"].append({"name": nm, "dtype": "<f4", "shape": list(shape), "codec": codec,
                               "nbytes": len(blob), "raw_nbytes": raw_nbytes})
        blobs.append(blob)
    return chunk_from_parts(head, blobs)


def _world_with_chunk(payload: bytes, cid: int = 0) -> bytes:
    return join_records([("CHNK", payload), ("STEP", json_payload(step_body(0, None, "image",
                                                                              [cid])))])


def _header(version: int = 1, flags: int = 0, magic: bytes | None = None) -> bytes:
    h = bytearray(encode_file_header(version, flags))
    if magic is not None:
        h[:8] = magic
        h[20:24] = struct.pack("<I", zlib.crc32(bytes(h[:20])))
    return bytes(h)


def _raw_record(tag: bytes, payload: bytes, length: int | None = None, flags: int = 0) -> bytes:
    length = len(payload) if length is None else length
    head = struct.pack("<4sIQI", tag, flags, length, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


@lru_cache(maxsize=1)
def crafted_cases() -> tuple[tuple[str, bytes, str], ...]:
    base = minimal_world()
    cam = random_camera(np.random.default_rng(0)).to_dict()
    nan_cam = json.dumps(cam).replace(str(cam["fx"]), "NaN", 1)
    inf_cam = json.dumps(cam).replace(str(cam["fx"]), "1e999", 1)
    bad_pose = {**cam, "T_world_camera": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}
    big_int_cam = {**cam, "width": 10 ** 400}
    meta, chunk0, step0 = base

    def step_text(text: str) -> bytes:
        return join_records([meta, chunk0, ("STEP", text_payload(text))])

    def step_with(**extra: Any) -> bytes:
        body = {**step_body(0, None, "image", [0]), **extra}
        return join_records([meta, chunk0, ("STEP", json_payload(body))])

    zeros = lambda k: zlib.compress(b"\0" * k)  # noqa: E731
    huge_n = 1 << 22
    cases: list[tuple[str, bytes, str]] = [
        ("valid minimal", join_records(base), "loaded"),
        ("zlib bomb: 30-byte streams claim 48 MB each", _world_with_chunk(
            _zlib_chunk(0, huge_n, lambda raw: zeros(1024), name=None)), "refused"),
        ("zlib: all-zero arrays at ratio 1000 (legal, then invalid)", _world_with_chunk(
            _zlib_chunk(0, 1 << 16, lambda raw: zeros(raw), name=None)), "refused"),
        ("zlib bomb: stream longer than declared", _world_with_chunk(
            _zlib_chunk(0, 4096, lambda raw: zeros(raw * 64))), "refused"),
        ("zlib bomb: 64 MB stream for a 192-byte array", _world_with_chunk(
            _zlib_chunk(0, 16, lambda raw: _deflate_zeros(64 << 20))), "refused"),
        ("zlib: stream shorter than declared", _world_with_chunk(
            _zlib_chunk(0, 64, lambda raw: zeros(raw - 4))), "refused"),
        ("zlib: garbage stream", _world_with_chunk(
            _zlib_chunk(0, 64, lambda raw: b"\x78\x9c" + b"\xff" * 40)), "refused"),
        ("zlib: trailing data", _world_with_chunk(
            _zlib_chunk(0, 64, lambda raw: zlib.compress(_shuffled_ones(raw)) + b"tail")),
         "refused"),
        ("zlib: valid stream", _world_with_chunk(
            _zlib_chunk(0, 64, lambda raw: zlib.compress(_shuffled_ones(raw)),
                        name="s_native")), "loaded"),
        ("huge length mid-file (valid header crc)", join_records([meta]) + _raw_record(
            b"CHNK", b"", length=(1 << 63) - 8) + join_records([chunk0, step0], b""), "loaded"),
        ("huge JSON record length", join_records([meta]) + _raw_record(
            b"STEP", b"{}      ", length=1 << 40), "loaded"),
        ("STEP over the JSON limit", join_records([meta, ("STEP", pad_to(
            b'{"prompt":"' + b"a" * (5 << 20) + b'"}'))]), "refused"),
        ("huge n", _world_with_chunk(reheader(chunk0[1], lambda h: h.update(n=1 << 40))), "refused"),
        ("n at the per-chunk limit without data", _world_with_chunk(
            reheader(chunk0[1], lambda h: h.update(n=huge_n) or [
                a.update(shape=[huge_n, *a["shape"][1:]],
                         raw_nbytes=a["raw_nbytes"] // 16 * huge_n,
                         nbytes=a["nbytes"] // 16 * huge_n) for a in h["arrays"]])), "refused"),
        ("shape lies", _world_with_chunk(reheader(
            chunk0[1], lambda h: h["arrays"][0].update(shape=[16, 300]))), "refused"),
        ("NaN in positions", _poisoned(base, "positions", np.nan), "refused"),
        ("Inf in sh_dc", _poisoned(base, "sh_dc", np.inf), "refused"),
        ("negative s_native", _poisoned(base, "s_native", -1.0), "refused"),
        ("zero quaternion", _poisoned(base, "rotations", 0.0, count=4), "refused"),
        ("NaN origin", _world_with_chunk(reheader(
            chunk0[1], lambda h: h.update(origin=[math.nan, 0.0, 0.0]))), "refused"),
        ("NaN in camera JSON", step_text(json.dumps(step_body(0, None, "image", [0])).replace(
            json.dumps(step_body(0, None, "image", [0])["camera"]), nan_cam)), "refused"),
        ("1e999 in camera JSON", step_text(json.dumps(step_body(0, None, "image", [0])).replace(
            json.dumps(step_body(0, None, "image", [0])["camera"]), inf_cam)), "refused"),
        ("non-rigid camera pose", step_with(camera=bad_pose), "refused"),
        ("10^400 camera width", step_with(camera=big_int_cam), "refused"),
        ("camera with a string pose", step_with(camera={**cam, "T_world_camera": "eye"}),
         "refused"),
        ("deep JSON 40", step_with(backend={"settings": _nest(40)}), "refused"),
        ("deep JSON 100000", step_text('{"id":0,"backend":' + "[" * 100000 + "]" * 100000 + "}"),
         "refused"),
        ("huge integer literal", step_text('{"id":' + "9" * 5000 + "}"), "refused"),
        ("duplicate JSON keys", step_text('{"id":0,"id":1,"parent":null,"kind":"image",'
                                          '"chunk_ids":[0]}'), "refused"),
        ("invalid UTF-8", join_records([meta, chunk0, ("STEP", pad_to(b'{"id":"\xff\xfe"}'))]),
         "refused"),
        ("lone surrogate prompt", step_text(
            json.dumps(step_body(0, None, "image", [0], prompt="\ud800"))), "refused"),
        ("traversal prompt and backend (plain text, fine)", step_with(
            prompt="../../etc/passwd", backend={"name": "../../etc/passwd", "version": "/dev/sda",
                                                "seed": 1, "settings": {"path": "/etc/shadow"}}),
         "loaded"),
        ("traversal chunk id", step_with(chunk_ids=["../../etc/passwd"]), "refused"),
        ("traversal kind", step_with(kind="../../etc/passwd"), "refused"),
        ("traversal array name", _world_with_chunk(reheader(
            chunk0[1], lambda h: h["arrays"][0].update(name="../../etc/passwd"))), "refused"),
        ("traversal codec", _world_with_chunk(reheader(
            chunk0[1], lambda h: h["arrays"][0].update(codec="../../bin/sh"))), "refused"),
        ("pickle codec", _world_with_chunk(reheader(
            chunk0[1], lambda h: h["arrays"][0].update(codec="pickle"))), "refused"),
        ("object dtype", _world_with_chunk(reheader(
            chunk0[1], lambda h: h["arrays"][0].update(dtype="O"))), "refused"),
        ("wrong magic", _header(magic=b"WZSAVE01") + join_records(base, b""), "refused"),
        ("pickle file", b"\x80\x05\x95" + b"\0" * 64, "refused"),
        ("newer version", _header(FORMAT_VERSION + 1) + join_records(base, b""), "refused"),
        ("version 0", _header(0) + join_records(base, b""), "refused"),
        ("header flags", _header(1, flags=1) + join_records(base, b""), "refused"),
        ("record flags", join_records([meta]) + _raw_record(b"META", b"{}      ", flags=4),
         "refused"),
        ("unknown tag", join_records([*base, ("EXEC", json_payload({"cmd": "rm -rf /"}))]),
         "refused"),
        ("misaligned length", join_records([meta]) + _raw_record(b"META", b"{}     "), "refused"),
        ("duplicate chunk ids", join_records([meta, chunk0, chunk0, step0]), "refused"),
        ("duplicate step ids", join_records([*base, step0]), "refused"),
        ("chunk claimed twice", join_records([*base, ("STEP", json_payload(
            step_body(1, 0, "zoom", [0])))]), "refused"),
        ("chunk listed twice", step_with(chunk_ids=[0, 0]), "refused"),
        ("step before its chunk", join_records([meta, step0, chunk0]), "refused"),
        ("missing chunk", step_with(chunk_ids=[7]), "refused"),
        ("parent cycle", join_records([meta, chunk0, ("STEP", json_payload(step_body(
            0, 1, "image", [0]))), ("STEP", json_payload(step_body(1, 0, "zoom", [])))]),
         "refused"),
        ("self parent", step_with(parent=0), "refused"),
        ("zoom without parent", step_with(kind="zoom"), "refused"),
        ("head to nowhere", join_records([*base, ("HEAD", json_payload({"head": 99}))]),
         "refused"),
        ("head as bool", join_records([*base, ("HEAD", json_payload({"head": True}))]),
         "refused"),
        ("head before its step", join_records([meta, ("HEAD", json_payload({"head": 0})),
                                               chunk0, step0]), "refused"),
        ("bool step id", step_with(id=True), "refused"),
        ("float step id", step_with(id=0.0), "refused"),
        ("negative timing", step_with(timings={"sr": -1.0}), "refused"),
        ("too many chunk ids", step_with(chunk_ids=list(range(5000))), "refused"),
        ("meta as list", join_records([("META", json_payload([1, 2])), chunk0, step0]),
         "refused"),
        ("meta too big", join_records([("META", json_payload({"x": "a" * 4000, **{
            str(i): "b" * 100 for i in range(1000)}})), chunk0, step0]), "refused"),
        ("20000 HEAD records", join_records([*base, *[("HEAD", json_payload({"head": 0}))] * 20000]),
         "loaded"),
        ("empty chunk", _world_with_chunk(chunk_payload(0, small_chunk(1, 0))), "loaded"),
        ("orphan chunk only", join_records([meta, chunk0]), "loaded"),
        ("empty file", b"", "refused"),
        ("header only", encode_file_header(), "loaded"),
        ("torn header", encode_file_header()[:13], "refused"),
        # deep and wide histories: every history query is linear and iterative
        ("5000-step chain", deep_chain(5000), "loaded"),
        ("5000-child star", wide_star(5000), "loaded"),
        # decode amplification: a small file of constant arrays claiming gigabytes
        ("1 MB of constant SH3 arrays", constant_world(1 << 20), "refused"),
        ("constant arrays within 8x", constant_world(1 << 14, splats=400), "loaded"),
        # what a terminal must not receive raw
        ("escape sequences in a prompt", step_with(prompt="\x1b]0;pwned\x07\x1b[2J\r[9] fake"),
         "loaded"),
    ]
    return tuple(cases)


# ---- LINK records (format version 2) ------------------------------------------------------
@lru_cache(maxsize=1)
def linked_world() -> bytes:
    """A small version-2 world whose zoom steps store real links (arrays of both kinds)."""
    history, chunks = levels_history(nested_plane_world(levels=3, factor=4.0, size=24),
                                     max_chunk_splats=200)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "linked.wzs"
        save_world(path, history, chunks, {"app": "fuzz"})
        return path.read_bytes()


def _links(records: list[Record]) -> list[int]:
    return [k for k, (tag, _) in enumerate(records) if tag == "LINK"]


def _table(payload: bytes) -> tuple[int, np.ndarray, bytes]:
    step, count, _ = LINK_HEADER.unpack_from(payload)
    start = LINK_HEADER.size
    return step, np.frombuffer(payload[start:start + count * ENTRY.itemsize], ENTRY).copy(), \
        payload[start + count * ENTRY.itemsize:]


def _link_payload(step: int, entries: np.ndarray, arrays: bytes, count: int | None = None) -> bytes:
    """A LINK payload with a correct table checksum (whatever the table says)."""
    table = entries.tobytes()
    return (LINK_HEADER.pack(step, len(entries) if count is None else count, zlib.crc32(table))
            + table + arrays)


def _with_link(mutate: Callable[[int, np.ndarray, bytes], bytes], which: int = -1) -> bytes:
    records = split_records(linked_world())
    k = _links(records)[which]
    step, entries, arrays = _table(records[k][1])
    records[k] = ("LINK", mutate(step, entries, arrays))
    return join_records(records, encode_file_header())


def _entry_set(field: str, value: Any, row: int = 0) -> Callable[[int, np.ndarray, bytes], bytes]:
    def mutate(step: int, entries: np.ndarray, arrays: bytes) -> bytes:
        entries[row][field] = value
        return _link_payload(step, entries, arrays)
    return mutate


def _poison_array(value: float, kind: int) -> Callable[[int, np.ndarray, bytes], bytes]:
    """Write `value` into the first array of an entry of `kind` (2: s_parent, 3: s_child),
    with every checksum made right."""
    def mutate(step: int, entries: np.ndarray, arrays: bytes) -> bytes:
        row = int(np.flatnonzero(entries["kind"] == kind)[0])
        sizes = [4 * int(e["n"]) if e["kind"] != 1 else 0 for e in entries]
        at = sum(size + (-size) % 8 for size in sizes[:row])
        data = bytearray(arrays)
        data[at:at + 4] = np.array([value], "<f4").tobytes()
        entries[row]["crc"] = zlib.crc32(bytes(data[at:at + sizes[row]]))
        return _link_payload(step, entries, bytes(data))
    return mutate


@lru_cache(maxsize=1)
def linked_cases() -> tuple[tuple[str, bytes, str], ...]:
    base = linked_world()
    records = split_records(base)
    links = _links(records)
    v2 = encode_file_header()

    def moved(k_from: int, k_to: int) -> bytes:
        out = list(records)
        out.insert(k_to, out.pop(k_from))
        return join_records(out, v2)

    step_after = next(k for k in range(links[-1], len(records)) if records[k][0] == "STEP")
    cases = [
        ("linked world", base, "loaded"),
        ("no LINK before a step", join_records(
            [r for k, r in enumerate(records) if k != links[-1]], v2), "refused"),
        ("LINK after its STEP", moved(links[-1], step_after), "refused"),
        ("LINK twice", join_records(records[:links[-1] + 1] + [records[links[-1]]]
                                    + records[links[-1] + 1:], v2), "refused"),
        ("LINK in a version-1 file", join_records(records, encode_file_header(1)), "refused"),
        ("bad table checksum", _with_link(
            lambda step, e, a: LINK_HEADER.pack(step, len(e), 0) + e.tobytes() + a), "refused"),
        ("huge entry count", _with_link(
            lambda step, e, a: _link_payload(step, e, a, count=1 << 31)), "refused"),
        ("entry count past the record", _with_link(
            lambda step, e, a: _link_payload(step, e, a, count=len(e) + 1)), "refused"),
        ("unknown entry kind", _with_link(_entry_set("kind", 7)), "refused"),
        ("wrong splat count", _with_link(_entry_set("n", 3)), "refused"),
        ("NaN band", _with_link(_entry_set("band_lo", math.nan)), "refused"),
        ("negative band", _with_link(_entry_set("band_hi", -1.0)), "refused"),
        ("Inf box", _with_link(_entry_set("hi", [math.inf, 0, 0])), "refused"),
        ("box inside out", _with_link(_entry_set("lo", [1e9, 1e9, 1e9])), "refused"),
        ("a chunk that does not exist", _with_link(_entry_set("chunk_id", 9999)), "refused"),
        ("step id of another step", _with_link(
            lambda step, e, a: _link_payload(step + 100, e, a)), "refused"),
        ("arrays short of the record", _with_link(
            lambda step, e, a: _link_payload(step, e, a + b"\0" * 8)), "refused"),
        ("NaN s_parent (checksums right)", _with_link(_poison_array(math.nan, 2)), "refused"),
        ("zero s_parent (checksums right)", _with_link(_poison_array(0.0, 2)), "refused"),
        ("negative s_child (checksums right)", _with_link(_poison_array(-1.0, 3)), "refused"),
        ("Inf s_child (checksums right)", _with_link(_poison_array(math.inf, 3)), "refused"),
        ("array checksum wrong", _with_link(
            lambda step, e, a: _link_payload(step, e, bytes([a[0] ^ 1]) + a[1:])), "refused"),
        ("entries out of order", _with_link(
            lambda step, e, a: _link_payload(step, e[::-1].copy(), a)), "refused"),
    ]
    return tuple(cases)


def deep_chain(n: int, camera: bool = False, rich: bool = False) -> bytes:
    """A chain of `n` steps (each the child of the one before), one chunk at the root.
    `rich`: each zoom step also carries what a grown one does (backend, timings, created
    time, a longer prompt): ~340 bytes a step, the shape of the hostile-input audit's chain."""
    meta, chunk0, _ = minimal_world()
    steps = [("STEP", json_payload(step_body(0, None, "image", [0], camera=camera)))]
    for i in range(1, n):
        extra = dict(prompt=f"a ladybug on petal {i}", backend={"name": "builtin",
                     "version": "1", "seed": i}, created="2026-12-06T17:00:00+00:00",
                     timings={"observe": 1.25, "optimize": 20.5, "total": 25.0}
                     ) if rich else dict(prompt=f"step {i}")
        steps.append(("STEP", json_payload(step_body(i, i - 1, "zoom", [], camera=camera,
                                                     **extra))))
    return join_records([meta, chunk0, *steps])


def wide_star(n: int) -> bytes:
    """A root with `n - 1` children (branches everywhere: a stress for the tree drawing)."""
    meta, chunk0, _ = minimal_world()
    steps = [("STEP", json_payload(step_body(0, None, "image", [0], camera=False)))]
    steps += [("STEP", json_payload(step_body(i, 0, "zoom", [], camera=False)))
              for i in range(1, n)]
    return join_records([meta, chunk0, *steps])


def constant_world(file_bytes: int, splats: int | None = None) -> bytes:
    """A world of one SH-degree-3 chunk of constant arrays, shuffle-zlib compressed: about
    `file_bytes` on disk for as many splats as fit (or `splats`), decoding to ~230x that."""
    n = splats if splats is not None else max(1, min(file_bytes * 225 // 236, 1 << 22))
    chunk = SplatChunk(np.zeros(3), np.zeros((n, 3), np.float32),
                       np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
                       np.full((n, 3), -4.0, np.float32), np.zeros(n, np.float32),
                       np.zeros((n, 3), np.float32), np.full(n, 1e-3, np.float32), level=0,
                       sh_rest=np.zeros((n, 15, 3), np.float32))
    meta, _, step0 = minimal_world()
    return join_records([meta, ("CHNK", chunk_payload(0, chunk, codec="shuffle-zlib")), step0])


def _deflate_zeros(n: int) -> bytes:
    """A zlib stream of n zero bytes, built without holding them in memory."""
    c = zlib.compressobj(9)
    block = bytes(1 << 20)
    out = [c.compress(block) for _ in range(n >> 20)]
    return b"".join(out) + c.flush()


def _shuffled_ones(raw_nbytes: int) -> bytes:
    ones = np.full(raw_nbytes // 4, 1e-3, "<f4").view(np.uint8)
    return np.ascontiguousarray(ones.reshape(-1, 4).T).tobytes()


def _poisoned(base: list[Record], name: str, value: float, count: int = 1) -> bytes:
    records = list(base)
    payload = records[1][1]
    (sub_len,) = struct.unpack_from("<I", payload)
    head = json.loads(payload[4:4 + sub_len])
    a = next(a for a in head["arrays"] if a["name"] == name)
    b = bytearray(payload)
    b[a["offset"]:a["offset"] + 4 * count] = np.full(count, value, "<f4").tobytes()
    records[1] = ("CHNK", bytes(b))
    return join_records(records)


# ---- running ----------------------------------------------------------------------------
def fuzz_case(seed: int) -> tuple[str, bytes]:
    """A deterministic damaged file: one or two mutations of one of the base worlds."""
    rng = np.random.default_rng(seed)
    worlds = base_worlds()
    data = worlds[int(rng.integers(0, len(worlds)))]
    names = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        mutator = MUTATORS[int(rng.integers(0, len(MUTATORS)))]
        try:
            data = mutator(rng, data)
        except (ValueError, IndexError, KeyError, TypeError, json.JSONDecodeError):
            pass  # a mutation that does not apply to already-damaged data: keep what we have
        names.append(mutator.__name__)
    return "+".join(names), data


@dataclass(frozen=True)
class Outcome:
    kind: str  # "loaded", "refused" or "other"
    detail: str
    seconds: float
    peak_bytes: int  # traced Python + numpy allocations during the load


def streamed_reads(path: Path, limits: LoadLimits) -> bool:
    """The streaming reader on the file: open it by its index, then read every chunk and
    its links on the path to the head, as a streamed world would. True if every read worked;
    a damaged chunk raises SaveFormatError (refused alone)."""
    with open_world(path, limits) as world:
        history = world.history
        if history.head is None:
            return True
        source = world.source
        plan = plan_path(history, source)
        ok = True
        for cid, child in plan.child_step.items():
            source.meta(cid)
            try:
                source.read_chunk(cid)
                source.read_links(cid, child)
            except SaveFormatError:
                ok = False
        return ok


def run_case(data: bytes, path: Path, limits: LoadLimits = LoadLimits(),
             trace: bool = True) -> Outcome:
    """The three readers on the file — `read_world_info` (info, history, checkout),
    `load_world`, and `open_world` with every chunk of the head's path read on demand (the
    streamed app, render, export) — then the history queries every command makes (drawing
    the tree, levels); they must agree on whether the file is refused: the index readers
    refuse what `read_world_info` refuses, and a file `load_world` loads streams whole."""
    path.write_bytes(data)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    try:
        try:
            info = read_world_info(path, limits)
            info.history.render_tree()
            info.history.depths()
            indexed = True
        except SaveFormatError:
            indexed = False
        try:
            streamed = streamed_reads(path, limits)
        except SaveFormatError:
            streamed = None
        try:
            world = load_world(path, limits)
            kind, detail = "loaded", f"{len(world.history)} steps, {len(world.chunks)} chunks"
            if not indexed:
                kind, detail = "other", "read_world_info refused a file load_world loads"
            elif not streamed:
                kind, detail = "other", "the streamed reader refused a file load_world loads"
        except SaveFormatError as exc:
            kind, detail = "refused", str(exc)
        if indexed and streamed is None and read_world_info(path, limits).format_version >= 2:
            kind, detail = "other", "open_world refused an index read_world_info accepts"
    except BaseException as exc:  # noqa: BLE001 - the point is to catch everything
        kind, detail = "other", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Outcome(kind, detail, seconds, peak)
