// The page: manifest -> streaming -> worker sort -> WebGL2 draw, with fly & zoom controls,
// a timeline of the world's steps and a zoom sweep down the deepest zoom chain.
//
// A frame (interactive loop, one requestAnimationFrame each):
//   input -> camera -> visible chunks (AABB in the frustum and the chunk's LoD band at the
//   timeline step overlapping the s_render range it can take in view) -> fetch what is
//   missing (a few at a time, into free arena pages; least recently used chunks out of view
//   are evicted when the budget is full) -> ask the worker for a new sorted list when the
//   camera, step or resident set changed -> draw the latest list with the current camera.
// A frame is complete when its list was built for exactly this camera, step and chunk set and
// every visible chunk is resident: then `window.__frameDone` counts it (tests and benchmarks
// wait on that, never on a number of frames).
// Scripted frames (`window.wonderzoom.render`, `.time`) bypass the loop: load what the camera
// needs, sort, draw, read back.
import { Camera, FlyController, sweepCamera, zoomSweep } from './camera.js';
import { checkManifest, bandAt, LIMITS } from './manifest.js';
import { Renderer, NoWebGL2Error, PAGE_SPLATS } from './renderer.js';
import { Controls } from './controls.js';
import { chunkPossiblyVisible } from './modulation.js';

const params = new URLSearchParams(location.search);
const BUDGET_SPLATS = Math.min(Math.max(Number(params.get('budget')) || 4_000_000, 65536), 16_000_000);
const MAX_INFLIGHT = 6;
const PARTIAL_SORT_MS = 400; // while chunks stream in, show progress this often
const SWEEP_SECONDS = Math.min(Math.max(Number(params.get('sweepSeconds')) || 8, 0.5), 120);
const PLAY_SECONDS_PER_STEP = 2.5;
const FOCUS_CELLS_X = 32, FOCUS_CELLS_Y = 18;
const MAX_PIXEL_RATIO = 2;

const $ = (id) => document.getElementById(id);
window.__frameDone = 0;
window.__wzError = null;

function showMessage(text, kind = 'error') {
  const box = $('message');
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  if (kind === 'error') window.__wzError = text;
}

function cameraKey(c, step) {
  return [...c.R, ...c.eye, c.fx, c.fy, c.cx, c.cy, c.width, c.height, c.near, c.far, step].join(',');
}

class Viewer {
  constructor(manifest, renderer) {
    this.m = manifest;
    this.renderer = renderer;
    this.step = manifest.steps.length - 1;
    this.chunks = manifest.chunks.map((c) => ({ ...c, state: 'idle', pages: null, lastUsed: 0 }));
    const pagesNeeded = this.chunks.reduce((s, c) => s + Math.ceil(c.count / PAGE_SPLATS), 0);
    const budgetPages = Math.ceil(BUDGET_SPLATS / PAGE_SPLATS);
    const maxChunkPages = Math.max(...this.chunks.map((c) => Math.ceil(c.count / PAGE_SPLATS)));
    renderer.allocate(Math.max(Math.min(pagesNeeded, budgetPages), maxChunkPages));
    this.freePages = [];
    for (let p = renderer.capacityPages - 1; p >= 0; p--) this.freePages.push(p);
    this.inflight = 0;
    this.loadWaiters = []; // resolved whenever a load ends
    this.worker = new Worker(new URL('./sort-worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = (e) => this.onWorker(e.data);
    this.worker.onerror = (e) => showMessage(`the viewer's worker failed: ${e.message || 'unknown error'}`);
    this.sortSeq = 0;
    this.sortWaiters = new Map();
    this.listKey = null;
    this.sortPending = null; // key of the sort in flight
    this.tick = 0;
    this.focus = null;
    this.frameDone = 0;
    this.firstCompleteMs = null;
    this.lastDrawKey = null;
    this.drawn = 0;
    this.scripted = false;
    this.sweep = null; // {t0, cameras fn}
    this.play = null;
    this.fps = 0;
  }

  // ---- which chunks a camera needs --------------------------------------------------------
  visible(camera, step) {
    const out = [];
    const focal = camera.focal;
    for (const c of this.chunks) {
      if (c.level > step || c.state === 'failed') continue;
      const band = bandAt(c, step);
      if (!band) continue;
      const { zmin, zmax, inFrustum } = camera.aabbView(c.lo, c.hi);
      if (!inFrustum) continue;
      const lo = Math.max(zmin, camera.near) / focal, hi = Math.min(zmax, camera.far) / focal;
      if (chunkPossiblyVisible(lo, hi, band.lo, band.hi)) out.push(c);
    }
    return out;
  }

  // ---- streaming --------------------------------------------------------------------------
  request(c, wanted) {
    if (c.state !== 'idle' || this.inflight >= MAX_INFLIGHT) return;
    const need = Math.ceil(c.count / PAGE_SPLATS);
    if (this.freePages.length < need) this.evict(need, wanted);
    if (this.freePages.length < need) {
      if (!this.budgetWarned) showMessage('this view needs more splats than the memory budget allows (add ?budget=N to the address)', 'note');
      this.budgetWarned = true;
      return;
    }
    c.pages = this.freePages.splice(this.freePages.length - need, need);
    c.state = 'loading';
    this.inflight++;
    this.worker.postMessage({ type: 'load', id: c.index, url: c.url, count: c.count, pages: c.pages, origin: c.origin });
  }

  evict(need, wanted) {
    const keep = new Set(wanted);
    const candidates = this.chunks.filter((c) => c.state === 'ready' && !keep.has(c)).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const c of candidates) {
      if (this.freePages.length >= need) break;
      this.worker.postMessage({ type: 'drop', id: c.index });
      this.freePages.push(...c.pages);
      c.pages = null;
      c.state = 'idle';
      this.listKey = null; // the current list may name its rows
    }
  }

  onWorker(msg) {
    if (msg.type === 'loaded' || msg.type === 'failed') {
      this.loadWaiters.splice(0).forEach((w) => w());
      // keep the fetch slots busy without waiting for the next frame
      if (!this.scripted && this.wanted) queueMicrotask(() => { for (const c of this.wanted) this.request(c, this.wanted); });
    }
    if (msg.type === 'loaded') {
      const c = this.chunks[msg.id];
      this.inflight--;
      this.renderer.upload(c.pages, msg.main, msg.lod);
      c.state = 'ready';
    } else if (msg.type === 'failed') {
      const c = this.chunks[msg.id];
      this.inflight--;
      c.state = 'failed';
      this.freePages.push(...c.pages);
      c.pages = null;
      showMessage(`part of this world could not be loaded (${c.file}: ${msg.message})`);
    } else if (msg.type === 'sorted') {
      const waiter = this.sortWaiters.get(msg.seq);
      this.sortWaiters.delete(msg.seq);
      if (waiter) waiter(msg);
    }
  }

  // resolves when every chunk of `list` is resident (rejects if one fails or cannot fit)
  async ensure(list) {
    for (;;) {
      const missing = list.filter((c) => c.state !== 'ready');
      const failed = missing.find((c) => c.state === 'failed');
      if (failed) throw new Error(`${failed.file} could not be loaded`);
      if (!missing.length) return;
      for (const c of missing) this.request(c, list);
      // wait for any load to end (ours, or the interactive loop's holding the fetch slots)
      if (this.inflight === 0) throw new Error('this view needs more splats than the memory budget allows');
      await new Promise((resolve) => this.loadWaiters.push(resolve));
    }
  }

  sort(camera, step, list) {
    const seq = ++this.sortSeq;
    const ready = list.filter((c) => c.state === 'ready');
    for (const c of ready) c.lastUsed = this.tick;
    return new Promise((resolve) => {
      this.sortWaiters.set(seq, resolve);
      this.worker.postMessage({
        type: 'sort', seq, step, chunks: ready.map((c) => c.index), maxPointPx: this.renderer.maxPointSize,
        camera: { R: camera.R, eye: camera.eye, fx: camera.fx, fy: camera.fy, cx: camera.cx, cy: camera.cy,
          width: camera.width, height: camera.height, near: camera.near, far: camera.far },
      });
    });
  }

  residentChunks() {
    return this.chunks.filter((c) => c.state === 'ready');
  }

  // ---- the interactive loop -----------------------------------------------------------------
  resize() {
    const canvas = this.renderer.canvas;
    const ratio = Math.min(window.devicePixelRatio || 1, MAX_PIXEL_RATIO);
    const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
      this.lastDrawKey = null;
    }
    if (this.controller) this.controller.resize(w, h);
  }

  startCamera() {
    const canvas = this.renderer.canvas;
    return this.m.start.withImageSize(canvas.width, canvas.height);
  }

  stepCamera(k) {
    const cam = this.m.steps[k].camera || this.m.start;
    return cam.withImageSize(this.renderer.canvas.width, this.renderer.canvas.height);
  }

  flyTo(camera) {
    const focus = Math.hypot(...camera.eye.map((v, i) => v - this.m.sweep.target[i]));
    this.controller = new FlyController(camera, focus);
    this.lastDrawKey = null;
  }

  currentCamera(now) {
    if (this.sweep) {
      const u = Math.min(1, (now - this.sweep.t0) / (SWEEP_SECONDS * 1000));
      const cam = sweepCamera(this.sweep.start, this.m.sweep.target, this.m.sweep.sEnd, u);
      if (u >= 1) {
        this.sweep = null;
        this.flyTo(cam);
        window.__sweepDone = (window.__sweepDone || 0) + 1;
        $('sweep').textContent = 'Zoom sweep';
      }
      return cam;
    }
    return this.controller.camera;
  }

  frame(now) {
    this.tick++;
    const dt = this.lastNow ? Math.min(0.1, (now - this.lastNow) / 1000) : 0;
    this.lastNow = now;
    if (this.scripted) return;
    this.resize();
    const input = this.controls.poll(dt);
    if (this.controls.touched && (this.sweep || this.play)) this.stopAnimations();
    this.controls.touched = false;
    if (this.play && now - this.play.t >= PLAY_SECONDS_PER_STEP * 1000) {
      if (this.step + 1 < this.m.steps.length) this.selectStep(this.step + 1, true);
      else this.stopAnimations();
      if (this.play) this.play.t = now;
    }
    if (!this.sweep && (input.zoomSteps || input.zoomRate)) this.setFocusAt(input.anchor);
    else if (!this.sweep && this.tick % 10 === 0) this.setFocusAt(null);
    if (!this.sweep) this.controller.update(input, dt);
    const camera = this.currentCamera(now);
    const visible = this.visible(camera, this.step);
    this.wanted = visible;
    for (const c of visible) this.request(c, visible);
    const ready = visible.filter((c) => c.state === 'ready');
    const key = `${cameraKey(camera, this.step)}|${ready.map((c) => c.index).join(',')}`;
    // a partial set (chunks still loading) is sorted and drawn only now and then: every
    // draw of a big partial frame delays the complete one
    const partial = ready.length < visible.length;
    const due = !partial || now - (this.lastPartialSort || 0) >= PARTIAL_SORT_MS;
    if (key !== this.listKey && this.sortPending === null && due) {
      if (partial) this.lastPartialSort = now;
      this.sortPending = key;
      const t0 = performance.now();
      this.sort(camera, this.step, ready).then((msg) => {
        this.renderer.setList(msg.rows, msg.big);
        this.listKey = this.sortPending;
        this.sortPending = null;
        this.focus = msg.focus;
        this.drawn = msg.count;
        this.sortMs = performance.now() - t0;
        this.lastDrawKey = null;
      });
    }
    const complete = this.listKey === key && ready.length === visible.length;
    const drawKey = `${key}|${this.listKey}`;
    if (drawKey !== this.lastDrawKey) {
      this.renderer.draw(camera, this.step, this.residentChunks());
      this.lastDrawKey = drawKey;
      if (complete) {
        this.frameDone++;
        window.__frameDone = this.frameDone;
        if (this.firstCompleteMs === null) {
          this.firstCompleteMs = performance.now();
          window.__firstFrameMs = this.firstCompleteMs;
        }
      }
      this.fps = dt > 0 ? 0.9 * this.fps + 0.1 / dt : this.fps;
    }
    this.hud(camera, visible.length - ready.length);
  }

  // how much finer the pixel scale is than in the start view, at the point looked at (a
  // fixed point, so the figure does not change when the focus depth is re-measured)
  zoomFactor() {
    const cam = this.controller.camera;
    const point = cam.unproject(cam.cx, cam.cy, this.controller.focusDistance);
    const startScale = this.startCamera().pixelScale(point);
    const scale = this.controller.focusDistance / cam.focal;
    return startScale > 0 && scale > 0 ? startScale / scale : 1;
  }

  setFocusAt(anchor) {
    const grid = this.focus;
    if (!grid) return;
    const canvas = this.renderer.canvas;
    const [u, v] = anchor || [canvas.width / 2, canvas.height / 2];
    const gx = Math.min(FOCUS_CELLS_X - 1, Math.max(0, Math.floor((u / canvas.width) * FOCUS_CELLS_X)));
    const gy = Math.min(FOCUS_CELLS_Y - 1, Math.max(0, Math.floor((v / canvas.height) * FOCUS_CELLS_Y)));
    let best = Infinity, bestD = Infinity;
    for (let y = 0; y < FOCUS_CELLS_Y; y++) {
      for (let x = 0; x < FOCUS_CELLS_X; x++) {
        const z = grid[y * FOCUS_CELLS_X + x];
        const d = (x - gx) ** 2 + (y - gy) ** 2;
        if (Number.isFinite(z) && d < bestD) { bestD = d; best = z; }
      }
    }
    if (Number.isFinite(best)) this.controller.setFocus(best);
  }

  hud(camera, pending) {
    if (this.tick % 6 !== 0) return;
    const zoom = this.zoomFactor();
    const z = zoom >= 100 ? zoom.toExponential(1) : zoom.toFixed(zoom < 10 ? 2 : 1);
    $('stats').textContent = `×${z} · ${this.drawn.toLocaleString()} splats` +
      (pending ? ` · loading ${pending}` : '') + (this.fps ? ` · ${this.fps.toFixed(0)} fps` : '');
  }

  // ---- timeline and zoom sweep --------------------------------------------------------------
  selectStep(k, fly) {
    this.step = k;
    document.querySelectorAll('#timeline button.step').forEach((b, i) => b.classList.toggle('current', i === k));
    const s = this.m.steps[k];
    $('prompt').textContent = s.prompt ? `“${s.prompt}”` : (k === 0 ? 'the scene from the image' : s.kind);
    if (fly) this.flyTo(this.stepCamera(k));
    this.lastDrawKey = null;
  }

  stopAnimations() {
    if (this.sweep) {
      this.flyTo(this.currentCamera(performance.now()));
      this.sweep = null;
    }
    this.play = null;
    $('sweep').textContent = 'Zoom sweep';
    $('play').textContent = '▶';
  }

  startSweep() {
    if (this.sweep) { this.stopAnimations(); return; }
    this.play = null;
    this.selectStep(this.m.steps.length - 1, false);
    this.sweep = { t0: performance.now(), start: this.startCamera() };
    $('sweep').textContent = 'Stop';
  }

  togglePlay() {
    if (this.play) { this.stopAnimations(); return; }
    this.sweep = null;
    this.selectStep(0, true);
    this.play = { t: performance.now() };
    $('play').textContent = '■';
  }

  // ---- scripted frames (tests, benchmarks) --------------------------------------------------
  async renderOnce(camera, step) {
    const canvas = this.renderer.canvas;
    if (canvas.width !== camera.width || canvas.height !== camera.height) {
      canvas.width = camera.width;
      canvas.height = camera.height;
      canvas.style.width = `${camera.width / (window.devicePixelRatio || 1)}px`;
      canvas.style.height = `${camera.height / (window.devicePixelRatio || 1)}px`;
    }
    const visible = this.visible(camera, step);
    await this.ensure(visible);
    const t0 = performance.now();
    const msg = await this.sort(camera, step, visible);
    const t1 = performance.now();
    this.renderer.setList(msg.rows, msg.big);
    this.listKey = null;
    this.renderer.draw(camera, step, this.residentChunks());
    return { msg, sortMs: t1 - t0, t0 };
  }
}

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function buildUI(viewer) {
  const m = viewer.m;
  document.title = m.title ? `${m.title} · WonderZoom` : 'WonderZoom world';
  $('title').textContent = m.title || 'WonderZoom world';
  const timeline = $('timeline');
  m.steps.forEach((s, k) => {
    const b = document.createElement('button');
    b.className = 'step';
    b.textContent = String(k);
    b.title = s.prompt || (k === 0 ? 'the scene from the image' : s.kind);
    b.addEventListener('click', () => { viewer.stopAnimations(); viewer.selectStep(k, true); });
    timeline.appendChild(b);
  });
  $('play').addEventListener('click', () => viewer.togglePlay());
  $('sweep').addEventListener('click', () => viewer.startSweep());
  $('help-button').addEventListener('click', () => { $('help').hidden = !$('help').hidden; });
  viewer.selectStep(viewer.step, false);
}

async function main() {
  let viewer;
  try {
    const canvas = $('view');
    const renderer = new Renderer(canvas);
    const url = new URL('manifest.json', location.href);
    const response = await fetch(url, { redirect: 'error', credentials: 'same-origin' });
    if (!response.ok) throw new Error(`manifest.json: ${response.status} ${response.statusText}`.trim());
    const text = await response.text();
    if (text.length > LIMITS.manifestBytes) throw new Error('manifest.json is too large');
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error('manifest.json is not valid JSON');
    }
    const manifest = checkManifest(json, url.href);
    viewer = new Viewer(manifest, renderer);
    viewer.resize();
    viewer.flyTo(viewer.startCamera());
    viewer.controls = new Controls(canvas, () => Math.min(window.devicePixelRatio || 1, MAX_PIXEL_RATIO));
    buildUI(viewer);
    const loop = (now) => {
      try {
        viewer.frame(now);
      } catch (e) {
        showMessage(`the viewer stopped: ${e.message}`);
        return;
      }
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  } catch (e) {
    const text = e instanceof NoWebGL2Error ? e.message : `this world cannot be shown: ${e.message}`;
    showMessage(text);
    window.wonderzoom = { ready: Promise.reject(new Error(text)) };
    window.wonderzoom.ready.catch(() => {});
    return;
  }

  // hooks for tests and benchmarks (cameras as Camera.to_dict writes them)
  window.wonderzoom = {
    ready: Promise.resolve({
      splats: viewer.m.totalSplats, chunks: viewer.m.chunks.length, steps: viewer.m.steps.length,
      renderer: viewer.renderer.rendererName, maxPointSize: viewer.renderer.maxPointSize,
    }),
    // draw exactly this camera at this path step (default: the last) and read it back
    async render(cameraDict, step = viewer.m.steps.length - 1) {
      viewer.scripted = true;
      const camera = Camera.fromDict(cameraDict);
      const { msg } = await viewer.renderOnce(camera, step);
      const pixels = viewer.renderer.readPixels();
      viewer.frameDone++;
      window.__frameDone = viewer.frameDone;
      return { width: camera.width, height: camera.height, pixels: base64(pixels), drawn: msg.count, big: msg.bigCount };
    },
    // seconds per frame of `frames` frames of this camera, each sorted anew (the focal length
    // differs in the 9th digit, as bench/render.py does), GPU finished inside the frame
    async time(cameraDict, frames = 5, step = viewer.m.steps.length - 1) {
      viewer.scripted = true;
      const base = Camera.fromDict(cameraDict);
      await viewer.renderOnce(base, step);
      viewer.renderer.finish();
      const out = [];
      for (let i = 1; i <= frames; i++) {
        const f = 1 + 1e-9 * i;
        const cam = new Camera(base.R, base.eye, base.fx * f, base.fy * f, base.cx, base.cy, base.width, base.height, base.near, base.far);
        const { t0, msg, sortMs } = await viewer.renderOnce(cam, step);
        viewer.renderer.finish();
        out.push({ s: (performance.now() - t0) / 1000, sortMs, drawn: msg.count });
      }
      return out;
    },
    sweepCameras(frames, width, height) {
      const start = viewer.m.start.withImageSize(width, height);
      return zoomSweep(start, viewer.m.sweep.target, viewer.m.sweep.sEnd, frames).map((c) => c.toDict());
    },
    interactive() { viewer.scripted = false; viewer.lastDrawKey = null; viewer.resize(); },
    state() {
      return { step: viewer.step, frameDone: viewer.frameDone, firstCompleteMs: viewer.firstCompleteMs,
        drawn: viewer.drawn, sweeping: Boolean(viewer.sweep), camera: viewer.controller.camera.toDict(),
        zoom: viewer.zoomFactor() };
    },
  };
}

main();
