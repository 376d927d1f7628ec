// The chunk file (.wzc): 16 bytes per splat with a per-chunk bit layout (a record is 128
// bits: four little-endian uint32 words, the same bits as the Python side's two uint64s). The byte layout and
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
export const RECORD_BYTES = 16;
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
  if (buffer.byteLength !== HEADER_BYTES + RECORD_BYTES * count) {
    throw new ChunkFileError(`chunk of ${count} splats must be ${HEADER_BYTES + RECORD_BYTES * count} bytes, not ${buffer.byteLength}`);
  }
  const fields = {};
  FIELDS.forEach((name, i) => {
    const offset = view.getUint8(8 + 2 * i);
    const width = view.getUint8(9 + 2 * i);
    if (width > MAX_FIELD_BITS || offset + width > 128) {
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
  return { count, fields, c };
}

// a field's reader: bits offset .. offset + width - 1 of record i (it may straddle two words)
function reader(words, fields, name) {
  const [offset, width] = fields[name];
  const word = offset >> 5, shift = offset & 31;
  const mask = (1 << width) - 1;
  if (width === 0) return () => 0;
  if (shift + width <= 32) return (i) => (words[4 * i + word] >>> shift) & mask;
  return (i) => ((words[4 * i + word] >>> shift) | (words[4 * i + word + 1] << (32 - shift))) & mask;
}

// positions as float64 offsets, etc.: the Python decoder's numbers, splat i
export function decodeChunk(buffer, expectedCount) {
  const { count, fields, c } = parseHeader(buffer, expectedCount);
  const words = new Uint32Array(buffer, HEADER_BYTES, 4 * count);
  const f = Object.fromEntries(FIELDS.map((name) => [name, reader(words, fields, name)]));
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
  const grid = c[20];
  for (let i = 0; i < count; i++) {
    const px = c[0] + f.px(i) * c[3], py = c[1] + f.py(i) * c[4], pz = c[2] + f.pz(i) * c[5];
    const lx = c[6] + f.sx(i) * c[9], ly = c[7] + f.sy(i) * c[10], lz = c[8] + f.sz(i) * c[11];
    const op = c[12] + f.op(i) * c[13];
    const r = c[14] + f.r(i) * c[17], g = c[15] + f.g(i) * c[18], bl = c[16] + f.b(i) * c[19];
    // smallest three -> (w, x, y, z)
    const qi = f.qi(i);
    const s = Math.SQRT2 / rotLevels;
    const c0 = f.qa(i) * s - Math.SQRT1_2, c1 = f.qb(i) * s - Math.SQRT1_2, c2 = f.qc(i) * s - Math.SQRT1_2;
    const largest = Math.sqrt(Math.max(0, 1 - c0 * c0 - c1 * c1 - c2 * c2));
    let qw, qx, qy, qz;
    if (qi === 0) { qw = largest; qx = c0; qy = c1; qz = c2; }
    else if (qi === 1) { qw = c0; qx = largest; qy = c1; qz = c2; }
    else if (qi === 2) { qw = c0; qx = c1; qy = largest; qz = c2; }
    else { qw = c0; qx = c1; qy = c2; qz = largest; }
    const qn = Math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz);
    const w = qw / qn, x = qx / qn, y = qy / qn, z = qz / qn;
    const sx = Math.exp(lx), sy = Math.exp(ly), sz = Math.exp(lz);
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
    main[o + 12] = Math.min(1, Math.max(0, r));
    main[o + 13] = Math.min(1, Math.max(0, g));
    main[o + 14] = Math.min(1, Math.max(0, bl));
    main[o + 15] = Math.min(1, Math.max(0, op));

    const Ln = c[21] + f.n(i);
    const par = f.par(i), chi = f.chi(i);
    const n = Ln * grid;
    const b = par > 0 ? (Ln + c[22] + par - 1) * grid : Infinity;
    const a = chi > 0 ? (Ln - (c[23] + chi - 1)) * grid : -Infinity;
    const step = chi > 0 ? c[24] + f.cst(i) : 0;
    lod[4 * i] = n;
    lod[4 * i + 1] = b === Infinity ? NO_PARENT : b;
    lod[4 * i + 2] = a === -Infinity ? NO_CHILD : a;
    lod[4 * i + 3] = step;

    cull.x[i] = px; cull.y[i] = py; cull.z[i] = pz;
    cull.radius[i] = 3 * Math.max(sx, sy, sz);
    cull.opacity[i] = main[o + 15];
    cull.n[i] = n; cull.b[i] = b; cull.a[i] = a; cull.childStep[i] = step;
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
