// Chunk files written by the Python encoder, read by the viewer's decoder: the same numbers
// as the Python decoder, within each field's stated error of the original splats; and
// malformed files refused with a ChunkFileError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeChunk, ChunkFileError, HEADER_BYTES, RECORD_SIZES } from '../viewer/chunkfile.js';
import { runPython } from './python.mjs';

const dir = mkdtempSync(join(tmpdir(), 'wz-chunk-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// three chunks: random splats (every field varies, the layout squeezed to its floors), a
// pixel-aligned level with LoD links (the usual case), and one splat
const fx = runPython(`
import json, sys, numpy as np
sys.path.insert(0, 'tests')
from factories import random_chunk
from engine.synthetic import nested_plane_world
from ui.web.chunkfile import encode_chunk, decode_chunk
rng = np.random.default_rng(3)
out = []
def case(name, c, sp, sc, st):
    e = encode_chunk(c.positions, c.rotations, c.log_scales, c.opacity_logits, c.sh_dc, c.s_native, sp, sc, st)
    path = '${dir}/' + name + '.wzc'
    open(path, 'wb').write(e.data)
    d = decode_chunk(e.data)
    q = c.rotations / np.linalg.norm(c.rotations, axis=1, keepdims=True)
    fin = lambda v: [None if not np.isfinite(x) else float(x) for x in v]
    out.append(dict(name=name, path=path, n=len(c), errors=e.errors, widths=e.widths,
        positions=d.positions.ravel().tolist(), log_scales=d.log_scales.ravel().tolist(), opacity=d.opacity.tolist(),
        rgb=d.rgb.ravel().tolist(), rotations=d.rotations.ravel().tolist(), log_s_native=np.log(d.s_native).tolist(),
        log_s_parent=fin(np.log(d.s_parent)), log_s_child=fin(np.log(d.s_child)), child_step=d.child_step.tolist(),
        orig_positions=c.positions.astype(float).ravel().tolist(), orig_log_scales=c.log_scales.astype(float).ravel().tolist(),
        orig_opacity=c.opacities().astype(float).tolist(), orig_rgb=np.clip(c.rgb(), 0, 1).astype(float).ravel().tolist(),
        orig_rotations=q.astype(float).ravel().tolist(), orig_log_s_native=np.log(c.s_native.astype(float)).tolist(),
        orig_log_s_parent=fin(np.log(np.asarray(sp, float))), orig_log_s_child=fin(np.log(np.asarray(sc, float))),
        orig_child_step=np.asarray(st).tolist()))
c = random_chunk(rng, 3000)
c = type(c)(c.origin, c.positions, c.rotations, c.log_scales, c.opacity_logits, c.sh_dc,
            np.exp(rng.normal(-6.0, 0.05, 3000)).astype(np.float32), c.level)  # one level's depths
sp = c.s_native * 4.0 * np.exp(rng.uniform(-0.05, 0.05, 3000)); sp[::9] = np.inf
sc = np.where(rng.random(3000) < 0.4, c.s_native / 4.0 * np.exp(rng.uniform(-0.05, 0.05, 3000)), 0.0)
case('random', c, sp, sc, rng.integers(1, 4, 3000))
(_, l0), (_, l1) = nested_plane_world(levels=2, size=48)
case('level', l1, l1.s_native * 4.0, np.where(np.arange(len(l1)) % 3 == 0, l1.s_native / 4.0, 0.0), np.full(len(l1), 2))
one = random_chunk(rng, 1)
case('one', one, np.array([np.inf]), np.array([0.0]), np.array([0]))
print(json.dumps(out))
`);

function buffer(path) {
  const b = readFileSync(path);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

const f32 = (x) => Math.fround(x);
const closeF32 = (got, want, what) => {
  // the decoder's GPU arrays are float32: allow its rounding
  assert.ok(Math.abs(got - f32(want)) <= 1e-6 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
};

for (const c of fx) {
  test(`${c.name}: the viewer decodes what the Python decoder decodes`, () => {
    const d = decodeChunk(buffer(c.path), c.n);
    assert.equal(d.count, c.n);
    for (let i = 0; i < c.n; i++) {
      for (let k = 0; k < 3; k++) {
        closeF32(d.main[16 * i + k], c.positions[3 * i + k], `position ${i}`);
        closeF32(d.main[16 * i + 12 + k], c.rgb[3 * i + k], `rgb ${i}`);
      }
      closeF32(d.main[16 * i + 15], c.opacity[i], `opacity ${i}`);
      assert.ok(Math.abs(d.cull.n[i] - c.log_s_native[i]) < 1e-12);
      assert.equal(d.cull.b[i], c.log_s_parent[i] === null ? Infinity : d.cull.b[i]);
      if (c.log_s_parent[i] !== null) assert.ok(Math.abs(d.cull.b[i] - c.log_s_parent[i]) < 1e-12);
      if (c.log_s_child[i] === null) assert.equal(d.cull.a[i], -Infinity);
      else {
        assert.ok(Math.abs(d.cull.a[i] - c.log_s_child[i]) < 1e-12);
        assert.equal(d.cull.childStep[i], c.child_step[i]);
      }
    }
  });

  test(`${c.name}: round trip within the stated error bounds`, () => {
    const d = decodeChunk(buffer(c.path), c.n);
    const e = c.errors;
    const tol = (bound, scale = 1) => bound * (1 + 1e-6) + 2e-7 * scale; // float32 storage
    for (let i = 0; i < c.n; i++) {
      for (let k = 0; k < 3; k++) {
        const p = c.orig_positions[3 * i + k];
        assert.ok(Math.abs(d.main[16 * i + k] - p) <= tol(e.position, Math.abs(p)), `position ${i}`);
        assert.ok(Math.abs(d.main[16 * i + 12 + k] - c.orig_rgb[3 * i + k]) <= tol(e.colour), `colour ${i}`);
        // columns of R diag(scale): their lengths are the scales
        const col = [0, 1, 2].map((r) => d.main[16 * i + 3 + 3 * k + r]);
        const logScale = Math.log(Math.hypot(...col));
        assert.ok(Math.abs(logScale - c.orig_log_scales[3 * i + k]) <= tol(e.log_scale) + 1e-6, `scale ${i}`);
      }
      assert.ok(Math.abs(d.main[16 * i + 15] - c.orig_opacity[i]) <= tol(e.opacity), `opacity ${i}`);
      // quaternion (up to sign): every component within the stated bound, then renormalised
      const q = c.rotations.slice(4 * i, 4 * i + 4), o = c.orig_rotations.slice(4 * i, 4 * i + 4);
      const sign = q.reduce((s, v, k) => s + v * o[k], 0) < 0 ? -1 : 1;
      const worst = Math.max(...q.map((v, k) => Math.abs(sign * v - o[k])));
      assert.ok(worst <= 2 * e.rotation_component + 1e-9, `rotation ${i}: ${worst}`);
      assert.ok(Math.abs(d.cull.n[i] - c.orig_log_s_native[i]) <= tol(e.log_lod_scale), `s_native ${i}`);
      if (c.orig_log_s_parent[i] !== null && c.orig_log_s_parent[i] > c.orig_log_s_native[i]) {
        assert.ok(Math.abs(d.cull.b[i] - c.orig_log_s_parent[i]) <= 2 * e.log_lod_scale + 1e-9, `s_parent ${i}`);
      } else assert.equal(d.cull.b[i], Infinity);
      if (c.orig_log_s_child[i] !== null && c.orig_log_s_child[i] < c.orig_log_s_native[i]) {
        assert.ok(Math.abs(d.cull.a[i] - c.orig_log_s_child[i]) <= 2 * e.log_lod_scale + 1e-9, `s_child ${i}`);
        assert.equal(d.cull.childStep[i], c.orig_child_step[i]);
      } else assert.equal(d.cull.a[i], -Infinity);
    }
  });
}

test('a parent level and its child keep equal scales after quantization (partition of unity)', () => {
  const level = fx.find((c) => c.name === 'level');
  const d = decodeChunk(buffer(level.path), level.n);
  for (let i = 0; i < level.n; i++) {
    // this level's parent is 4x coarser and its child 4x finer: both exactly log 4 away
    assert.equal(d.cull.b[i] - d.cull.n[i], level.log_s_parent[i] - level.log_s_native[i]);
  }
});

test('malformed chunk files are refused', () => {
  const good = buffer(fx[0].path);
  const n = fx[0].n;
  const bad = [];
  bad.push(['truncated', good.slice(0, good.byteLength - 1), n]);
  bad.push(['extra bytes', (() => { const b = new Uint8Array(good.byteLength + 16); b.set(new Uint8Array(good)); return b.buffer; })(), n]);
  bad.push(['count differs from the manifest', good, n + 1]);
  const magic = good.slice(0); new Uint8Array(magic)[0] = 0; bad.push(['bad magic', magic, n]);
  const nan = good.slice(0); new DataView(nan).setFloat64(48, NaN, true); bad.push(['NaN constant', nan, n]);
  const inf = good.slice(0); new DataView(inf).setFloat64(56, Infinity, true); bad.push(['infinite constant', inf, n]);
  const wide = good.slice(0); new DataView(wide).setUint8(9, 40); bad.push(['field wider than 16 bits', wide, n]);
  const past = good.slice(0); new DataView(past).setUint8(8, 120); new DataView(past).setUint8(9, 16); bad.push(['field past the record', past, n]);
  const huge = new ArrayBuffer(HEADER_BYTES); new DataView(huge).setUint32(0, 0x31575a57, true);
  new DataView(huge).setUint32(4, 0xffffffff, true); bad.push(['absurd count', huge, 0xffffffff]);
  bad.push(['not binary', 'WZW1', n]);
  const stride = new DataView(good).getUint8(44);
  const other = good.slice(0); new DataView(other).setUint8(44, 31 - stride); bad.push(['record size that the length does not match', other, n]);
  const odd = good.slice(0); new DataView(odd).setUint8(44, 8); bad.push(['record size neither 15 nor 16', odd, n]);
  for (const [what, data, count] of bad) {
    assert.throws(() => decodeChunk(data, count), ChunkFileError, what);
  }
  assert.ok(RECORD_SIZES.includes(stride));
  assert.equal(HEADER_BYTES + stride * n, good.byteLength);
});

test('both record sizes occur and decode: 15 bytes where the fields fit, else 16', () => {
  const sizes = fx.map((f) => new DataView(buffer(f.path)).getUint8(44));
  assert.ok(sizes.includes(15) && sizes.includes(16), `record sizes ${sizes}`);
});
