// manifest.json: read it as hostile input. Every number must be finite and in range, every
// string bounded, and every file the page will fetch must be a plain name under chunks/ of
// the folder the manifest came from (no "..", no scheme, no host, no query): the page fetches
// only what passes here.
import { Camera } from './camera.js';
import { MAX_CHUNK_SPLATS, HEADER_BYTES, RECORD_SIZES } from './chunkfile.js';

export const FORMAT = 'wonderzoom-web';
export const VERSION = 1;
export const LIMITS = {
  chunks: 1 << 16, splats: 64 << 20, steps: 10000, promptChars: 2000, titleChars: 300,
  manifestBytes: 64 << 20,
};
const CHUNK_NAME = /^chunks\/c[0-9]{5,7}\.wzc$/;

export class ManifestError extends Error {}

function fail(msg) { throw new ManifestError(msg); }
function obj(v, what) {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(`${what} must be an object`);
  return v;
}
function finite(v, what) {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${what} is not a finite number`);
  return v;
}
function int(v, lo, hi, what) {
  if (!Number.isInteger(v) || v < lo || v > hi) fail(`${what} must be an integer in ${lo}..${hi}`);
  return v;
}
function vec3(v, what) {
  if (!Array.isArray(v) || v.length !== 3) fail(`${what} must be three numbers`);
  return v.map((x, i) => finite(x, `${what}[${i}]`));
}
function str(v, most, what) {
  if (typeof v !== 'string') fail(`${what} must be text`);
  if (v.length > most) fail(`${what} is longer than ${most} characters`);
  return v;
}
function camera(v, what) {
  if (v === null) return null;
  try {
    return Camera.fromDict(v);
  } catch (e) {
    fail(`${what}: ${e.message}`);
  }
}

// `chunkName` -> absolute URL under `base` (the manifest's folder), or a ManifestError
export function chunkURL(name, base) {
  if (typeof name !== 'string' || !CHUNK_NAME.test(name)) fail(`chunk file name ${JSON.stringify(String(name).slice(0, 80))} is not allowed`);
  const folder = new URL('./', base);
  const url = new URL(name, folder);
  if (url.origin !== folder.origin || !url.pathname.startsWith(folder.pathname) || url.search || url.hash) {
    fail(`chunk file ${name} is outside the world's folder`);
  }
  return url.href;
}

// JSON text (already parsed) -> a checked manifest with Camera objects and chunk URLs
export function checkManifest(m, base) {
  obj(m, 'manifest');
  if (m.format !== FORMAT) fail('not a WonderZoom web manifest');
  if (m.version !== VERSION) fail(`manifest version ${String(m.version).slice(0, 20)} is not supported (this viewer reads ${VERSION})`);
  const title = m.title === undefined ? '' : str(m.title, LIMITS.titleChars, 'title');
  if (!Array.isArray(m.steps) || m.steps.length < 1 || m.steps.length > LIMITS.steps) fail('manifest steps must be a non-empty list');
  const steps = m.steps.map((s, k) => {
    obj(s, `step ${k}`);
    return {
      id: int(s.id, 0, 2 ** 31, `step ${k} id`),
      kind: str(s.kind, 20, `step ${k} kind`),
      prompt: str(s.prompt ?? '', LIMITS.promptChars, `step ${k} prompt`),
      camera: camera(s.camera ?? null, `step ${k} camera`),
      point: s.point == null ? null : vec3(s.point, `step ${k} point`),
      splats: int(s.splats, 0, LIMITS.splats, `step ${k} splats`),
    };
  });
  const start = camera(m.start, 'start camera');
  if (!start) fail('manifest has no start camera');
  obj(m.sweep, 'sweep');
  const sweep = { target: vec3(m.sweep.target, 'sweep target'), sEnd: finite(m.sweep.s_end, 'sweep s_end') };
  if (!(sweep.sEnd > 0)) fail('sweep s_end must be positive');
  if (!Array.isArray(m.chunks) || m.chunks.length > LIMITS.chunks) fail('manifest chunks must be a list');
  let total = 0;
  const seen = new Set();
  const chunks = m.chunks.map((c, i) => {
    const what = `chunk ${i}`;
    obj(c, what);
    const url = chunkURL(c.file, base);
    if (seen.has(url)) fail(`${what} repeats file ${c.file}`);
    seen.add(url);
    const count = int(c.count, 1, MAX_CHUNK_SPLATS, `${what} count`);
    total += count;
    if (total > LIMITS.splats) fail('manifest holds too many splats');
    const bytes = int(c.bytes, 0, 2 ** 31, `${what} bytes`);
    if (!RECORD_SIZES.some((r) => bytes === HEADER_BYTES + r * count)) fail(`${what}: ${bytes} bytes do not hold ${count} splats`);
    const lo = vec3(c.lo, `${what} lo`), hi = vec3(c.hi, `${what} hi`);
    if (lo.some((v, k) => v > hi[k])) fail(`${what} bounds are inverted`);
    const level = int(c.level, 0, steps.length - 1, `${what} level`);
    if (!Array.isArray(c.bands) || c.bands.length < 1 || c.bands.length > steps.length) fail(`${what} bands must be a list`);
    let last = level - 1;
    const bands = c.bands.map((b, j) => {
      if (!Array.isArray(b) || b.length !== 3) fail(`${what} band ${j} must be [step, lo, hi]`);
      const k = int(b[0], last + 1, steps.length - 1, `${what} band ${j} step`);
      last = k;
      const bandLo = finite(b[1], `${what} band ${j} lo`);
      const bandHi = b[2] === null ? Infinity : finite(b[2], `${what} band ${j} hi`);
      if (!(bandLo >= 0)) fail(`${what} band ${j} is negative`);
      return { step: k, lo: bandLo, hi: bandHi };
    });
    if (bands[0].step !== level) fail(`${what} band must start at its level`);
    return { index: i, url, file: c.file, count, bytes, level, origin: vec3(c.origin, `${what} origin`), lo, hi, bands };
  });
  if (chunks.length === 0) fail('manifest names no chunks');
  return { title, step: m.step, steps, start, sweep, chunks, totalSplats: total };
}

// the chunk's band (lo, hi of s_render) at path step k, or null before it exists
export function bandAt(chunk, k) {
  let band = null;
  for (const b of chunk.bands) if (b.step <= k) band = b;
  return band;
}
