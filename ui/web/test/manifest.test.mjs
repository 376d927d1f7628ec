// manifest.json is hostile until checked: a real export passes; anything that names a file
// outside the world's folder, lies about sizes or holds non-finite numbers is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkManifest, chunkURL, bandAt, ManifestError } from '../viewer/manifest.js';
import { runPython } from './python.mjs';

const dir = mkdtempSync(join(tmpdir(), 'wz-manifest-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
runPython(`
import json
from engine.history import History, Step
from engine.synthetic import nested_plane_world
from ui.web.export import export_web
history, chunks = History(), {}
for i, (cam, level) in enumerate(nested_plane_world(levels=2, size=40)):
    chunks[i] = level
    history.add(Step(i, i - 1 if i else None, "zoom" if i else "image", (i,), camera=cam, prompt=f"p{i}"))
export_web(history, chunks, '${dir}/world', title='t')
print('{}')
`);
const text = readFileSync(join(dir, 'world/manifest.json'), 'utf8');
const BASE = 'https://example.org/worlds/w/manifest.json';
const fresh = () => JSON.parse(text);

test('an exported manifest passes, its chunk URLs stay in the folder', () => {
  const m = checkManifest(fresh(), BASE);
  assert.equal(m.steps.length, 2);
  assert.equal(m.steps[1].prompt, 'p1');
  assert.ok(m.chunks.length >= 2);
  for (const c of m.chunks) assert.ok(c.url.startsWith('https://example.org/worlds/w/chunks/'), c.url);
  assert.ok(bandAt(m.chunks[m.chunks.length - 1], 0) === null); // level 1 does not exist at step 0
  assert.ok(bandAt(m.chunks[0], 1) !== null);
});

test('file names outside the folder are refused', () => {
  for (const name of ['../secret.wzc', '/etc/passwd', 'https://evil.example/c00001.wzc', '//evil.example/c.wzc',
    'chunks/../../c00001.wzc', 'chunks/c00001.wzc?x=1', 'chunks/c00001.wzc#x', 'chunks\\c00001.wzc',
    'chunks/%2e%2e/c00001.wzc', 'javascript:alert(1)', 'data:,x', 'chunks/c1.wzc', 'chunks/c00001.bin', '', 42, null]) {
    const m = fresh();
    m.chunks[0].file = name;
    assert.throws(() => checkManifest(m, BASE), ManifestError, String(name));
    assert.throws(() => chunkURL(name, BASE), ManifestError, String(name));
  }
});

test('lies about sizes, non-finite numbers and wrong shapes are refused', () => {
  const cases = {
    'wrong format': (m) => { m.format = 'other'; },
    'future version': (m) => { m.version = 2; },
    'byte count': (m) => { m.chunks[0].bytes += 16; },
    'splat count': (m) => { m.chunks[0].count = 0; },
    'too many splats': (m) => { m.chunks[0].count = 1 << 20; },
    'infinite origin': (m) => { m.chunks[0].origin[0] = 1e999; },
    'string number': (m) => { m.chunks[0].lo[1] = '0'; },
    'inverted bounds': (m) => { m.chunks[0].lo[0] = m.chunks[0].hi[0] + 1; },
    'unknown level': (m) => { m.chunks[0].level = 7; },
    'band before level': (m) => { m.chunks[m.chunks.length - 1].bands[0][0] = 0; },
    'negative band': (m) => { m.chunks[0].bands[0][1] = -1; },
    'no steps': (m) => { m.steps = []; },
    'camera not rigid': (m) => { m.start.T_world_camera[0][0] = 2; },
    'camera NaN': (m) => { m.steps[0].camera.fx = 1e999; },
    'long prompt': (m) => { m.steps[0].prompt = 'x'.repeat(5000); },
    'sweep': (m) => { m.sweep.s_end = -1; },
    'duplicate file': (m) => { m.chunks[1].file = m.chunks[0].file; },
    'chunks not a list': (m) => { m.chunks = {}; },
    'not an object': () => 'nope',
  };
  for (const [what, mutate] of Object.entries(cases)) {
    const m = fresh();
    const replaced = mutate(m);
    assert.throws(() => checkManifest(replaced ?? m, BASE), ManifestError, what);
  }
});
