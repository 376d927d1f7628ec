// The viewer's modulation against engine/modulation.py, on the same cases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alpha, alphaLog, visibleBand, ALPHA_CULL } from '../viewer/modulation.js';
import { runPython } from './python.mjs';

const fixtures = runPython(`
import json, numpy as np
from engine.modulation import alpha, visible_band, ALPHA_CULL
rng = np.random.default_rng(7)
n = 4000
s_native = np.exp(rng.uniform(-12, 2, n))
s_parent = s_native * np.exp(rng.uniform(0.05, 3, n))
s_child = s_native * np.exp(-rng.uniform(0.05, 3, n))
s_parent[::7] = np.inf; s_child[::5] = 0.0
s_parent[::23] = s_native[::23] * 0.5   # links that point the wrong way
s_child[::29] = s_native[::29] * 2.0
s_render = s_native * np.exp(rng.uniform(-4, 4, n))
s_render[::31] = s_native[::31]; s_render[::37] = s_parent[::37]; s_render[::41] = s_child[::41]
a = alpha(s_render, s_native, s_parent, s_child)
lo, hi = visible_band(s_native, s_parent, s_child)
enc = lambda v: [None if not np.isfinite(x) else float(x) for x in v]
print(json.dumps(dict(cull=ALPHA_CULL, s_render=enc(s_render), s_native=enc(s_native), s_parent=enc(s_parent),
                      s_child=enc(s_child), alpha=enc(a), lo=enc(lo), hi=enc(hi))))
`);
const inf = (v) => (v === null ? Infinity : v);

test('the cull threshold is the engine one', () => {
  assert.equal(ALPHA_CULL, fixtures.cull);
});

test('alpha equals engine.modulation.alpha', () => {
  let worst = 0;
  fixtures.alpha.forEach((expected, i) => {
    const got = alpha(inf(fixtures.s_render[i]), fixtures.s_native[i], inf(fixtures.s_parent[i]), fixtures.s_child[i]);
    worst = Math.max(worst, Math.abs(got - expected));
  });
  assert.ok(worst <= 1e-12, `largest difference ${worst}`);
});

test('visible band equals engine.modulation.visible_band', () => {
  fixtures.lo.forEach((lo, i) => {
    const [l, h] = visibleBand(fixtures.s_native[i], inf(fixtures.s_parent[i]), fixtures.s_child[i]);
    assert.ok(Math.abs(l - lo) <= 1e-12 * Math.max(1, lo), `lo ${i}`);
    const hi = inf(fixtures.hi[i]);
    assert.ok(hi === Infinity ? h === Infinity : Math.abs(h - hi) <= 1e-12 * hi, `hi ${i}`);
  });
});

test('parent and child ramps sum to one on their shared band', () => {
  const sp = 1e-3, sc = 2.5e-4; // a parent and its child: s_child(p) = s_native(c)
  for (let k = 0; k <= 100; k++) {
    const x = Math.log(sc) + (k / 100) * (Math.log(sp) - Math.log(sc));
    const sum = alphaLog(x, Math.log(sp), Infinity, Math.log(sc)) + alphaLog(x, Math.log(sc), Math.log(sp), -Infinity);
    assert.ok(Math.abs(sum - 1) < 1e-12, `x=${x}: ${sum}`);
  }
});
