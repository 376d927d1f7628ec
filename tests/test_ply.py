"""Tests for saves.ply: INRIA-layout export, tolerant import, and refusal of hostile files.

plyfile is used here only as an independent reader/writer (the implementation never imports it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from engine.splats import SH_REST_COUNTS, SplatChunk
from saves.ply import (
    MAX_HEADER_BYTES,
    PlyError,
    export_ply,
    import_ply,
    import_ply_levels,
    ply_property_names,
)

INRIA_BASE = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
INRIA_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def inria_names(degree: int) -> list[str]:
    return INRIA_BASE + [f"f_rest_{i}" for i in range(3 * SH_REST_COUNTS[degree])] + INRIA_TAIL


def random_chunk(rng: np.random.Generator, n: int = 200, degree: int = 3, level: int = 0,
                 origin=(1000.5, -20.25, 3.0)) -> SplatChunk:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    m = SH_REST_COUNTS[degree]
    return SplatChunk(
        origin=np.asarray(origin, np.float64),
        positions=rng.normal(scale=5.0, size=(n, 3)).astype(np.float32),
        rotations=q.astype(np.float32),
        log_scales=rng.uniform(-6, 1, size=(n, 3)).astype(np.float32),
        opacity_logits=rng.normal(scale=3, size=n).astype(np.float32),
        sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
        s_native=np.exp(rng.uniform(-8, 0, size=n)).astype(np.float32),
        level=level,
        sh_rest=rng.normal(scale=0.1, size=(n, m, 3)).astype(np.float32),
    ).validate()


def inria_records(rng: np.random.Generator, n: int, degree: int, *, extra: bool = True,
                  pos_type: str = "f4") -> np.ndarray:
    """A structured array in the INRIA layout (plus optional viewer extras)."""
    fields = [(k, pos_type if k in "xyz" else "f4") for k in inria_names(degree)]
    if extra:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("confidence", "f8")]
    rec = np.zeros(n, dtype=fields)
    for k in inria_names(degree):
        rec[k] = rng.normal(size=n)
    for k in ("scale_0", "scale_1", "scale_2"):
        rec[k] = rng.uniform(-7, 0, size=n)
    for k in ("rot_0", "rot_1", "rot_2", "rot_3"):
        rec[k] = rng.normal(scale=3.0, size=n)  # unnormalized, as 3DGS training leaves them
    if extra:
        rec["red"] = 7
        rec["confidence"] = 0.5
    return rec


def write_plyfile(path: Path, rec: np.ndarray, *, text: bool = False,
                  byte_order: str = "<") -> Path:
    PlyData([PlyElement.describe(rec, "vertex")], text=text, byte_order=byte_order).write(str(path))
    return path


def chunks_equal(a: SplatChunk, b: SplatChunk) -> None:
    assert a.level == b.level
    np.testing.assert_array_equal(a.origin, b.origin)
    np.testing.assert_array_equal(a.positions, b.positions)  # bit-equal
    np.testing.assert_allclose(a.rotations, b.rotations, rtol=0, atol=1e-6)
    for k in ("log_scales", "opacity_logits", "sh_dc", "s_native", "sh_rest"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


# ---- round trip ---------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_lossless_after_first_import(tmp_path: Path, degree: int) -> None:
    rng = np.random.default_rng(degree)
    original = random_chunk(rng, n=300, degree=degree, level=2)
    assert export_ply(tmp_path / "a.ply", [original], with_levels=True) == 300
    first = import_ply(tmp_path / "a.ply")
    assert export_ply(tmp_path / "b.ply", [first], with_levels=True) == 300
    second = import_ply(tmp_path / "b.ply")
    chunks_equal(first, second)
    assert first.level == 2 and first.sh_degree == degree
    np.testing.assert_array_equal(first.origin, np.zeros(3))
    assert first.origin.dtype == np.float64
    # against the original: world positions to float32 precision, everything else exact
    np.testing.assert_array_equal(first.positions,
                                  original.world_positions().astype(np.float32))
    np.testing.assert_allclose(first.world_positions(), original.world_positions(),
                               rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(first.rotations, original.rotations, atol=1e-6)
    for k in ("log_scales", "opacity_logits", "sh_dc", "s_native", "sh_rest"):
        np.testing.assert_array_equal(getattr(first, k), getattr(original, k), err_msg=k)
    # the second file is byte-identical to the first except where quats moved by an ulp
    assert (tmp_path / "a.ply").stat().st_size == (tmp_path / "b.ply").stat().st_size


def test_multi_chunk_export_pads_sh_and_keeps_levels(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    c0 = random_chunk(rng, n=50, degree=0, level=0, origin=(0, 0, 0))
    c1 = random_chunk(rng, n=40, degree=2, level=1, origin=(1e6, 2e5, -3e4))
    c2 = random_chunk(rng, n=30, degree=1, level=1, origin=(-5, 5, 5))
    assert export_ply(tmp_path / "w.ply", [c1, c0, c2], with_levels=True) == 120
    names = [p.name for p in PlyData.read(str(tmp_path / "w.ply"))["vertex"].properties]
    assert names == inria_names(3) + ["s_native", "level"]
    levels = import_ply_levels(tmp_path / "w.ply")
    assert [c.level for c in levels] == [0, 1]
    assert [len(c) for c in levels] == [50, 70]
    lvl1 = levels[1]
    assert lvl1.sh_degree == 2
    np.testing.assert_array_equal(lvl1.sh_rest[:40], c1.sh_rest)
    np.testing.assert_array_equal(lvl1.sh_rest[40:, :3], c2.sh_rest)
    assert not lvl1.sh_rest[40:, 3:].any()
    assert not levels[0].sh_rest.any()
    np.testing.assert_array_equal(lvl1.positions[:40], c1.world_positions().astype(np.float32))
    with pytest.raises(PlyError, match="import_ply_levels"):
        import_ply(tmp_path / "w.ply")


def test_empty_export_and_import(tmp_path: Path) -> None:
    assert export_ply(tmp_path / "e.ply", []) == 0
    assert import_ply_levels(tmp_path / "e.ply") == []
    chunk = import_ply(tmp_path / "e.ply")
    assert len(chunk) == 0 and chunk.level == 0
    chunk.validate()


# ---- layout checked by an independent reader ----------------------------------------------

@pytest.mark.parametrize("degree", [0, 3])
def test_export_layout_is_inria(tmp_path: Path, degree: int) -> None:
    rng = np.random.default_rng(11)
    chunk = random_chunk(rng, n=64, degree=degree, level=3)
    export_ply(tmp_path / "l.ply", [chunk], with_levels=True)
    ply = PlyData.read(str(tmp_path / "l.ply"))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    assert names == inria_names(3) + ["s_native", "level"]
    assert names == ply_property_names(3, with_levels=True)
    assert all(p.val_dtype.endswith("f4") for p in v.properties[:-1])
    assert v.properties[-1].val_dtype.endswith("i4")
    data = v.data
    world = chunk.world_positions().astype(np.float32)
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1), world)
    assert not data["nx"].any() and not data["ny"].any() and not data["nz"].any()
    np.testing.assert_array_equal(data["opacity"], chunk.opacity_logits)
    np.testing.assert_array_equal(data["rot_0"], chunk.rotations[:, 0])  # w first
    np.testing.assert_array_equal(data["scale_2"], chunk.log_scales[:, 2])
    np.testing.assert_array_equal(data["s_native"], chunk.s_native)
    assert (data["level"] == 3).all()
    big_m, m = SH_REST_COUNTS[3], SH_REST_COUNTS[degree]
    # channel-major over the file's 15 coefficients a channel: f_rest_{c*15 + j} is
    # coefficient j of channel c, zero beyond the world's degree
    for c in range(3):
        for j in range(big_m):
            want = chunk.sh_rest[:, j, c] if j < m else 0.0
            np.testing.assert_array_equal(data[f"f_rest_{c * big_m + j}"], want)


@pytest.mark.parametrize("degree", [0, 2, 3])
def test_default_export_is_the_fixed_248_byte_inria_struct(tmp_path: Path, degree: int) -> None:
    """INRIA's SIBR viewer reads the vertices as a fixed struct of 62 floats and ignores the
    header: the default export must be exactly that, whatever the world's SH degree."""
    import struct

    rng = np.random.default_rng(5)
    chunks = [random_chunk(rng, n=33, degree=degree, level=1),
              random_chunk(rng, n=20, degree=0, level=2)]
    path = tmp_path / "sibr.ply"
    export_ply(path, chunks)
    raw = path.read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n"):]
    assert len(body) == 53 * 248
    rows = [struct.unpack("<62f", body[i * 248:(i + 1) * 248]) for i in range(53)]
    first = chunks[0]
    pos = first.world_positions().astype(np.float32)
    for i in (0, 32):
        r = rows[i]
        np.testing.assert_array_equal(r[0:3], pos[i])
        assert r[3:6] == (0.0, 0.0, 0.0)
        np.testing.assert_array_equal(r[6:9], first.sh_dc[i])
        rest = np.zeros((15, 3), np.float32)
        rest[:first.sh_rest.shape[1]] = first.sh_rest[i]
        np.testing.assert_array_equal(r[9:54], rest.T.reshape(-1))  # channel-major
        assert r[54] == first.opacity_logits[i]
        np.testing.assert_array_equal(r[55:58], first.log_scales[i])
        np.testing.assert_array_equal(r[58:62], first.rotations[i])
    assert all(v == 0.0 for v in rows[40][9:54])  # a degree-0 chunk: zero-filled f_rest_*
    back = import_ply(path)  # one level (no level property), its SH degree trimmed back
    assert len(back) == 53 and back.sh_degree == degree


# ---- files written by others --------------------------------------------------------------

@pytest.mark.parametrize("text,byte_order,pos_type", [
    (False, "<", "f4"), (False, ">", "f4"), (True, "=", "f4"), (False, "<", "f8")])
def test_imports_inria_file_written_by_plyfile(tmp_path: Path, text: bool, byte_order: str,
                                               pos_type: str) -> None:
    rng = np.random.default_rng(3)
    n = 57
    rec = inria_records(rng, n, 3, pos_type=pos_type)
    rec["rot_0"][:2] = rec["rot_1"][:2] = rec["rot_2"][:2] = rec["rot_3"][:2] = 0.0  # zero quats
    # shuffle the property order: the reader must go by name
    order = list(rec.dtype.names)
    rng.shuffle(order)
    rec = rec[order]
    rec = np.array(rec, dtype=[(k, rec.dtype[k]) for k in order])
    path = write_plyfile(tmp_path / "inria.ply", rec, text=text, byte_order=byte_order)

    chunk = import_ply(path)
    assert len(chunk) == n and chunk.level == 0 and chunk.sh_degree == 3
    np.testing.assert_array_equal(chunk.origin, np.zeros(3))
    pos = np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float32)
    np.testing.assert_array_equal(chunk.positions, pos)
    np.testing.assert_array_equal(chunk.sh_dc, np.stack([rec[f"f_dc_{i}"] for i in range(3)], 1))
    np.testing.assert_array_equal(chunk.opacity_logits, rec["opacity"])
    ls = np.stack([rec[f"scale_{i}"] for i in range(3)], 1)
    np.testing.assert_array_equal(chunk.log_scales, ls)
    q = np.stack([rec[f"rot_{i}"] for i in range(4)], 1).astype(np.float64)
    np.testing.assert_allclose(chunk.rotations[2:], q[2:] / np.linalg.norm(q[2:], axis=1,
                                                                           keepdims=True),
                               atol=1e-6)
    np.testing.assert_array_equal(chunk.rotations[:2], [[1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_allclose(np.linalg.norm(chunk.rotations, axis=1), 1.0, atol=1e-6)
    rest = np.stack([rec[f"f_rest_{i}"] for i in range(45)], 1).reshape(n, 3, 15)
    np.testing.assert_array_equal(chunk.sh_rest, rest.transpose(0, 2, 1))
    np.testing.assert_array_equal(chunk.sh_rest[:, 4, 1], rec["f_rest_19"])  # G coefficient 4
    two_largest = np.sort(ls.astype(np.float64), axis=1)[:, 1:]
    np.testing.assert_allclose(chunk.s_native, np.exp(two_largest.mean(1)), rtol=1e-6)


def test_level_and_s_native_properties_are_used(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rec = inria_records(rng, 10, 0, extra=False)
    full = np.zeros(10, dtype=rec.dtype.descr + [("level", "u1"), ("s_native", "f8")])
    for k in rec.dtype.names:
        full[k] = rec[k]
    full["level"] = 4
    full["s_native"] = 0.125
    path = write_plyfile(tmp_path / "l.ply", full)
    chunk = import_ply(path)
    assert chunk.level == 4
    np.testing.assert_array_equal(chunk.s_native, np.full(10, 0.125, np.float32))


# ---- hostile and corrupt inputs -----------------------------------------------------------

def good_file(tmp_path: Path, degree: int = 1, n: int = 20) -> Path:
    return write_plyfile(tmp_path / "good.ply",
                         inria_records(np.random.default_rng(0), n, degree, extra=False))


def header_and_body(path: Path) -> tuple[bytes, bytes]:
    raw = path.read_bytes()
    i = raw.index(b"end_header\n") + len(b"end_header\n")
    return raw[:i], raw[i:]


def expect_ply_error(path: Path, match: str | None = None, **kw) -> PlyError:
    with pytest.raises(PlyError, match=match) as info:
        import_ply(path, **kw)
    assert "\n" not in str(info.value)
    assert "cannot import PLY file" not in str(info.value)  # the catch-all means a reader bug
    return info.value


def test_truncated_data(tmp_path: Path) -> None:
    path = good_file(tmp_path)
    raw = path.read_bytes()
    for cut in (1, 4, 100):
        path.write_bytes(raw[:-cut])
        expect_ply_error(path, "truncated")
    head, _ = header_and_body(good_file(tmp_path))
    path.write_bytes(head)
    expect_ply_error(path, "truncated")
    path.write_bytes(head[:-5])
    expect_ply_error(path, "end_header")


@pytest.mark.parametrize("count", ["1000000000000", "4194304", "9999999999999999999",
                                   "123456789012345678901234567890", "-5", "1e9", "0x10"])
def test_huge_or_bad_vertex_count(tmp_path: Path, count: str) -> None:
    path = good_file(tmp_path)
    head, body = header_and_body(path)
    path.write_bytes(head.replace(b"element vertex 20", b"element vertex " + count.encode())
                     + body)
    expect_ply_error(path)
    # also with the splat limit lifted: the size check must refuse before allocating
    expect_ply_error(path, max_splats=10**30)


def test_limits(tmp_path: Path) -> None:
    path = good_file(tmp_path, n=20)
    expect_ply_error(path, "limit", max_splats=19)
    expect_ply_error(path, "limit", max_bytes=path.stat().st_size - 1)
    assert len(import_ply(path, max_splats=20, max_bytes=path.stat().st_size)) == 20


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\x01\x02garbage" * 50,
    b"plyx\nformat binary_little_endian 1.0\nend_header\n",
    b"ply\nformat binary_little_endian 2.0\nelement vertex 0\nend_header\n",
    b"ply\nformat binary_middle_endian 1.0\nelement vertex 0\nend_header\n",
    b"ply\nelement vertex 0\nproperty float x\nend_header\n",
    b"ply\nformat ascii 1.0\nproperty float x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float16 x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 1\nelement vertex 1\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nfrobnicate 3\nend_header\n",
    b"ply\nformat ascii 1.0\nelement face 0\nproperty float x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nproperty \xff\xfe x\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\nend_header\n3 1 2 3\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n",
    b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\n",  # no end_header
    b"ply\nformat ascii 1.0\nend_header\n",
])
def test_garbage_headers(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.ply"
    path.write_bytes(raw)
    expect_ply_error(path)


def test_oversized_header(tmp_path: Path) -> None:
    path = tmp_path / "big.ply"
    comments = b"comment " + b"a" * 100 + b"\n"
    path.write_bytes(b"ply\nformat ascii 1.0\n" + comments * (MAX_HEADER_BYTES // 100)
                     + b"element vertex 0\nproperty float x\nend_header\n")
    expect_ply_error(path, "end_header")


@pytest.mark.parametrize("prop,value", [
    ("x", np.nan), ("z", np.inf), ("f_dc_1", -np.inf), ("opacity", np.nan),
    ("f_rest_4", np.nan), ("rot_2", np.nan), ("scale_0", np.nan),
    ("scale_1", 500.0), ("opacity", 1e6), ("x", 1e300), ("f_dc_0", 1e8)])
def test_bad_values(tmp_path: Path, prop: str, value: float) -> None:
    rec = inria_records(np.random.default_rng(1), 8, 1, extra=False, pos_type="f8")
    rec = np.array(rec, dtype=[(k, "f8") for k in rec.dtype.names])
    rec[prop][3] = value
    expect_ply_error(write_plyfile(tmp_path / "v.ply", rec))


def test_out_of_range_scale_is_named(tmp_path: Path) -> None:
    rec = inria_records(np.random.default_rng(1), 8, 0, extra=False)
    rec["scale_1"][3] = 500.0
    expect_ply_error(write_plyfile(tmp_path / "s.ply", rec), "log_scales")


@pytest.mark.parametrize("text", [False, True])
def test_elements_before_and_after_vertices(tmp_path: Path, text: bool) -> None:
    rng = np.random.default_rng(12)
    rec = inria_records(rng, 9, 1)
    meta = np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i2"), ("b", "f8")])
    faces = np.empty(2, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([3, 4, 5, 6], "i4")]
    path = tmp_path / "e.ply"
    PlyData([PlyElement.describe(meta, "meta"), PlyElement.describe(rec, "vertex"),
             PlyElement.describe(faces, "face")], text=text).write(str(path))
    chunk = import_ply(path)
    np.testing.assert_array_equal(chunk.opacity_logits, rec["opacity"])
    np.testing.assert_array_equal(chunk.positions[:, 2], rec["z"])
    # a variable-size (list) element before the vertices cannot be skipped in a binary file
    path2 = tmp_path / "f.ply"
    PlyData([PlyElement.describe(faces, "face"), PlyElement.describe(rec, "vertex")],
            text=text).write(str(path2))
    if text:
        np.testing.assert_array_equal(import_ply(path2).sh_dc[:, 1], rec["f_dc_1"])
    else:
        expect_ply_error(path2, "list properties")


@pytest.mark.parametrize("drop", ["x", "opacity", "rot_3", "f_dc_2", "scale_1", "f_rest_5"])
def test_missing_properties(tmp_path: Path, drop: str) -> None:
    rec = inria_records(np.random.default_rng(2), 5, 1, extra=False)
    keep = [k for k in rec.dtype.names if k != drop]
    rec = np.array(rec[keep], dtype=[(k, "f4") for k in keep])
    err = expect_ply_error(write_plyfile(tmp_path / "m.ply", rec))
    assert (drop in str(err)) or "f_rest" in str(err)


def test_bad_level_and_s_native(tmp_path: Path) -> None:
    rec = inria_records(np.random.default_rng(4), 6, 0, extra=False)
    for extra, val in [(("level", "f4"), 1.5), (("level", "i4"), -1), (("level", "i4"), 5000),
                       (("s_native", "f4"), 0.0), (("s_native", "f4"), -1.0),
                       (("s_native", "f4"), np.nan)]:
        full = np.zeros(6, dtype=rec.dtype.descr + [extra])
        for k in rec.dtype.names:
            full[k] = rec[k]
        full[extra[0]] = 1
        full[extra[0]][2] = val
        expect_ply_error(write_plyfile(tmp_path / "lv.ply", full))


@pytest.mark.parametrize("token", [b"abc", b"1.0.0", b"--3", b"0x1p3", b"nan", b"inf"])
def test_ascii_bad_tokens(tmp_path: Path, token: bytes) -> None:
    path = write_plyfile(tmp_path / "a.ply",
                         inria_records(np.random.default_rng(6), 4, 0, extra=False), text=True)
    head, body = header_and_body(path)
    lines = body.split(b"\n")
    words = lines[2].split()
    words[1] = token
    lines[2] = b" ".join(words)
    path.write_bytes(head + b"\n".join(lines))
    expect_ply_error(path)


def test_ascii_wrong_value_counts(tmp_path: Path) -> None:
    path = write_plyfile(tmp_path / "a.ply",
                         inria_records(np.random.default_rng(6), 4, 0, extra=False), text=True)
    head, body = header_and_body(path)
    lines = body.strip().split(b"\n")
    for broken in (lines[:3], lines[:2] + [lines[2] + b" 1.0"] + lines[3:],
                   lines[:2] + [b" ".join(lines[2].split()[:-1])] + lines[3:]):
        path.write_bytes(head + b"\n".join(broken) + b"\n")
        expect_ply_error(path)


def test_bad_f_rest_sets(tmp_path: Path) -> None:
    rec = inria_records(np.random.default_rng(8), 4, 1, extra=False)
    for drop in (["f_rest_8"], [f"f_rest_{i}" for i in range(3, 9)] + ["f_rest_0"]):
        keep = [k for k in rec.dtype.names if k not in drop]
        sub = np.array(rec[keep], dtype=[(k, "f4") for k in keep])
        expect_ply_error(write_plyfile(tmp_path / "r.ply", sub), "f_rest")


def test_unreadable_paths(tmp_path: Path) -> None:
    expect_ply_error(tmp_path / "does-not-exist.ply", "cannot read")
    expect_ply_error(tmp_path, "cannot read")
    with pytest.raises(PlyError):
        import_ply(12345.5)  # type: ignore[arg-type]
    weird = tmp_path / "evil\nname.ply"
    weird.write_bytes(b"nope")
    expect_ply_error(weird, "not a PLY file")


def test_random_corruption_only_raises_ply_error(tmp_path: Path) -> None:
    """Flip, insert and cut bytes anywhere in valid files: the result is either a validated
    chunk or a PlyError, never another exception."""
    rng = np.random.default_rng(123)
    sources = [good_file(tmp_path, degree=1, n=12).read_bytes(),
               write_plyfile(tmp_path / "t.ply", inria_records(rng, 5, 0), text=True).read_bytes()]
    path = tmp_path / "fuzz.ply"
    outcomes = {"ok": 0, "error": 0}
    for trial in range(600):
        raw = bytearray(sources[trial % 2])
        head_len = raw.index(b"end_header") + 11
        for _ in range(int(rng.integers(1, 4))):
            op = rng.integers(0, 3)
            # bias mutations towards the header, where the grammar lives
            hi = head_len if rng.random() < 0.7 else len(raw)
            at = int(rng.integers(0, max(hi, 1)))
            if op == 0 and raw:
                raw[min(at, len(raw) - 1)] = int(rng.integers(0, 256))
            elif op == 1:
                raw[at:at] = bytes(rng.choice(list(b" \n0123456789.-ex\xff"), 3).tolist())
            else:
                del raw[at: at + int(rng.integers(1, 8))]
        path.write_bytes(bytes(raw))
        try:
            for chunk in import_ply_levels(path):
                chunk.validate()
            outcomes["ok"] += 1
        except PlyError as e:
            assert "\n" not in str(e)
            assert "cannot import PLY file" not in str(e)  # the catch-all means a reader bug
            outcomes["error"] += 1
    assert outcomes["error"] > 100


# ---- atomic writes ------------------------------------------------------------------------

def test_failed_export_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    target = tmp_path / "w.ply"
    export_ply(target, [random_chunk(rng, n=10)])
    before = target.read_bytes()

    bad = random_chunk(rng, n=10)
    bad.positions[0, 0] = np.nan
    with pytest.raises(PlyError, match="chunk 0 is invalid"):
        export_ply(target, [bad])

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(PlyError, match="No space left"):
        export_ply(target, [random_chunk(rng, n=10)])
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.ply"]
    with pytest.raises(PlyError, match="cannot write"):
        export_ply(tmp_path / "no-such-dir" / "x.ply", [random_chunk(rng, n=3)])
    with pytest.raises(PlyError, match="not a SplatChunk"):
        export_ply(target, ["nope"])  # type: ignore[list-item]
