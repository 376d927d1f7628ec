"""PLY import/export of Gaussian splats in the INRIA 3DGS layout.

Owns: the byte-level PLY reader and writer (header grammar, numpy structured dtypes, size
bounds, atomic writes) and the mapping between the 3DGS vertex properties and `SplatChunk`.
Does not own: the splat data model or its value checks (`engine.splats`; every imported chunk
goes through `SplatChunk.validate()`), the WonderZoom save-file format with its history
(`saves.format`), or LoD links (derived data; a PLY file carries none).

No third-party PLY library is used: the header is parsed here with explicit bounds so that a
hostile file is refused with one readable line (`PlyError`) before any large allocation.

Export layout (binary_little_endian 1.0, element `vertex`, every property `float`): by
default exactly the 62 properties of INRIA's 3DGS files, 248 bytes a vertex, which viewers
that read a fixed struct and ignore the header (SIBR) need: x y z, nx ny nz (always 0),
f_dc_0..2, f_rest_0..44 (SH degree 3, channel-major as INRIA writes them: all 15
coefficients of R, then G, then B; zero where the world's degree is lower), opacity (logit),
scale_0..2 (log std-dev), rot_0..3 (w, x, y, z). With `with_levels` two properties follow
that other viewers ignore, `float s_native` and `int level` (256 bytes a vertex): what
`wonderzoom import --level N` needs to take one level back.

Positions are written as float32 *world* positions (chunk origin + offset). That is what the
format can hold: a world zoomed far from its centre loses the float64 origin's precision in a
PLY file (use the save format for lossless storage). An imported chunk has origin exactly
(0, 0, 0), so its float32 offsets equal the file's values bit for bit, which makes
import -> export -> import lossless.

Import accepts binary_little_endian, binary_big_endian and ascii files of SH degree 0..3
(0, 9, 24 or 45 `f_rest_*` properties), with properties in any order, of any numeric type
(`float`, `double`, integers), and with extra properties (normals, `red`, ...) ignored.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence, Union

import numpy as np

from engine.errors import UserError
from engine.splats import (LOG_SCALE_MAX, LOG_SCALE_MIN, MAX_SPLATS_PER_CHUNK, SH_REST_COUNTS,
                           SplatChunk, SplatValidationError, normalize_quaternions)
from engine.atomic import atomic_write, write_all

PathLike = Union[str, "os.PathLike[str]"]

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: ~8M degree-3 splats, more than a chunk may hold
DEFAULT_MAX_SPLATS = MAX_SPLATS_PER_CHUNK
MAX_LEVEL = 1024  # exclusive, as in SplatChunk.validate

# PLY scalar type names (both spellings of the spec) -> numpy kind/size codes (no byte order).
_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4",
    "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_COUNT_RE = re.compile(r"[0-9]{1,19}")
_F_REST_RE = re.compile(r"f_rest_(0|[1-9][0-9]{0,5})")

_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


class PlyError(UserError, ValueError):
    """A PLY file cannot be read or written; the message is one readable line."""


# ---- export -------------------------------------------------------------------------------

EXPORT_SH_DEGREE = 3  # INRIA's files always hold degree 3 (45 f_rest_* properties)
INRIA_VERTEX_BYTES = 248  # 62 float32 properties


def ply_property_names(sh_degree: int = EXPORT_SH_DEGREE, with_levels: bool = False) -> list[str]:
    """The vertex property names `export_ply` writes, in order."""
    m = SH_REST_COUNTS[sh_degree]
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * m)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
            + (["s_native", "level"] if with_levels else []))


def _export_header(n: int, sh_degree: int, with_levels: bool) -> bytes:
    names = ply_property_names(sh_degree, with_levels)
    comment = "INRIA 3DGS layout + s_native, level" if with_levels else "INRIA 3DGS layout"
    lines = ["ply", "format binary_little_endian 1.0", f"comment WonderZoom splats: {comment}",
             f"element vertex {n}"]
    if with_levels:
        lines += [f"property float {name}" for name in names[:-1]] + ["property int level"]
    else:
        lines += [f"property float {name}" for name in names]
    lines += ["end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def _export_block(chunk: SplatChunk, m: int, with_levels: bool) -> np.ndarray:
    """One chunk as the rows of the file: [N, 17 + 3m (+ 2)] little-endian 4-byte cells, all
    float32 but the last one of `with_levels`, which holds the int32 level."""
    n = len(chunk)
    block = np.zeros((n, 17 + 3 * m + (2 if with_levels else 0)), dtype="<f4")  # [N, C]
    block[:, 0:3] = chunk.world_positions()  # float64 world -> float32
    # columns 3:6 are the normals, left 0
    block[:, 6:9] = chunk.sh_dc
    if m:
        rest = np.zeros((n, m, 3), np.float32)  # [N, m, 3], padded to the file's degree
        rest[:, : chunk.sh_rest.shape[1]] = chunk.sh_rest
        block[:, 9: 9 + 3 * m] = rest.transpose(0, 2, 1).reshape(n, 3 * m)  # [N, 3, m] -> [N, 3m]
    c = 9 + 3 * m
    block[:, c] = chunk.opacity_logits
    block[:, c + 1: c + 4] = chunk.log_scales
    block[:, c + 4: c + 8] = chunk.rotations
    if with_levels:
        block[:, c + 8] = chunk.s_native
        block.view("<i4")[:, c + 9] = int(chunk.level)
    return block


def export_ply(path: PathLike, chunks: Sequence[SplatChunk], with_levels: bool = False) -> int:
    """Write `chunks` to one PLY file (INRIA's 62-property 3DGS layout; with `with_levels`
    also `s_native` and `level`) and return the number of splats written.

    Every chunk is written as SH degree 3, lower degrees padded with zero coefficients.
    The file is written to a temporary sibling and moved into place with `os.replace`, so
    `path` is either the old file or the complete new one. Invalid chunks and I/O failures
    raise `PlyError`.
    """
    chunks = list(chunks)
    for i, chunk in enumerate(chunks):
        _check_export_chunk(i, chunk)
    return export_ply_stream(path, sum(len(c) for c in chunks), iter(chunks), with_levels)


def _check_export_chunk(i: int, chunk: SplatChunk) -> None:
    if not isinstance(chunk, SplatChunk):
        raise PlyError(f"chunk {i} is a {type(chunk).__name__}, not a SplatChunk")
    try:
        chunk.validate()
    except SplatValidationError as e:
        raise PlyError(f"chunk {i} is invalid: {e}") from None


def export_ply_stream(path: PathLike, total: int, chunks: Iterator[SplatChunk],
                      with_levels: bool = False) -> int:
    """`export_ply` of chunks that arrive one at a time (read from a world file on demand),
    so memory holds one chunk, not the world: `total` is their splat count (the header comes
    first), checked against what arrives. Returns `total`."""
    degree = EXPORT_SH_DEGREE
    m = SH_REST_COUNTS[degree]
    header = _export_header(total, degree, with_levels)
    target = Path(os.fspath(path))
    written = 0
    try:
        with atomic_write(target) as fd:
            write_all(fd, header)
            for i, chunk in enumerate(chunks):
                _check_export_chunk(i, chunk)
                written += len(chunk)
                if written > total:
                    break
                if len(chunk):
                    write_all(fd, _export_block(chunk, m, with_levels).tobytes())
            if written != total:
                raise PlyError(f"the chunks hold {written} splats, the header says {total}")
    except OSError as e:
        raise PlyError(f"cannot write {target}: {e.strerror or e}") from e
    return total


# ---- header -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Property:
    name: str
    kind: str  # numpy kind/size code, e.g. "f4"; for a list: the item type
    count_kind: str | None = None  # list properties only: the numpy code of the length prefix


@dataclass(frozen=True)
class _Element:
    name: str
    count: int
    properties: tuple[_Property, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.count_kind is not None for p in self.properties)


@dataclass(frozen=True)
class _Header:
    fmt: str  # key of _FORMATS
    elements: tuple[_Element, ...]
    data_offset: int  # bytes from the start of the file to the first data byte


def _short(token: str | bytes, limit: int = 40) -> str:
    """A token for an error message: printable, quoted, bounded."""
    if isinstance(token, bytes):
        token = token.decode("ascii", "replace")
    text = repr(token)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(text: str | bytes) -> str:
    """A file name for an error message: one line, non-printable characters escaped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _parse_header(buf: bytes, name: str) -> _Header:
    """Parse the PLY header at the start of `buf` (at most MAX_HEADER_BYTES long)."""
    if not buf.startswith(b"ply"):
        raise PlyError(f"{name}: not a PLY file (it does not start with 'ply')")
    fmt: str | None = None
    elements: list[tuple[str, int, list[_Property]]] = []
    pos = 0
    line_no = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            raise PlyError(f"{name}: no 'end_header' line in the first {MAX_HEADER_BYTES} bytes")
        raw = buf[pos:nl]
        pos = nl + 1
        line_no += 1
        stripped = raw.strip()
        if line_no == 1:
            if stripped != b"ply":
                raise PlyError(f"{name}: not a PLY file (first line is {_short(raw)})")
            continue
        words = stripped.split()
        if not words:
            continue
        keyword = words[0]
        if keyword in (b"comment", b"obj_info"):
            continue  # free text, any encoding
        if keyword == b"end_header":
            if len(words) != 1:
                raise PlyError(f"{name}: line {line_no}: malformed {_short(raw)}")
            break
        try:
            tokens = [w.decode("ascii") for w in words]
        except UnicodeDecodeError:
            raise PlyError(f"{name}: line {line_no} of the header is not ASCII") from None
        where = f"{name}: line {line_no}"
        if tokens[0] == "format":
            if fmt is not None or elements:
                raise PlyError(f"{where}: unexpected 'format' line")
            if len(tokens) != 3 or tokens[1] not in _FORMATS:
                raise PlyError(f"{where}: unsupported format {_short(' '.join(tokens[1:]))} "
                               "(ascii, binary_little_endian or binary_big_endian expected)")
            if tokens[2] != "1.0":
                raise PlyError(f"{where}: unsupported PLY version {_short(tokens[2])}")
            fmt = tokens[1]
        elif tokens[0] == "element":
            if fmt is None:
                raise PlyError(f"{where}: 'element' before the 'format' line")
            if len(tokens) != 3:
                raise PlyError(f"{where}: malformed element line {_short(raw)}")
            if not _COUNT_RE.fullmatch(tokens[2]):
                raise PlyError(f"{where}: element count {_short(tokens[2])} is not a "
                               "non-negative integer of at most 19 digits")
            if any(e[0] == tokens[1] for e in elements):
                raise PlyError(f"{where}: element {_short(tokens[1])} is declared twice")
            elements.append((tokens[1], int(tokens[2]), []))
        elif tokens[0] == "property":
            if not elements:
                raise PlyError(f"{where}: 'property' before any 'element'")
            props = elements[-1][2]
            if len(tokens) == 3 and tokens[1] in _PLY_TYPES:
                prop = _Property(tokens[2], _PLY_TYPES[tokens[1]])
            elif (len(tokens) == 5 and tokens[1] == "list" and tokens[2] in _PLY_TYPES
                  and tokens[3] in _PLY_TYPES and _PLY_TYPES[tokens[2]][0] in "iu"):
                prop = _Property(tokens[4], _PLY_TYPES[tokens[3]], _PLY_TYPES[tokens[2]])
            else:
                raise PlyError(f"{where}: malformed property line {_short(raw)}")
            if any(p.name == prop.name for p in props):
                raise PlyError(f"{where}: property {_short(prop.name)} is declared twice")
            props.append(prop)
        else:
            raise PlyError(f"{where}: unknown header keyword {_short(tokens[0])}")
    if fmt is None:
        raise PlyError(f"{name}: the header has no 'format' line")
    return _Header(fmt, tuple(_Element(n, c, tuple(p)) for n, c, p in elements), pos)


# ---- import -------------------------------------------------------------------------------

def _read_vertex_table(f: BinaryIO, header: _Header, file_size: int, name: str,
                       max_splats: int) -> tuple[_Element, dict[str, np.ndarray]]:
    """Read the `vertex` element's columns (numpy arrays in the file's types) by name."""
    try:
        vi = [e.name for e in header.elements].index("vertex")
    except ValueError:
        raise PlyError(f"{name}: the file has no 'vertex' element") from None
    vertex = header.elements[vi]
    n = vertex.count
    if n > max_splats:
        raise PlyError(f"{name}: declares {n} splats, more than the limit of {max_splats}")
    if vertex.has_lists:
        raise PlyError(f"{name}: the vertex element has list properties (not a splat file)")
    remaining = file_size - header.data_offset
    nprops = len(vertex.properties)
    if nprops == 0:
        raise PlyError(f"{name}: the vertex element has no properties")

    if header.fmt == "ascii":
        skip = 0
        for e in header.elements[:vi]:
            skip += e.count
        # Every value takes at least one character and one separator.
        if n and 2 * n * nprops - 1 > remaining:
            raise PlyError(f"{name}: declares {n} vertices but holds only {remaining} bytes "
                           "of data")
        if skip > remaining:
            raise PlyError(f"{name}: declares {skip} rows before the vertices but holds only "
                           f"{remaining} bytes of data")
        if n == 0:
            return vertex, {p.name: np.zeros(0, np.float64) for p in vertex.properties}
        f.seek(header.data_offset)
        text = f.read(remaining)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = np.loadtxt(io.BytesIO(text), dtype=np.float64, comments=None,
                                   skiprows=skip, max_rows=n, ndmin=2, encoding="latin-1")
        except (ValueError, TypeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else "bad value"
            reason = reason.split("; use `usecols`")[0].rstrip(".")
            raise PlyError(f"{name}: ascii vertex data is malformed ({reason[:120]})") from None
        if table.shape != (n, nprops):
            raise PlyError(f"{name}: ascii vertex data has {table.shape[0]} rows of "
                           f"{table.shape[1] if table.ndim == 2 else 0} values, "
                           f"expected {n} rows of {nprops}")
        return vertex, {p.name: table[:, i] for i, p in enumerate(vertex.properties)}

    order = _FORMATS[header.fmt]
    offset = header.data_offset
    for e in header.elements[:vi]:
        if e.has_lists:
            raise PlyError(f"{name}: element {_short(e.name)} before the vertices has list "
                           "properties (unsupported)")
        offset += e.count * sum(np.dtype(p.kind).itemsize for p in e.properties)
    dtype = np.dtype([(f"p{i}", order + p.kind) for i, p in enumerate(vertex.properties)])
    nbytes = n * dtype.itemsize
    if offset + nbytes > file_size:
        raise PlyError(f"{name}: truncated: the header declares {n} vertices "
                       f"({offset + nbytes} bytes of file) but the file holds {file_size} bytes")
    f.seek(offset)
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise PlyError(f"{name}: truncated: expected {nbytes} bytes of vertex data, "
                       f"read {len(data)}")
    rec = np.frombuffer(data, dtype=dtype, count=n)
    return vertex, {p.name: rec[f"p{i}"] for i, p in enumerate(vertex.properties)}


def _f32(cols: dict[str, np.ndarray], names: Sequence[str], name: str) -> np.ndarray:
    """Columns -> float32 [N, len(names)], refusing NaN/Inf (including float32 overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.stack([np.asarray(cols[k]).astype(np.float32) for k in names], axis=1)
    if not np.isfinite(out).all():
        bad = next(k for i, k in enumerate(names) if not np.isfinite(out[:, i]).all())
        raise PlyError(f"{name}: property {_short(bad)} holds NaN, Inf or a value too large "
                       "for float32")
    return out


def _table_to_arrays(cols: dict[str, np.ndarray], n: int, name: str) -> dict[str, np.ndarray]:
    missing = [k for k in _REQUIRED if k not in cols]
    if missing:
        raise PlyError(f"{name}: missing required vertex properties: {', '.join(missing)}")
    rest_idx = sorted(int(mt.group(1)) for k in cols if (mt := _F_REST_RE.fullmatch(k)))
    k = len(rest_idx)
    if rest_idx != list(range(k)):
        raise PlyError(f"{name}: the {k} f_rest_* properties are not f_rest_0..f_rest_{k - 1} "
                       "without gaps")
    if k % 3 or k // 3 not in SH_REST_COUNTS:
        raise PlyError(f"{name}: {k} f_rest_* properties (SH degree 0..3 has 0, 9, 24 or 45)")
    m = k // 3
    out = {
        "positions": _f32(cols, ("x", "y", "z"), name),  # [N, 3]
        "sh_dc": _f32(cols, ("f_dc_0", "f_dc_1", "f_dc_2"), name),  # [N, 3]
        "opacity_logits": _f32(cols, ("opacity",), name)[:, 0],  # [N]
        "log_scales": _f32(cols, ("scale_0", "scale_1", "scale_2"), name),  # [N, 3]
        "rotations": _f32(cols, ("rot_0", "rot_1", "rot_2", "rot_3"), name),  # [N, 4]
    }
    if m:
        flat = _f32(cols, [f"f_rest_{i}" for i in range(k)], name)  # [N, 3m] channel-major
        out["sh_rest"] = np.ascontiguousarray(flat.reshape(n, 3, m).transpose(0, 2, 1))
    else:
        out["sh_rest"] = np.zeros((n, 0, 3), np.float32)  # [N, 0, 3]
    # 3DGS stores unnormalized quaternions; zero ones become the identity.
    out["rotations"] = normalize_quaternions(out["rotations"])
    if "s_native" in cols:
        out["s_native"] = _f32(cols, ("s_native",), name)[:, 0]
    else:
        # No native scale in a plain 3DGS file. For a one-level world it does not matter (the
        # modulation weight is 1 at every scale while there is no finer or coarser level); it
        # only matters once finer content is appended. The best proxy for the pixel footprint
        # that created a splat is the splat's own size across the surface it lies on: the
        # geometric mean of its two largest std-devs. (All three, as before, put a flat splat
        # -- a surfel, or a trained 3DGS disc -- at a fraction of its footprint: on our own
        # exported levels 0.5x, so a zoom into an import came out "x1.00 finer" than it.)
        # (The clip only matters for out-of-range scales, which validate() then refuses by name.)
        mean_log = np.sort(out["log_scales"].astype(np.float64), axis=1)[:, 1:].mean(axis=1)
        mean_log = np.clip(mean_log, LOG_SCALE_MIN, LOG_SCALE_MAX)
        out["s_native"] = np.exp(mean_log).astype(np.float32)
    if "level" in cols:
        lv = np.asarray(cols["level"], dtype=np.float64)
        if not (np.isfinite(lv).all() and (lv == np.round(lv)).all()
                and (lv >= 0).all() and (lv < MAX_LEVEL).all()):
            raise PlyError(f"{name}: property 'level' must hold integers in [0, {MAX_LEVEL})")
        out["level"] = lv.astype(np.int64)
    else:
        out["level"] = np.zeros(n, np.int64)
    return out


def _make_chunk(a: dict[str, np.ndarray], rows: np.ndarray | None, level: int,
                name: str) -> SplatChunk:
    def pick(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x if rows is None else x[rows])

    sh_rest = pick(a["sh_rest"])  # [N, m, 3]
    # the highest SH band with a non-zero coefficient: an export pads every world to degree 3
    # with zeros, and a degree-0 world comes back as degree 0 (dropping zeros is lossless)
    degree = next((d for d in (3, 2, 1) if SH_REST_COUNTS[d] <= sh_rest.shape[1]
                   and sh_rest[:, SH_REST_COUNTS[d - 1]:SH_REST_COUNTS[d]].any()), 0)
    chunk = SplatChunk(
        origin=np.zeros(3, np.float64),
        positions=pick(a["positions"]),
        rotations=pick(a["rotations"]),
        log_scales=pick(a["log_scales"]),
        opacity_logits=pick(a["opacity_logits"]),
        sh_dc=pick(a["sh_dc"]),
        s_native=pick(a["s_native"]),
        level=int(level),
        sh_rest=np.ascontiguousarray(sh_rest[:, :SH_REST_COUNTS[degree]]),
    )
    try:
        return chunk.validate()
    except SplatValidationError as e:
        raise PlyError(f"{name}: invalid splats: {e}") from None


def _load(path: PathLike, max_bytes: int, max_splats: int) -> tuple[dict[str, np.ndarray], str]:
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise PlyError(f"{_short(str(path))} is not a file path") from None
    name = _printable(os.path.basename(fspath) or str(fspath))
    try:
        with open(fspath, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if file_size > max_bytes:
                raise PlyError(f"{name}: {file_size} bytes, more than the limit of {max_bytes}")
            header = _parse_header(f.read(MAX_HEADER_BYTES), name)
            vertex, cols = _read_vertex_table(f, header, file_size, name, max_splats)
    except OSError as e:
        raise PlyError(f"cannot read {name}: {e.strerror or e}") from None
    except MemoryError:
        raise PlyError(f"{name}: not enough memory to read the file") from None
    return _table_to_arrays(cols, vertex.count, name), name


def import_ply_levels(path: PathLike, max_bytes: int = DEFAULT_MAX_BYTES,
                      max_splats: int = DEFAULT_MAX_SPLATS) -> list[SplatChunk]:
    """Read a 3DGS PLY file as one chunk per distinct `level` (ascending; a file without a
    `level` property gives one level-0 chunk; an empty file gives []). Rows keep their file
    order within a level. Every chunk has origin (0, 0, 0) and passed `SplatChunk.validate()`.

    Raises `PlyError` (a ValueError) with a one-line reason for anything else: unreadable,
    oversized (`max_bytes` for the file, `max_splats` for the vertex count, checked before
    allocating), truncated or malformed files, missing properties, NaN/Inf or absurd values.
    """
    try:
        a, name = _load(path, int(max_bytes), int(max_splats))
        levels = a["level"]
        if len(levels) == 0:
            return []
        unique = np.unique(levels)
        if len(unique) == 1:
            return [_make_chunk(a, None, int(unique[0]), name)]
        return [_make_chunk(a, np.flatnonzero(levels == lv), int(lv), name) for lv in unique]
    except PlyError:
        raise
    except MemoryError:
        raise PlyError("not enough memory to import the PLY file") from None
    except Exception as e:  # a reader bug must still surface as one readable line
        raise PlyError(f"cannot import PLY file: {type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160] if str(e) else ''}") from e


def import_ply(path: PathLike, max_bytes: int = DEFAULT_MAX_BYTES,
               max_splats: int = DEFAULT_MAX_SPLATS) -> SplatChunk:
    """Read a 3DGS PLY file as one chunk (origin (0, 0, 0), validated).

    The chunk's level is the file's `level` property (0 when absent). A file whose splats
    carry several levels (a multi-level WonderZoom export) raises `PlyError`: use
    `import_ply_levels` for those. An empty file gives an empty level-0 chunk.
    Limits and errors as in `import_ply_levels`.
    """
    chunks = import_ply_levels(path, max_bytes=max_bytes, max_splats=max_splats)
    if not chunks:
        return SplatChunk(np.zeros(3), np.zeros((0, 3), np.float32), np.zeros((0, 4), np.float32),
                          np.zeros((0, 3), np.float32), np.zeros(0, np.float32),
                          np.zeros((0, 3), np.float32), np.zeros(0, np.float32), 0)
    if len(chunks) > 1:
        name = _printable(os.path.basename(os.fspath(path)))
        raise PlyError(f"{name}: holds splats of {len(chunks)} levels "
                       f"({', '.join(str(c.level) for c in chunks[:8])}"
                       f"{', ...' if len(chunks) > 8 else ''}); use import_ply_levels")
    return chunks[0]


__all__ = ["PlyError", "export_ply", "import_ply", "import_ply_levels", "ply_property_names",
           "MAX_HEADER_BYTES", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SPLATS"]
