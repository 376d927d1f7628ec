// The chunk file (.wzc): 15 (or 16) bytes per splat with a per-chunk bit layout (a record is
// 120 or 128 bits, records back to back; padded to 16 bytes it is four little-endian uint32
// words, the same bits as the Python side's two uint64s). The byte layout and
// the meaning and error bound of every field are documented in ui/web/chunkfile.py (the
// exporter's encoder and the Python twin of this decoder).
//
// decodeChunk turns a file into
//   main [16 N] float32: the rows points.glsl reads (local xyz, M = R diag(scale) by columns,
//                        rgb, opacity), the same layout as the native renderer's arena;
//   lod  [4 N]  float32: log s_native, log s_parent (1e30: none), log s_child (-1e30: none),
//                        the path step from which the child link applies;
//   cull: what the sort worker needs per splat (local position, 3-sigma radius, logs, opacity).

export const MAGIC = 0x31575a57; // "WZW1" read as a little-endian uint32
export const HEADER_BYTES = 256;
export const RECORD_SIZES = [15, 16]; // bytes per record, byte 44 of the header says which
export const FIELDS = ['px', 'py', 'pz', 'qi', 'qa', 'qb', 'qc', 'sx', 'sy', 'sz', 'op',
  'r', 'g', 'b', 'n', 'par', 'chi', 'cst'];
export const MAX_CHUNK_SPLATS = 65536;
export const NO_PARENT = 1e30; // what points.glsl uses for an absent link
export const NO_CHILD = -1e30;
const MAX_FIELD_BITS = 16;

export class ChunkFileError extends Error {}

// header -> {count, fields: {name: [offset, width]}, c: [25] float64}; validates everything
// a hostile file could lie about: magic, size, field layout, finite constants
export function parseHeader(buffer, expectedCount) {
  if (!(buffer instanceof ArrayBuffer)) throw new ChunkFileError('chunk is not binary data');
  if (buffer.byteLength < HEADER_BYTES) throw new ChunkFileError('chunk file is too short');
  const view = new DataView(buffer);
  if (view.getUint32(0, true) !== MAGIC) throw new ChunkFileError('not a WonderZoom web chunk (bad magic)');
  const count = view.getUint32(4, true);
  if (count !== expectedCount) throw new ChunkFileError(`chunk holds ${count} splats, the manifest says ${expectedCount}`);
  if (count > MAX_CHUNK_SPLATS) throw new ChunkFileError('chunk holds too many splats');
  const recordBytes = view.getUint8(44);
  if (!RECORD_SIZES.includes(recordBytes)) throw new ChunkFileError(`chunk records of ${recordBytes} bytes`);
  if (buffer.byteLength !== HEADER_BYTES + recordBytes * count) {
    throw new ChunkFileError(`chunk of ${count} splats must be ${HEADER_BYTES + recordBytes * count} bytes, not ${buffer.byteLength}`);
  }
  const fields = {};
  FIELDS.forEach((name, i) => {
    const offset = view.getUint8(8 + 2 * i);
    const width = view.getUint8(9 + 2 * i);
    if (width > MAX_FIELD_BITS || offset + width > 8 * recordBytes) {
      throw new ChunkFileError(`chunk field ${name} has an impossible layout`);
    }
    fields[name] = [offset, width];
  });
  const c = [];
  for (let i = 0; i < 25; i++) {
    const v = view.getFloat64(48 + 8 * i, true);
    if (!Number.isFinite(v)) throw new ChunkFileError('chunk constants are not finite');
    c.push(v);
  }
  if (!(c[20] > 0 && c[20] < 1)) throw new ChunkFileError('chunk LoD grid is out of range');
  for (const i of [21, 22, 23, 24]) {
    if (!Number.isInteger(c[i]) || Math.abs(c[i]) > 1e7) throw new ChunkFileError('chunk LoD bases are out of range');
  }
  return { count, recordBytes, fields, c };
}

// one field of every record as a column (a tight loop per field is much faster than
// extracting 18 fields per splat through closures): bits offset .. offset + width - 1
function column(words, count, [offset, width]) {
  const out = new Uint32Array(count);
  if (width === 0) return out;
  const word = offset >> 5, shift = offset & 31, mask = (1 << width) - 1;
  if (shift + width <= 32) {
    for (let i = 0, k = word; i < count; i++, k += 4) out[i] = (words[k] >>> shift) & mask;
  } else {
    for (let i = 0, k = word; i < count; i++, k += 4) out[i] = ((words[k] >>> shift) | (words[k + 1] << (32 - shift))) & mask;
  }
  return out;
}

// the records padded to 16 bytes (zero bytes after a 15-byte one), as 4 uint32 words each
function paddedWords(buffer, count, recordBytes) {
  if (recordBytes === 16) return new Uint32Array(buffer, HEADER_BYTES, 4 * count);
  const src = new Uint8Array(buffer, HEADER_BYTES, recordBytes * count);
  const dst = new Uint8Array(16 * count);
  for (let i = 0, s = 0, d = 0; i < count; i++, d += 16 - recordBytes) {
    for (let j = 0; j < recordBytes; j++) dst[d++] = src[s++];
  }
  return new Uint32Array(dst.buffer);
}

// positions as float64 offsets, etc.: the Python decoder's numbers, splat i
export function decodeChunk(buffer, expectedCount) {
  const { count, recordBytes, fields, c } = parseHeader(buffer, expectedCount);
  const words = paddedWords(buffer, count, recordBytes);
  const f = Object.fromEntries(FIELDS.map((name) => [name, column(words, count, fields[name])]));
  const rotBits = fields.qa[1];
  const rotLevels = (1 << rotBits) - 1;
  const main = new Float32Array(16 * count);
  const lod = new Float32Array(4 * count);
  const cull = {
    count,
    x: new Float32Array(count), y: new Float32Array(count), z: new Float32Array(count),
    radius: new Float32Array(count), opacity: new Float32Array(count),
    n: new Float64Array(count), b: new Float64Array(count), a: new Float64Array(count),
    childStep: new Float64Array(count),
  };
  const [pxLo, pyLo, pzLo, pxStep, pyStep, pzStep, sxLo, syLo, szLo, sxStep, syStep, szStep, opLo, opStep,
    rLo, gLo, bLo, rStep, gStep, bStep, grid, nBase, parBase, chiBase, stepBase] = c;
  const { px: PX, py: PY, pz: PZ, qi: QI, qa: QA, qb: QB, qc: QC, sx: SX, sy: SY, sz: SZ, op: OP,
    r: CR, g: CG, b: CB, n: N, par: PAR, chi: CHI, cst: CST } = f;
  const { x: CX, y: CY, z: CZ, radius: RADIUS, opacity: OPACITY, n: LN, b: LB, a: LA, childStep: STEP } = cull;
  const rs = Math.SQRT2 / rotLevels, half = Math.SQRT1_2;
  const clamp01 = (v) => (v < 0 ? 0 : v > 1 ? 1 : v);
  for (let i = 0; i < count; i++) {
    const px = pxLo + PX[i] * pxStep, py = pyLo + PY[i] * pyStep, pz = pzLo + PZ[i] * pzStep;
    const sx = Math.exp(sxLo + SX[i] * sxStep), sy = Math.exp(syLo + SY[i] * syStep), sz = Math.exp(szLo + SZ[i] * szStep);
    // smallest three -> (w, x, y, z)
    const qi = QI[i];
    const c0 = QA[i] * rs - half, c1 = QB[i] * rs - half, c2 = QC[i] * rs - half;
    const largest = Math.sqrt(Math.max(0, 1 - c0 * c0 - c1 * c1 - c2 * c2));
    let qw, qx, qy, qz;
    if (qi === 0) { qw = largest; qx = c0; qy = c1; qz = c2; }
    else if (qi === 1) { qw = c0; qx = largest; qy = c1; qz = c2; }
    else if (qi === 2) { qw = c0; qx = c1; qy = largest; qz = c2; }
    else { qw = c0; qx = c1; qy = c2; qz = largest; }
    const inv = 1 / Math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz);
    const w = qw * inv, x = qx * inv, y = qy * inv, z = qz * inv;
    const o = 16 * i;
    main[o] = px; main[o + 1] = py; main[o + 2] = pz;
    // columns of R diag(s) (engine.splats.quaternions_to_matrices)
    main[o + 3] = (1 - 2 * (y * y + z * z)) * sx;
    main[o + 4] = 2 * (x * y + w * z) * sx;
    main[o + 5] = 2 * (x * z - w * y) * sx;
    main[o + 6] = 2 * (x * y - w * z) * sy;
    main[o + 7] = (1 - 2 * (x * x + z * z)) * sy;
    main[o + 8] = 2 * (y * z + w * x) * sy;
    main[o + 9] = 2 * (x * z + w * y) * sz;
    main[o + 10] = 2 * (y * z - w * x) * sz;
    main[o + 11] = (1 - 2 * (x * x + y * y)) * sz;
    main[o + 12] = clamp01(rLo + CR[i] * rStep);
    main[o + 13] = clamp01(gLo + CG[i] * gStep);
    main[o + 14] = clamp01(bLo + CB[i] * bStep);
    const op = clamp01(opLo + OP[i] * opStep);
    main[o + 15] = op;

    const Ln = nBase + N[i];
    const par = PAR[i], chi = CHI[i];
    const n = Ln * grid;
    const b = par > 0 ? (Ln + parBase + par - 1) * grid : Infinity;
    const a = chi > 0 ? (Ln - (chiBase + chi - 1)) * grid : -Infinity;
    const step = chi > 0 ? stepBase + CST[i] : 0;
    const l = 4 * i;
    lod[l] = n;
    lod[l + 1] = par > 0 ? b : NO_PARENT;
    lod[l + 2] = chi > 0 ? a : NO_CHILD;
    lod[l + 3] = step;

    CX[i] = px; CY[i] = py; CZ[i] = pz;
    RADIUS[i] = 3 * (sx > sy ? (sx > sz ? sx : sz) : (sy > sz ? sy : sz));
    OPACITY[i] = op;
    LN[i] = n; LB[i] = b; LA[i] = a; STEP[i] = step;
  }
  return { count, main, lod, cull, constants: c, fields };
}

// The decoded values in the units of the Python decoder (for tests): float64 arrays
export function decodeValues(buffer, expectedCount) {
  const { count, main, cull } = decodeChunk(buffer, expectedCount);
  return {
    count,
    positions: Array.from({ length: count }, (_, i) => [main[16 * i], main[16 * i + 1], main[16 * i + 2]]),
    rgb: Array.from({ length: count }, (_, i) => [main[16 * i + 12], main[16 * i + 13], main[16 * i + 14]]),
    opacity: Array.from(cull.opacity),
    logSNative: Array.from(cull.n),
    logSParent: Array.from(cull.b),
    logSChild: Array.from(cull.a),
    childStep: Array.from(cull.childStep),
  };
}
