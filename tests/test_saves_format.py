"""The `.wzs` world file: round trips, appends, heads, orphans, torn tails, versions, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.history import History, HistoryError, Step
from engine.splats import SplatChunk
from saves import (FORMAT_VERSION, LoadLimits, SaveFormatError, WorldBusyError, WorldWriter,
                   load_world, save_world)
from saves import format as fmt
from saves.chunks import encode_chunk
from saves import steps as steps_mod
from saves.records import (FILE_HEADER, MAGIC, encode_file_header, encode_json_record,
                           encode_record, parse_json, record_nbytes)
from saves.steps import step_from_json
from tests.factories import random_camera, random_chunk

ARRAYS = ("origin", "positions", "rotations", "log_scales", "opacity_logits", "sh_dc", "s_native",
          "sh_rest")


# ---- helpers ---------------------------------------------------------------------------
def branched_world(seed: int = 0) -> tuple[History, dict[int, SplatChunk]]:
    """image(0) -> zoom(1) -> zoom(2); zoom(3) branches from 1; import(4) is a second root."""
    rng = np.random.default_rng(seed)
    h, chunks = History(), {}
    plan = [  # (step id, parent, kind, [(n, level, sh_degree)], move_head)
        (0, None, "image", [(200, 0, 0), (0, 0, 0)], True),
        (1, 0, "zoom", [(120, 1, 1)], True),
        (2, 1, "zoom", [(80, 2, 3), (33, 2, 2)], True),
        (3, 1, "zoom", [(50, 2, 0)], False),
        (4, None, "import", [(10, 0, 0)], False),
    ]
    next_chunk = 0
    for sid, parent, kind, specs, move in plan:
        ids = []
        for n, level, degree in specs:
            chunks[next_chunk] = random_chunk(rng, n, level=level, sh_degree=degree)
            ids.append(next_chunk)
            next_chunk += 1
        h.add(Step(sid, parent, kind, tuple(ids), None if kind == "import" else random_camera(rng),
                   point=None if parent is None else tuple(rng.normal(size=3).tolist()),
                   prompt=f"prompt {sid} ünïcode ✓", created="2026-01-01T00:00:00Z",
                   backend={"name": "builtin", "version": "0.1", "seed": sid,
                            "settings": {"steps": 20, "scale": 7.5, "tags": ["a", None, True]}},
                   timings={"observe": 0.25, "optimize": 3.0 + sid}), move_head=move)
    return h, chunks


def assert_chunks_equal(a: SplatChunk, b: SplatChunk) -> None:
    assert a.level == b.level
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name  # bit-identical


def assert_steps_equal(a: Step, b: Step) -> None:
    for name in ("id", "parent", "kind", "chunk_ids", "point", "prompt", "created"):
        assert getattr(a, name) == getattr(b, name), name
    assert dict(a.backend) == dict(b.backend)
    assert dict(a.timings) == dict(b.timings)
    assert (a.camera is None) == (b.camera is None)
    if a.camera is not None:
        assert a.camera.to_dict() == b.camera.to_dict()


def assert_world_equal(world, history: History, chunks: dict[int, SplatChunk]) -> None:
    assert world.history.head == history.head
    assert sorted(world.history.steps) == sorted(history.steps)
    for sid, step in history.steps.items():
        assert_steps_equal(world.history.steps[sid], step)
    assert sorted(world.chunks) == sorted(chunks)
    for cid, chunk in chunks.items():
        assert_chunks_equal(world.chunks[cid], chunk)


def refused(path: Path, limits: LoadLimits = LoadLimits()) -> str:
    with pytest.raises(SaveFormatError) as info:
        load_world(path, limits)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and 0 < len(message) <= 300
    return message


def sha(path: Path, nbytes: int | None = None) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data if nbytes is None else data[:nbytes]).hexdigest()


@pytest.fixture
def world_file(tmp_path: Path) -> tuple[Path, History, dict[int, SplatChunk]]:
    history, chunks = branched_world()
    path = tmp_path / "world.wzs"
    save_world(path, history, chunks, {"app": "test", "image": {"w": 640, "h": 480}})
    return path, history, chunks


# ---- round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["raw", "shuffle-zlib"])
def test_round_trip_branched_history(tmp_path: Path, codec: str) -> None:
    history, chunks = branched_world(1)
    path = tmp_path / "w.wzs"
    save_world(path, history, chunks, {"app": "WonderZoom", "version": "0.1"}, codec=codec)
    world = load_world(path)
    assert_world_equal(world, history, chunks)
    assert world.meta == {"app": "WonderZoom", "version": "0.1"}
    assert world.ignored_tail_bytes == 0 and world.orphan_chunk_ids == ()
    assert world.format_version == FORMAT_VERSION == 2
    assert world.history.path()[-1].id == 2
    assert world.history.chunk_ids_at(3) == history.chunk_ids_at(3)
    assert not [p for p in tmp_path.iterdir() if p.name != "w.wzs"]  # no temporary left over


def test_round_trip_empty_world(tmp_path: Path) -> None:
    save_world(tmp_path / "e.wzs", History(), {})
    world = load_world(tmp_path / "e.wzs")
    assert len(world.history) == 0 and world.history.head is None and world.chunks == {}


def test_save_replaces_atomically_and_keeps_old_file_on_error(world_file) -> None:
    path, history, chunks = world_file
    before = sha(path)
    bad = dict(chunks)
    c = chunks[0]
    bad[0] = SplatChunk(c.origin, c.positions, c.rotations, c.log_scales,
                        np.full_like(c.opacity_logits, np.nan), c.sh_dc, c.s_native)
    with pytest.raises(ValueError):
        save_world(path, history, bad)
    assert sha(path) == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    with pytest.raises(ValueError, match="not referenced"):
        save_world(path, history, {**chunks, 99: chunks[0]})
    with pytest.raises(ValueError, match="not given"):
        save_world(path, history, {k: v for k, v in chunks.items() if k})
    save_world(path, History(), {})
    assert len(load_world(path).history) == 0


# ---- appends ---------------------------------------------------------------------------
class CountingWriter(WorldWriter):
    written = 0

    def _write(self, parts) -> None:
        type(self).written += sum(p.nbytes for p in parts)
        super()._write(parts)


def test_append_step_writes_only_the_step(world_file) -> None:
    path, history, chunks = world_file
    size, prefix = path.stat().st_size, sha(path)
    rng = np.random.default_rng(7)
    new = {100: random_chunk(rng, 5000, level=3), 101: random_chunk(rng, 100, level=3)}
    step = Step(5, 2, "zoom", (100, 101), random_camera(rng), prompt="ladybug")
    CountingWriter.written = 0
    with CountingWriter.open(path) as writer:
        writer.append_step(step, new)
        assert writer.history.head == 5 and writer.chunk_ids >= {100, 101}
    raw = sum(c.nbytes() for c in new.values())
    grown = path.stat().st_size - size
    assert CountingWriter.written == grown
    assert raw <= grown <= raw + 4096
    assert sha(path, size) == prefix  # nothing before the append changed
    world = load_world(path)
    history.add(step)
    assert_world_equal(world, history, {**chunks, **new})


def test_a_step_that_links_nothing_stores_no_link_record(world_file, tmp_path: Path) -> None:
    """A prompt-only step (no chunks, covering none) appends just its STEP record; readers
    give it empty links, copies keep it so, and a step *with* chunks and no LINK is refused."""
    from saves.records import FileSource, scan_records
    from saves.world_file import copy_world, open_world

    path, history, chunks = world_file
    size = path.stat().st_size
    step = Step(5, 2, "zoom", (), random_camera(np.random.default_rng(3)), prompt="just words")
    with WorldWriter.open(path) as writer:
        links = writer.append_step(step, {})
    assert not links.parents and not links.children

    def tags(p: Path) -> list[str]:
        fd = os.open(p, os.O_RDONLY)
        try:
            return [r.tag for r in scan_records(FileSource(fd, os.fstat(fd).st_size),
                                                LoadLimits()).records]
        finally:
            os.close(fd)

    assert tags(path)[-1:] == ["STEP"] and tags(path).count("STEP") == len(history) + 1
    assert path.stat().st_size - size < 1024
    history.add(step)
    assert_world_equal(load_world(path), history, chunks)
    copy = tmp_path / "copy.wzs"
    with open_world(path) as src:
        assert not src.step_links(5).parents
        copy_world(src, copy)
    assert tags(copy).count("LINK") == tags(path).count("LINK")
    assert_world_equal(load_world(copy), history, chunks)


def test_set_head_and_meta_append_small_records(world_file) -> None:
    path, history, _ = world_file
    size = path.stat().st_size
    with WorldWriter.open(path) as writer:
        writer.set_head(3)
        assert path.stat().st_size - size <= 64
        with pytest.raises(HistoryError):
            writer.set_head(42)
        writer.set_meta({"app": "test", "title": "meadow"})
    world = load_world(path)
    assert world.history.head == 3 and world.meta["title"] == "meadow"
    with WorldWriter.open(path) as writer:
        writer.set_head(0)
        writer.append_step(Step(9, 0, "zoom", (50,), random_camera(np.random.default_rng(0))),
                           {50: random_chunk(np.random.default_rng(1), 10)}, move_head=False)
    world = load_world(path)
    assert world.history.head == 0 and world.history.steps[9].parent == 0


def test_append_refuses_bad_steps_and_leaves_file_unchanged(world_file) -> None:
    path, _, _ = world_file
    before = sha(path)
    rng = np.random.default_rng(3)
    good = random_chunk(rng, 10)
    c = random_chunk(rng, 10)
    nan_chunk = SplatChunk(c.origin, c.positions * np.float32(np.nan), c.rotations, c.log_scales,
                           c.opacity_logits, c.sh_dc, c.s_native)
    cam = random_camera(rng)
    with WorldWriter.open(path) as writer:
        with pytest.raises(HistoryError):
            writer.append_step(Step(1, 0, "zoom", (60,), cam), {60: good})  # duplicate step id
        with pytest.raises(HistoryError):
            writer.append_step(Step(60, 77, "zoom", (60,), cam), {60: good})  # unknown parent
        with pytest.raises(ValueError, match="already stored"):
            writer.append_step(Step(60, 0, "zoom", (0,), cam), {0: good})
        with pytest.raises(ValueError, match="differ"):
            writer.append_step(Step(60, 0, "zoom", (60,), cam), {61: good})
        with pytest.raises(ValueError):
            writer.append_step(Step(60, 0, "zoom", (60, 61), cam), {60: good, 61: nan_chunk})
        with pytest.raises(ValueError):
            writer.append_step(Step(60, 0, "zoom", (60,), cam, prompt="x" * 5000), {60: good})
    assert sha(path) == before


def test_second_writer_is_refused(world_file) -> None:
    path, _, _ = world_file
    with WorldWriter.open(path):
        with pytest.raises(WorldBusyError):
            WorldWriter.open(path)
    WorldWriter.open(path).close()


def test_write_failure_rolls_back(world_file) -> None:
    path, history, chunks = world_file
    before = sha(path)

    class FailingWriter(WorldWriter):
        def _write(self, parts) -> None:
            os.write(self.fd, parts[0][:10])
            raise OSError(28, "No space left on device")

    rng = np.random.default_rng(0)
    with FailingWriter.open(path) as writer:
        with pytest.raises(OSError):
            writer.append_step(Step(7, 0, "zoom", (70,), random_camera(rng)),
                               {70: random_chunk(rng, 100)})
    assert sha(path) == before
    assert_world_equal(load_world(path), history, chunks)


# ---- crashes: orphans and torn tails ---------------------------------------------------
def append_raw(path: Path, parts_list) -> None:
    with open(path, "ab") as f:
        for parts in parts_list:
            for p in parts:
                f.write(p)


def test_orphan_chunks_are_ignored_and_truncated(world_file) -> None:
    path, history, chunks = world_file
    size = path.stat().st_size
    rng = np.random.default_rng(5)
    orphan = random_chunk(rng, 30)
    append_raw(path, [encode_record("CHNK", encode_chunk(200, orphan))])
    world = load_world(path)
    assert_world_equal(world, history, chunks)
    assert world.orphan_chunk_ids == (200,)
    with WorldWriter.open(path) as writer:  # drops the orphan: its id is free again
        assert path.stat().st_size == size
        writer.append_step(Step(5, 4, "import", (200,)), {200: random_chunk(rng, 12)})
    world = load_world(path)
    assert len(world.chunks[200]) == 12 and world.orphan_chunk_ids == ()


def test_orphan_in_the_middle_is_ignored(world_file) -> None:
    path, history, chunks = world_file
    rng = np.random.default_rng(6)
    append_raw(path, [encode_record("CHNK", encode_chunk(300, random_chunk(rng, 4)))])
    with WorldWriter.open(path) as writer:
        pass  # truncates the orphan
    append_raw(path, [encode_record("CHNK", encode_chunk(300, random_chunk(rng, 4))),
                      encode_json_record("HEAD", {"head": 1})])
    world = load_world(path)
    assert world.orphan_chunk_ids == (300,) and world.history.head == 1
    with WorldWriter.open(path) as writer:  # a committed record follows: the orphan stays
        with pytest.raises(ValueError, match="already stored"):
            writer.append_step(Step(8, 1, "zoom", (300,), random_camera(rng)),
                               {300: random_chunk(rng, 4)})


def test_torn_tail_is_ignored_by_load_and_truncated_by_open(world_file, tmp_path: Path) -> None:
    path, history, chunks = world_file
    size = path.stat().st_size
    rng = np.random.default_rng(8)
    new = {400: random_chunk(rng, 300), 401: random_chunk(rng, 3)}
    step = Step(5, 3, "zoom", (400, 401), random_camera(rng), prompt="petal")
    with WorldWriter.open(path) as writer:
        writer.append_step(step, new)
    full = path.read_bytes()
    after = History(dict(history.steps), history.head)
    after.add(step)
    cuts = sorted({size + 1, size + 23, size + 24, size + 100, len(full) - 1, len(full) - 30,
                   *rng.integers(size, len(full), 20).tolist()})
    for cut in cuts:
        torn = tmp_path / "torn.wzs"
        torn.write_bytes(full[:cut])
        world = load_world(torn)
        assert_world_equal(world, history, chunks)  # the step is not there, nothing else lost
        with WorldWriter.open(torn) as writer:
            assert torn.stat().st_size == size
            writer.append_step(step, new)
        assert_world_equal(load_world(torn), after, {**chunks, **new})


def test_bad_checksum_in_a_complete_record_is_refused(world_file) -> None:
    path, _, _ = world_file
    data = bytearray(path.read_bytes())
    data[FILE_HEADER.size + 30] ^= 0x01  # inside the META payload
    path.write_bytes(bytes(data))
    assert "checksum" in refused(path)


# ---- versions and migration ------------------------------------------------------------
def test_newer_version_is_refused(world_file) -> None:
    path, _, _ = world_file
    data = path.read_bytes()
    path.write_bytes(encode_file_header(FORMAT_VERSION + 1) + data[FILE_HEADER.size:])
    assert "newer WonderZoom" in refused(path)
    path.write_bytes(encode_file_header(0) + data[FILE_HEADER.size:])
    assert "version 0" in refused(path)


def test_migration_hook_upgrades_records(world_file) -> None:
    path, history, chunks = world_file

    def upgrade(records):
        out = []
        for rec in records:
            if rec.tag == "STEP":
                rec = type(rec)(rec.tag, rec.offset, rec.length,
                                {**rec.body, "prompt": rec.body["prompt"].upper()}, rec.data_start)
            out.append(rec)
        return out

    newer = FORMAT_VERSION + 1  # as if this file were a version behind
    world = fmt._load(path, LoadLimits(), {FORMAT_VERSION: upgrade}, current=newer)
    assert world.history.steps[1].prompt == history.steps[1].prompt.upper()
    with pytest.raises(SaveFormatError, match="no upgrade"):
        fmt._load(path, LoadLimits(), {}, current=newer)


# ---- refusals --------------------------------------------------------------------------
def test_not_a_world_file(tmp_path: Path) -> None:
    for name, data in [("empty", b""), ("text", b"hello world, not a save" * 3),
                       ("short", MAGIC), ("pickle", b"\x80\x04\x95" + b"\0" * 40)]:
        p = tmp_path / name
        p.write_bytes(data)
        refused(p)
    assert "No such file" in refused(tmp_path / "missing.wzs")
    assert "not a regular file" in refused(tmp_path)
    fifo = tmp_path / "fifo.wzs"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(fifo)  # and it did not block
    assert "not a regular file" in refused(Path("/dev/zero"))


def test_limits_are_enforced(world_file) -> None:
    path, _, _ = world_file
    size = path.stat().st_size
    assert "limit" in refused(path, LoadLimits(max_file_bytes=size - 1))
    assert "splats" in refused(path, LoadLimits(max_splats_total=100))
    assert "chunks" in refused(path, LoadLimits(max_chunks=3))
    assert "steps" in refused(path, LoadLimits(max_steps=2))
    assert "records" in refused(path, LoadLimits(max_records=4))
    assert "string" in refused(path, LoadLimits(max_prompt_chars=5))
    assert "JSON" in refused(path, LoadLimits(max_json_total_bytes=1000))
    assert "sub-header" in refused(path, LoadLimits(max_chunk_header_bytes=100))
    assert load_world(path, LoadLimits(max_file_bytes=size)).history.head == 2


def test_header_corruption_messages(world_file) -> None:
    path, _, _ = world_file
    data = bytearray(path.read_bytes())
    data[9] ^= 0xFF  # version byte without fixing the header checksum
    path.write_bytes(bytes(data))
    assert "header is corrupt" in refused(path)
    data = bytearray(path.read_bytes())
    data[0] = ord("X")
    path.write_bytes(bytes(data))
    assert "bad magic" in refused(path)


def test_step_without_its_chunk_or_parent_is_refused(tmp_path: Path) -> None:
    head = encode_file_header()
    cam = random_camera(np.random.default_rng(0)).to_dict()
    rec = encode_json_record("STEP", {"id": 0, "parent": None, "kind": "image", "chunk_ids": [5],
                                      "camera": cam})
    (tmp_path / "a.wzs").write_bytes(head + b"".join(bytes(p) for p in rec))
    assert "chunk 5" in refused(tmp_path / "a.wzs")
    rec = encode_json_record("STEP", {"id": 1, "parent": 0, "kind": "zoom", "chunk_ids": []})
    (tmp_path / "b.wzs").write_bytes(head + b"".join(bytes(p) for p in rec))
    assert "parent" in refused(tmp_path / "b.wzs")
    rec = encode_json_record("HEAD", {"head": 3})
    (tmp_path / "c.wzs").write_bytes(head + b"".join(bytes(p) for p in rec))
    assert "head" in refused(tmp_path / "c.wzs")


def test_record_layout_is_8_aligned(world_file) -> None:
    path, _, _ = world_file
    data = path.read_bytes()
    pos = FILE_HEADER.size
    tags = []
    while pos < len(data):
        tag, flags, length, pcrc, hcrc = struct.unpack_from("<4sIQII", data, pos)
        assert pos % 8 == 0 and flags == 0 and length % 8 == 0
        assert hcrc == zlib.crc32(data[pos:pos + 20])
        assert pcrc == zlib.crc32(data[pos + 24:pos + 24 + length])
        tags.append(tag.decode())
        pos += 24 + length
    assert pos == len(data)
    assert tags[0] == "META" and tags[-1] == "HEAD"
    assert tags.count("STEP") == 5 and tags.count("CHNK") == 7
    assert record_nbytes([memoryview(b"x" * 8)]) == 8


# ---- the STEP reader's fast path against its reference ----------------------------------
_DELETE = object()
_ODD_VALUES = [None, True, False, 0, -1, 1.5, 1 << 53, (1 << 53) - 1, 10 ** 20, float("inf"),
               "", "zoom", "image", "é", "\ud800", "a" * 301, "b" * 65, [], [1], [1, 1], [True],
               [-1], [0, 2], [1.0], {}, {"a": 1}, {"name": 3}, {"seed": True}, {"x": 1.0},
               [1, 2, 3], [1.0, "a", None], [1e300, 0, 0]]


@settings(max_examples=400, derandomize=True, deadline=None)
@given(changes=st.dictionaries(
    st.sampled_from(sorted(steps_mod.STEP_REQUIRED | steps_mod.STEP_OPTIONAL | {"extra"})),
    st.one_of(st.sampled_from(_ODD_VALUES), st.just(_DELETE)), max_size=4),
    camera=st.booleans(), ids=st.lists(st.integers(0, 9), max_size=3))
def test_usual_step_reader_agrees_with_the_reference(changes, camera: bool, ids) -> None:
    """`step_from_json` takes a fast path for the payloads writers make; on any payload,
    valid or hostile, it builds the same Step as the reference reader, or fails with the
    same message."""
    body = {"id": 7, "parent": 3, "kind": "zoom", "chunk_ids": ids,
            "camera": random_camera(np.random.default_rng(1)).to_dict() if camera else None,
            "point": [0.5, 1, -2], "prompt": "a ladybug", "backend": {"name": "b", "seed": 4},
            "timings": {"e0": 1.5}, "created": "2026-12-06T17:00:00+00:00", "move_head": False}
    for key, value in changes.items():
        if value is _DELETE:
            body.pop(key, None)
        else:
            body[key] = value
    limits = LoadLimits(max_prompt_chars=300)
    outcomes = []
    for read in (step_from_json, steps_mod._step_from_json):
        try:
            outcomes.append(("ok", read(body, limits)))
        except SaveFormatError as exc:
            outcomes.append(("error", str(exc)))
    fast, reference = outcomes
    assert fast[0] == reference[0], (fast, reference)
    if fast[0] == "ok":
        (a, move_a), (b, move_b) = fast[1], reference[1]
        assert move_a == move_b
        assert a.camera == b.camera or np.array_equal(a.camera.T_world_camera,
                                                      b.camera.T_world_camera)
        assert dataclasses.replace(a, camera=None) == dataclasses.replace(b, camera=None)
    else:
        assert fast[1] == reference[1]


def test_the_usual_step_is_the_fast_path() -> None:
    """(So the property above compares two readers, not the reference with itself.)"""
    body = {"id": 1, "parent": 0, "kind": "zoom", "chunk_ids": [], "camera": None,
            "point": None, "prompt": "p", "backend": {}, "timings": {}, "created": "",
            "move_head": True}
    step, move_head = steps_mod._usual_step(body, LoadLimits())
    assert step == Step(1, 0, "zoom", (), prompt="p") and move_head
    assert steps_mod._usual_step({**body, "id": True}, LoadLimits()) is None


_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 64), 1 << 64), st.floats(),
    st.text(max_size=12), st.sampled_from(["\ud800", "x" * 41, "é" * 40, "a" * 40]))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(value=st.recursive(_JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["\udfff", "k" * 41])),
                    inner, max_size=4)), max_leaves=20))
def test_json_value_check_agrees_with_its_reference_walk(value) -> None:
    """`check_json_value` dispatches the exact types a parser makes (and flat objects in one
    loop); on any value it accepts or refuses as the plain walk of `_check_json_item` does,
    with the same message."""
    from saves.records import _check_json_item, check_json_value

    limits = LoadLimits(max_string_chars=40, max_json_depth=3)

    def reference() -> None:
        stack = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            _check_json_item(v, depth, stack, limits, "w")

    outcomes = []
    for check in (lambda: check_json_value(value, limits, "w"), reference):
        try:
            check()
            outcomes.append(None)
        except SaveFormatError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


# ---- the plain-JSON fast path against the strict decoder --------------------------------
_TEXTS = st.one_of(st.text(max_size=8), st.sampled_from(
    [", ", ": ", "e-0", "a, b", "1e-06", "\ud800", "\x1b[2J", "é", '"', "\\", ":", " ,"]))
_PLAIN_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(allow_nan=False),
    st.sampled_from([1e-06, 1e-05, 1e-300, 5e-324, -0.0, 1e16, 1e22, 0.1]), _TEXTS)
_PLAIN_VALUES = st.recursive(_PLAIN_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_TEXTS, inner, max_size=4)), max_leaves=16)


def _dump_variants(value) -> list[str]:
    """How writers spell `value`: compact or spaced, ASCII-escaped or not, indented; and for
    an object, texts that repeat its first key (same value, or another)."""
    import json

    texts = []
    for kw in (dict(ensure_ascii=False), dict(), dict(indent=1)):
        for seps in ((",", ":"), (", ", ": "), (" ,", " : ")):
            texts.append(json.dumps(value, separators=seps, **kw))
            if isinstance(value, dict) and value:
                items = [json.dumps(k, **kw) + seps[1] + json.dumps(v, separators=seps, **kw)
                         for k, v in value.items()]
                first = json.dumps(next(iter(value)), **kw) + seps[1]
                for twin in (items[0], first + "0"):
                    texts.append("{" + seps[0].join([*items, twin]) + "}")
    return texts


def _same_json(a, b) -> bool:
    """Equal with the same types all the way down (1 != 1.0 != True; -0.0 != 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    return repr(a) == repr(b)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(value=_PLAIN_VALUES, padding=st.integers(0, 7))
def test_plain_json_reads_what_the_strict_decoder_reads(value, padding: int) -> None:
    """The fast path of `parse_json` takes only texts whose value it reads exactly as the
    strict decoder does (types included), and never a text with a repeated key: on every
    spelling of every value, it either declines or agrees."""
    from saves.records import _NOT_PLAIN, _plain_json, _strict_json

    for text in _dump_variants(value):
        raw = text.encode("utf-8", "surrogatepass") + b" " * padding
        fast = _plain_json(raw)
        try:
            strict = _strict_json(raw, "w")
        except SaveFormatError:
            assert fast is _NOT_PLAIN, text
            continue
        assert fast is _NOT_PLAIN or _same_json(fast, strict), (text, fast, strict)


def test_plain_json_is_the_path_of_what_writers_write() -> None:
    """(So the property above compares two decoders: the usual records take the fast path,
    spelled compact by `dump_json` or spaced by `json.dumps`, exponents as Python writes them.)"""
    import json

    from saves.records import _NOT_PLAIN, _plain_json, dump_json

    step = {"id": 3, "parent": 2, "kind": "zoom", "chunk_ids": [4, 5], "prompt": "a, b: c",
            "camera": {"near": 1e-06, "far": 1e9, "fx": 0.5}, "timings": {"total": 25.0},
            "created": "2026-12-06T17:00:00+00:00", "move_head": True}
    assert _same_json(_plain_json(dump_json(step)), step)
    spaced = json.dumps({**step, "prompt": "a ladybug"}).encode() + b"   "
    assert _same_json(_plain_json(spaced), json.loads(spaced))
    assert _plain_json(json.dumps(step).encode()) is _NOT_PLAIN  # ", " in a string and between
    for repeated in (b'{"a":1,"a":2}', b'{"a": 1, "a": 1}', b'{"a":{"b":1,"b":1}}'):
        assert _plain_json(repeated) is _NOT_PLAIN
        with pytest.raises(SaveFormatError, match="duplicate"):
            parse_json(repeated, LoadLimits(), "w")
    assert _plain_json(b"[123456789012345678901234567890]") is _NOT_PLAIN  # orjson: a float
