// The viewer's worker: fetches and decodes chunk files, and culls + sorts the resident splats
// for a camera, off the main thread (the twin of engine/render/visibility.py's splat level).
//
// Messages in:  {type: 'load', id, url, count, pages}  fetch + decode chunk `id` into `pages`
//               {type: 'drop', id}                      forget a chunk (its pages were freed)
//               {type: 'sort', seq, camera, step, chunks, maxPointPx}
// Messages out: {type: 'loaded', id, main, lod} | {type: 'failed', id, message}
//               {type: 'sorted', seq, rows, big, count, bigCount, culled, focus}
// Culling (each splat once, in this order, as engine/render/prepare.py): behind (z outside
// (near, far)), outside (3-sigma sphere plus 2 px outside a side plane), faded (alpha <=
// 0.01), faint (opacity * alpha < 1/255). The GPU applies the exact rules again. Sorting:
// 16-bit keys of log depth over the drawn set's range, a stable counting sort, back to front.
import { decodeChunk } from './chunkfile.js';
import { ALPHA_CULL, MIN_FRAGMENT_ALPHA } from './modulation.js';

const PAGE_BITS = 10;
const PAGE_SPLATS = 1 << PAGE_BITS;
const FRUSTUM_MARGIN_PX = 2;
const KEYS = 65536;
const FOCUS_CELLS_X = 32, FOCUS_CELLS_Y = 18;
const FOCUS_MIN_ALPHA = 0.5;

const chunks = new Map(); // id -> {cull, origin, pages}
let scratch = { z: new Float64Array(0), row: new Uint32Array(0), big: new Uint8Array(0), keys: new Uint16Array(0) };

function ensureScratch(n) {
  if (scratch.z.length >= n) return;
  const size = Math.max(n, Math.ceil(scratch.z.length * 1.5));
  scratch = { z: new Float64Array(size), row: new Uint32Array(size), big: new Uint8Array(size), keys: new Uint16Array(size) };
}

async function load(msg) {
  const { id, url, count, pages, origin } = msg;
  try {
    // the main thread checked the URL (same folder); redirects could lead elsewhere: refused
    const response = await fetch(url, { redirect: 'error', credentials: 'same-origin' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`.trim());
    const buffer = await response.arrayBuffer();
    const { main, lod, cull } = decodeChunk(buffer, count);
    chunks.set(id, { cull, origin, pages });
    self.postMessage({ type: 'loaded', id, main, lod }, [main.buffer, lod.buffer]);
  } catch (e) {
    self.postMessage({ type: 'failed', id, message: e.message || String(e) });
  }
}

function sort(msg) {
  const { seq, camera, step, maxPointPx } = msg;
  const R = camera.R, eye = camera.eye;
  const fx = camera.fx, fy = camera.fy, cx = camera.cx, cy = camera.cy;
  const W = camera.width, H = camera.height;
  const near = camera.near, far = camera.far;
  const logFocal = 0.5 * Math.log(fx * fy);
  const marginPerZ = FRUSTUM_MARGIN_PX / Math.min(fx, fy);
  // side planes (unit normals, through the eye) in camera space
  const planes = [[1, 0, cx / fx], [-1, 0, (W - cx) / fx], [0, 1, cy / fy], [0, -1, (H - cy) / fy]]
    .map((p) => { const l = Math.hypot(p[0], p[1], p[2]); return [p[0] / l, p[1] / l, p[2] / l]; });
  let total = 0;
  for (const id of msg.chunks) { const c = chunks.get(id); if (c) total += c.cull.count; }
  ensureScratch(total);
  const zs = scratch.z, rows = scratch.row, bigs = scratch.big;
  const focus = new Float32Array(FOCUS_CELLS_X * FOCUS_CELLS_Y).fill(Infinity);
  let m = 0, culled = 0;
  let zmin = Infinity, zmax = 0;
  const maxFoot = maxPointPx;
  for (const id of msg.chunks) {
    const c = chunks.get(id);
    if (!c) continue;
    const { x, y, z, radius, opacity, n, b, a, childStep } = c.cull;
    // float64: chunk origin relative to the eye, rotated into camera space
    const dx = c.origin[0] - eye[0], dy = c.origin[1] - eye[1], dz = c.origin[2] - eye[2];
    const ox = dx * R[0] + dy * R[3] + dz * R[6];
    const oy = dx * R[1] + dy * R[4] + dz * R[7];
    const oz = dx * R[2] + dy * R[5] + dz * R[8];
    const pages = c.pages;
    for (let i = 0, count = c.cull.count; i < count; i++) {
      const lx = x[i], ly = y[i], lz = z[i];
      const pz = lx * R[2] + ly * R[5] + lz * R[8] + oz;
      if (!(pz > near && pz < far)) { culled++; continue; }
      const px = lx * R[0] + ly * R[3] + lz * R[6] + ox;
      const py = lx * R[1] + ly * R[4] + lz * R[7] + oy;
      const rad = radius[i] + marginPerZ * pz;
      if (planes[0][0] * px + planes[0][2] * pz < -rad || planes[1][0] * px + planes[1][2] * pz < -rad ||
          planes[2][1] * py + planes[2][2] * pz < -rad || planes[3][1] * py + planes[3][2] * pz < -rad) {
        culled++; continue;
      }
      // modulation (engine.modulation.alpha in logs), the child only from its step on
      const xs = Math.log(pz) - logFocal;
      const nn = n[i];
      let mod;
      if (xs >= nn) { const bb = b[i]; mod = bb === Infinity ? 1 : (bb - xs) / (bb - nn); }
      else { const aa = childStep[i] <= step ? a[i] : -Infinity; mod = aa === -Infinity ? 1 : (xs - aa) / (nn - aa); }
      if (mod > 1) mod = 1;
      if (!(mod > ALPHA_CULL)) { culled++; continue; }
      const op = opacity[i] * mod;
      if (op < MIN_FRAGMENT_ALPHA) { culled++; continue; }
      // footprint bound (3 sigma, off-axis stretch, low-pass) against the largest point
      const inv = 1 / pz;
      const stretch = Math.sqrt(1 + (px * px + py * py) * inv * inv);
      const half = radius[i] * Math.max(fx, fy) * inv * stretch + 2;
      bigs[m] = 2 * half + 1 > maxFoot ? 1 : 0;
      zs[m] = pz;
      rows[m] = (pages[i >> PAGE_BITS] << PAGE_BITS) | (i & (PAGE_SPLATS - 1));
      if (pz < zmin) zmin = pz;
      if (pz > zmax) zmax = pz;
      if (op > FOCUS_MIN_ALPHA) {
        const u = fx * px * inv + cx, v = fy * py * inv + cy;
        if (u >= 0 && u < W && v >= 0 && v < H) {
          const cell = Math.floor((v / H) * FOCUS_CELLS_Y) * FOCUS_CELLS_X + Math.floor((u / W) * FOCUS_CELLS_X);
          if (pz < focus[cell]) focus[cell] = pz;
        }
      }
      m++;
    }
  }
  // stable counting sort on 16-bit log-depth keys, furthest first
  const out = new Uint32Array(m);
  const outBig = new Uint8Array(m);
  let bigCount = 0;
  if (m > 0) {
    const keys = scratch.keys;
    const lo = Math.log(zmin), span = Math.log(zmax) - lo;
    const k = span > 0 ? (KEYS - 1) / span : 0;
    const counts = new Uint32Array(KEYS + 1);
    for (let i = 0; i < m; i++) {
      const key = KEYS - 1 - Math.round((Math.log(zs[i]) - lo) * k); // nearest = largest key
      keys[i] = key;
      counts[key + 1]++;
    }
    for (let i = 0; i < KEYS; i++) counts[i + 1] += counts[i];
    for (let i = 0; i < m; i++) {
      const dst = counts[keys[i]]++;
      out[dst] = rows[i];
      outBig[dst] = bigs[i];
      bigCount += bigs[i];
    }
  }
  self.postMessage({ type: 'sorted', seq, rows: out, big: bigCount ? outBig : null, count: m, bigCount, culled, focus },
    bigCount ? [out.buffer, outBig.buffer, focus.buffer] : [out.buffer, focus.buffer]);
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === 'load') load(msg);
  else if (msg.type === 'drop') chunks.delete(msg.id);
  else if (msg.type === 'sort') sort(msg);
};
