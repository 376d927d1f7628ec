"""The web viewer's chunk file: 15 bytes per splat, quantized with a per-chunk bit layout.

Owns: encoding a block of splats (with their LoD links) into one `.wzc` file, decoding it
back (the Python twin of `viewer/chunkfile.js`, used by the exporter for bounds and bands,
by the tests and by the benchmark), and the error bound of every quantized quantity.
Does not own: which splats form a chunk or what the links are (`ui.web.export`), drawing.

Layout (little-endian):
    0    4  magic b"WZW1"
    4    4  uint32 N, splats in the file
    8   36  18 x (uint8 bit offset, uint8 width), one per field of `FIELDS` (offset 0 when
            the width is 0)
   44    1  R, bytes per record: 15 or 16
   45    3  zero
   48  200  25 float64: position lo[3], step[3]; log-scale lo[3], step[3]; opacity lo, step;
            colour lo[3], step[3]; log-scale grid, n base, parent base, child base, step base
  248    8  zero
  256  R*N  N records of 8R bits, back to back. Read a record as the little-endian integer
            of its R bytes (a decoder pads a 15-byte record with a zero byte to two uint64
            halves or four uint32 words); a field of width w at bit offset o is bits
            o .. o + w - 1 of it (it may straddle any byte or word). The fields follow one
            another in `FIELDS` order.
A field of width 0 is constant over the chunk: every splat has the value q = 0.

Values (q is a field's unsigned integer):
- position (offset from the chunk origin, world units): lo + q * step per axis over the
  chunk's box of centres; error <= step / 2.
- rotation: "smallest three" of the unit quaternion (w, x, y, z) made to have its largest
  component positive: `qi` names the largest, the other three in order are
  (q * sqrt(2) / (2^w - 1) - 1/sqrt(2)); the largest is sqrt(1 - sum of squares).
  Error per component <= 1 / (sqrt(2) (2^w - 1)).
- log-scales (log sigma): lo + q * step per axis; error <= step / 2 (a relative sigma error
  of exp(step / 2) - 1).
- opacity (sigmoid of the logit, as drawn) and colour (0.5 + SH_C0 * sh_dc clamped to
  [0, 1], as drawn: higher SH degrees are not drawn by any of our renderers): lo + q * step,
  error <= step / 2.
- LoD: natural logs of s_native, s_parent, s_child on one world-wide grid of `LOG_GRID`
  (integers L = round(log s / LOG_GRID)), so a parent's s_native and its child's s_parent
  stay equal after quantization and the modulation's partition of unity still holds
  exactly; error <= LOG_GRID / 2 in log s. L_n = n_base + q_n. `par`: 0 = no parent
  (a root splat), else L_parent = L_n + par_base + par - 1. `chi`: 0 = no child, else
  L_child = L_n - (chi_base + chi - 1). `cst`: the child exists from path step
  (step_base + cst) on (the timeline shows earlier steps without it).
A link shorter than one grid step (a ramp narrower than 0.4%) is widened to one step.

Bit widths are chosen per chunk: colour and opacity 8 bits, rotation components 9, LoD
fields exactly as many as their integer range needs, then position 16 and log-scales 8
bits per axis, lowered one group at a time (`_SQUEEZE`, round robin) until the fields fit
120 bits (a 15-byte record; with a 256-byte header per chunk of up to 8192 splats that keeps
an export under 16 bytes a splat), or, where the LoD fields are too wide for that at the
minimum precision, 128 bits (a 16-byte record). A chunk that cannot
keep `MIN_POSITION_BITS` is refused (`LayoutTooTight`); the exporter then splits it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from engine.splats import SH_C0

MAGIC = b"WZW1"
HEADER_BYTES = 256
RECORD_SIZES = (15, 16)  # bytes per record: 15 where the fields fit, else 16
_PADDED = 16  # a record padded to two uint64 halves
LOG_GRID = 2.0 ** -8  # LoD log-scale grid (world-wide)
FIELDS = ("px", "py", "pz", "qi", "qa", "qb", "qc", "sx", "sy", "sz", "op",
          "r", "g", "b", "n", "par", "chi", "cst")
F = {name: i for i, name in enumerate(FIELDS)}
MAX_FIELD_BITS = 16
MIN_POSITION_BITS = 12
COLOUR_BITS = 8
OPACITY_BITS = 8
ROTATION_BITS = 9
POSITION_BITS = 16
SCALE_BITS = 8
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
# lowered one bit at a time, in this order, until the layout fits (then from the start again)
_SQUEEZE = (("px", "py", "pz"), ("sx", "sy", "sz"), ("px", "py", "pz"), ("px", "py", "pz"),
            ("sx", "sy", "sz"), ("px", "py", "pz"), ("qa", "qb", "qc"), ("sx", "sy", "sz"))
_MIN_BITS = {"px": MIN_POSITION_BITS, "py": MIN_POSITION_BITS, "pz": MIN_POSITION_BITS,
             "sx": 5, "sy": 5, "sz": 5, "qa": 8, "qb": 8, "qc": 8}
_CONSTS = struct.Struct("<25d")
_TABLE = struct.Struct("<36B")


class LayoutTooTight(ValueError):
    """The chunk's value ranges need more than 128 bits per splat at the minimum precision."""


class ChunkFileError(ValueError):
    """A chunk file is malformed (wrong magic, size or constants)."""


@dataclass(frozen=True)
class ChunkData:
    """What a chunk file holds, decoded (float64; LoD links as in `engine.lod.LodLinks`)."""

    positions: np.ndarray  # [N, 3] offsets from the chunk origin (world units)
    rotations: np.ndarray  # [N, 4] unit quaternions (w, x, y, z)
    log_scales: np.ndarray  # [N, 3]
    opacity: np.ndarray  # [N] in [0, 1], before modulation
    rgb: np.ndarray  # [N, 3] in [0, 1]
    s_native: np.ndarray  # [N]
    s_parent: np.ndarray  # [N], inf where no parent
    s_child: np.ndarray  # [N], 0 where no child (at the last step)
    child_step: np.ndarray  # [N] int64, path step from which s_child applies

    def s_child_at(self, step: int) -> np.ndarray:
        """[N] s_child as the world stood at path step `step`."""
        return np.where(self.child_step <= step, self.s_child, 0.0)


@dataclass(frozen=True)
class Encoded:
    data: bytes  # the whole file
    widths: dict[str, int]
    errors: dict[str, float]  # the bound of each quantity (see `error_bounds`)


# ---- helpers ---------------------------------------------------------------------------------
def _bits_for(max_value: int) -> int:
    return int(max_value).bit_length()


def _uniform(values: np.ndarray, bits: int) -> tuple[np.ndarray, float, float]:
    """(q, lo, step): values ([N], float64) on a uniform grid of 2^bits levels over their
    range; a constant column needs no bits (step 0)."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo or bits == 0:
        return np.zeros(len(values), np.uint32), (lo if hi == lo else 0.5 * (lo + hi)), 0.0
    step = (hi - lo) / ((1 << bits) - 1)
    q = np.clip(np.rint((values - lo) / step), 0, (1 << bits) - 1)
    return q.astype(np.uint32), lo, step


def _pack_offsets(widths: list[int], record_bits: int) -> list[int] | None:
    """Bit offsets of the fields, one after another in `FIELDS` order, or None when they
    need more than one record of `record_bits`."""
    offsets, at = [], 0
    for w in widths:
        offsets.append(at if w else 0)
        at += w
    return offsets if at <= record_bits else None


def smallest_three(rotations: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(qi [N] uint32, q [N, 3] uint32): quaternions ([N, 4] w, x, y, z) -> smallest three."""
    q = np.asarray(rotations, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    q = q * np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]  # [N, 3]
    comp = np.take_along_axis(q, others, axis=1)  # [N, 3] in [-1/sqrt2, 1/sqrt2]
    levels = (1 << bits) - 1
    u = np.clip(np.rint((comp + _INV_SQRT2) * (levels * _INV_SQRT2)), 0, levels)
    return largest.astype(np.uint32), u.astype(np.uint32)


def from_smallest_three(qi: np.ndarray, u: np.ndarray, bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    comp = u.astype(np.float64) * (math.sqrt(2.0) / levels) - _INV_SQRT2  # [N, 3]
    largest = np.sqrt(np.maximum(0.0, 1.0 - (comp * comp).sum(axis=1)))
    out = np.empty((len(qi), 4))
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[qi.astype(np.int64)]
    np.put_along_axis(out, others, comp, axis=1)
    out[np.arange(len(qi)), qi.astype(np.int64)] = largest
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def log_grid(values: np.ndarray) -> np.ndarray:
    """[N] positive scales -> [N] int64 grid indices round(log s / LOG_GRID)."""
    return np.rint(np.log(np.asarray(values, np.float64)) / LOG_GRID).astype(np.int64)


# ---- encoding --------------------------------------------------------------------------------
def encode_chunk(
    positions: np.ndarray,  # [N, 3] float offsets from the chunk origin
    rotations: np.ndarray,  # [N, 4] (w, x, y, z)
    log_scales: np.ndarray,  # [N, 3]
    opacity_logits: np.ndarray,  # [N]
    sh_dc: np.ndarray,  # [N, 3]
    s_native: np.ndarray,  # [N] > 0
    s_parent: np.ndarray,  # [N], inf where none
    s_child: np.ndarray,  # [N], 0 where none (at the last step)
    child_step: np.ndarray,  # [N] int, path step from which s_child applies
) -> Encoded:
    n = len(positions)
    pos = np.asarray(positions, np.float64)
    ls = np.asarray(log_scales, np.float64)
    with np.errstate(over="ignore"):
        opacity = 1.0 / (1.0 + np.exp(-np.asarray(opacity_logits, np.float64)))
    rgb = np.clip(0.5 + SH_C0 * np.asarray(sh_dc, np.float64), 0.0, 1.0)

    # LoD on the world grid, links only where they point the right way (engine.modulation)
    s_native = np.asarray(s_native, np.float64)
    s_parent = np.asarray(s_parent, np.float64)
    s_child = np.asarray(s_child, np.float64)
    L_n = log_grid(s_native)
    has_par = np.isfinite(s_parent) & (s_parent > s_native)
    has_chi = (s_child > 0) & (s_child < s_native)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_par = np.where(has_par, np.maximum(log_grid(np.where(has_par, s_parent, 1.0)) - L_n, 1), 0)
        d_chi = np.where(has_chi, np.maximum(L_n - log_grid(np.where(has_chi, s_child, 1.0)), 1), 0)
    n_base = int(L_n.min()) if n else 0
    q_n = (L_n - n_base).astype(np.uint32)
    par_base = int(d_par[has_par].min()) if has_par.any() else 1
    q_par = np.where(has_par, d_par - par_base + 1, 0).astype(np.uint32)
    chi_base = int(d_chi[has_chi].min()) if has_chi.any() else 1
    q_chi = np.where(has_chi, d_chi - chi_base + 1, 0).astype(np.uint32)
    steps = np.asarray(child_step, np.int64)
    step_base = int(steps[has_chi].min()) if has_chi.any() else 0
    q_cst = np.where(has_chi, steps - step_base, 0).astype(np.uint32)
    for name, q in (("n", q_n), ("par", q_par), ("chi", q_chi), ("cst", q_cst)):
        if n and int(q.max()) >= 1 << MAX_FIELD_BITS:
            raise LayoutTooTight(f"LoD field {name} spans {int(q.max())} grid steps")

    widths = {name: 0 for name in FIELDS}
    widths.update(qi=2, qa=ROTATION_BITS, qb=ROTATION_BITS, qc=ROTATION_BITS,
                  op=OPACITY_BITS, r=COLOUR_BITS, g=COLOUR_BITS, b=COLOUR_BITS,
                  px=POSITION_BITS, py=POSITION_BITS, pz=POSITION_BITS,
                  sx=SCALE_BITS, sy=SCALE_BITS, sz=SCALE_BITS)
    for name, q in (("n", q_n), ("par", q_par), ("chi", q_chi), ("cst", q_cst)):
        widths[name] = _bits_for(int(q.max())) if n else 0
    # constant columns need no bits
    for name, col in (("px", pos[:, 0]), ("py", pos[:, 1]), ("pz", pos[:, 2]),
                      ("sx", ls[:, 0]), ("sy", ls[:, 1]), ("sz", ls[:, 2]), ("op", opacity),
                      ("r", rgb[:, 0]), ("g", rgb[:, 1]), ("b", rgb[:, 2])):
        if n == 0 or not col.max() > col.min():
            widths[name] = 0
    record_bytes, offsets = _fit_record(widths)

    q = {}
    consts = {}
    for axis, name in enumerate(("px", "py", "pz")):
        q[name], consts[f"{name}_lo"], consts[f"{name}_step"] = _uniform(pos[:, axis], widths[name])
    for axis, name in enumerate(("sx", "sy", "sz")):
        q[name], consts[f"{name}_lo"], consts[f"{name}_step"] = _uniform(ls[:, axis], widths[name])
    q["op"], consts["op_lo"], consts["op_step"] = _uniform(opacity, widths["op"])
    for axis, name in enumerate(("r", "g", "b")):
        q[name], consts[f"{name}_lo"], consts[f"{name}_step"] = _uniform(rgb[:, axis], widths[name])
    if n:
        q["qi"], u = smallest_three(rotations, widths["qa"])
        q["qa"], q["qb"], q["qc"] = u[:, 0], u[:, 1], u[:, 2]
    else:
        q.update(qi=np.zeros(0, np.uint32), qa=np.zeros(0, np.uint32), qb=np.zeros(0, np.uint32),
                 qc=np.zeros(0, np.uint32))
    q.update(n=q_n, par=q_par, chi=q_chi, cst=q_cst)

    words = np.zeros((n, 2), np.uint64)  # the record as two 64-bit halves
    for name in FIELDS:
        w = widths[name]
        if w == 0:
            continue
        off = offsets[F[name]]
        value = q[name].astype(np.uint64) & np.uint64((1 << w) - 1)
        half, shift = off >> 6, off & 63
        words[:, half] |= value << np.uint64(shift)
        if shift + w > 64:  # the rest of a field that straddles the halves
            words[:, 1] |= value >> np.uint64(64 - shift)

    table = []
    for name in FIELDS:
        table += [offsets[F[name]] if widths[name] else 0, widths[name]]
    const_values = [consts["px_lo"], consts["py_lo"], consts["pz_lo"],
                    consts["px_step"], consts["py_step"], consts["pz_step"],
                    consts["sx_lo"], consts["sy_lo"], consts["sz_lo"],
                    consts["sx_step"], consts["sy_step"], consts["sz_step"],
                    consts["op_lo"], consts["op_step"],
                    consts["r_lo"], consts["g_lo"], consts["b_lo"],
                    consts["r_step"], consts["g_step"], consts["b_step"],
                    LOG_GRID, float(n_base), float(par_base), float(chi_base), float(step_base)]
    header = bytearray(HEADER_BYTES)
    header[0:4] = MAGIC
    struct.pack_into("<I", header, 4, n)
    _TABLE.pack_into(header, 8, *table)
    _CONSTS.pack_into(header, 48, *const_values)
    header[44] = record_bytes
    records = words.astype("<u8").view(np.uint8).reshape(n, _PADDED)
    data = bytes(header) + records[:, :record_bytes].tobytes()  # bytes past the fields are 0
    return Encoded(data, widths, error_bounds(widths, const_values))


def _fit_record(widths: dict[str, int]) -> tuple[int, list[int]]:
    """(bytes per record, bit offsets) for the smallest record of `RECORD_SIZES` the fields
    fit at the minimum precision; `widths` is lowered in place to what fits. Raises
    `LayoutTooTight`."""
    for record_bytes in RECORD_SIZES[:-1]:
        trial = dict(widths)
        try:
            offsets = _fit(trial, 8 * record_bytes)
        except LayoutTooTight:
            continue
        widths.update(trial)
        return record_bytes, offsets
    return RECORD_SIZES[-1], _fit(widths, 8 * RECORD_SIZES[-1])


def _fit(widths: dict[str, int], record_bits: int) -> list[int]:
    """Lower position / log-scale / rotation bits, one group at a time in `_SQUEEZE` order
    (round robin), until the fields fit one record of `record_bits`; returns the bit offsets.
    Raises `LayoutTooTight`."""
    turn = 0
    while True:
        offsets = _pack_offsets([widths[name] for name in FIELDS], record_bits)
        if offsets is not None:
            return offsets
        for tries in range(len(_SQUEEZE)):
            group = _SQUEEZE[(turn + tries) % len(_SQUEEZE)]
            live = [g for g in group if widths[g] > _MIN_BITS[g]]
            if live:
                for g in live:
                    widths[g] -= 1
                turn = (turn + tries + 1) % len(_SQUEEZE)
                break
        else:
            raise LayoutTooTight(
                f"{sum(widths.values())} bits per splat at the minimum precision")


def error_bounds(widths: dict[str, int], consts: list[float]) -> dict[str, float]:
    """Largest error of each decoded quantity (world units for positions, natural-log units
    for scales and LoD scales, absolute for opacity and colour, per quaternion component)."""
    return {
        "position": max(consts[3:6]) / 2.0,
        "log_scale": max(consts[9:12]) / 2.0,
        "rotation_component": (_INV_SQRT2 / ((1 << widths["qa"]) - 1)) if widths["qa"] else 0.0,
        "opacity": consts[13] / 2.0,
        "colour": max(consts[17:20]) / 2.0,
        "log_lod_scale": LOG_GRID / 2.0,
    }


# ---- decoding --------------------------------------------------------------------------------
def decode_chunk(data: bytes | memoryview) -> ChunkData:
    """The Python twin of the viewer's decoder; raises `ChunkFileError` on malformed input."""
    buf = memoryview(data)
    if len(buf) < HEADER_BYTES or bytes(buf[0:4]) != MAGIC:
        raise ChunkFileError("not a WonderZoom web chunk (bad magic)")
    (n,) = struct.unpack_from("<I", buf, 4)
    record_bytes = buf[44]
    if record_bytes not in RECORD_SIZES:
        raise ChunkFileError(f"chunk records of {record_bytes} bytes (expected 15 or 16)")
    if len(buf) != HEADER_BYTES + record_bytes * n:
        raise ChunkFileError(f"chunk of {n} splats must be {HEADER_BYTES + record_bytes * n} "
                             f"bytes, not {len(buf)}")
    table = _TABLE.unpack_from(buf, 8)
    offsets = {name: table[2 * i] for i, name in enumerate(FIELDS)}
    widths = {name: table[2 * i + 1] for i, name in enumerate(FIELDS)}
    for name in FIELDS:
        w, o = widths[name], offsets[name]
        if w > MAX_FIELD_BITS or o + w > 8 * record_bytes:
            raise ChunkFileError(f"field {name} has an impossible layout")
    c = _CONSTS.unpack_from(buf, 48)
    if not all(math.isfinite(v) for v in c) or c[20] <= 0:
        raise ChunkFileError("chunk constants are not finite")
    padded = np.zeros((n, _PADDED), np.uint8)
    padded[:, :record_bytes] = np.frombuffer(buf[HEADER_BYTES:], np.uint8).reshape(n, record_bytes)
    words = padded.view("<u8").reshape(n, 2)

    def field(name: str) -> np.ndarray:
        w, o = widths[name], offsets[name]
        if w == 0:
            return np.zeros(n, np.int64)
        half, shift = o >> 6, o & 63
        value = words[:, half] >> np.uint64(shift)
        if shift + w > 64:
            value = value | (words[:, 1] << np.uint64(64 - shift))
        return (value & np.uint64((1 << w) - 1)).astype(np.int64)

    pos = np.stack([c[0] + field("px") * c[3], c[1] + field("py") * c[4],
                    c[2] + field("pz") * c[5]], axis=1)
    ls = np.stack([c[6] + field("sx") * c[9], c[7] + field("sy") * c[10],
                   c[8] + field("sz") * c[11]], axis=1)
    opacity = c[12] + field("op") * c[13]
    rgb = np.stack([c[14] + field("r") * c[17], c[15] + field("g") * c[18],
                    c[16] + field("b") * c[19]], axis=1)
    bits = widths["qa"]
    rot = from_smallest_three(field("qi"), np.stack([field("qa"), field("qb"), field("qc")], 1),
                              bits) if bits else np.tile([1.0, 0, 0, 0], (n, 1))
    grid = c[20]
    L_n = c[21] + field("n")
    par = field("par")
    chi = field("chi")
    s_native = np.exp(L_n * grid)
    s_parent = np.where(par > 0, np.exp((L_n + c[22] + par - 1) * grid), np.inf)
    s_child = np.where(chi > 0, np.exp((L_n - (c[23] + chi - 1)) * grid), 0.0)
    child_step = (c[24] + field("cst")).astype(np.int64)
    return ChunkData(pos, rot, ls, opacity, rgb, s_native, s_parent, s_child, child_step)
