// Drive the viewer in the system's headless Chromium (puppeteer-core; nothing downloads a
// browser) for tests and benchmarks: `node drive.mjs JOB.json` prints one JSON result.
//
// JOB: {"width", "height", "out": folder for saved frames, "timeout_ms",
//       "pages": [{"url", "init": script run before the page's own, "ops": [...]}, ...]}, each
//       page opened in turn in one browser; ops:
//              [{"op": "ready"} | {"op": "render", "camera", "step", "save"} |
//               {"op": "time", "camera", "frames", "step"} | {"op": "sweep_cameras", "frames", "width", "height"} |
//               {"op": "first_frame"} | {"op": "message"} | {"op": "click", "selector"} |
//               {"op": "wait", "expr"} | {"op": "screenshot", "save"} | {"op": "eval", "expr"} |
//               {"op": "wheel", "x", "y", "deltaY"} | {"op": "drag", "from", "to"} |
//               {"op": "key", "key", "ms"}]}
// Result: {"pages": [{"url", "results": [...], "console": [...], "errors": [...],
//                      "requests": [...], "failed": [...]}, ...]}
// Chromium: $WONDERZOOM_CHROMIUM or /usr/bin/chromium, WebGL2 through ANGLE on the system's
// GL (Mesa llvmpipe on machines without a GPU: ~10x faster than SwiftShader).
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const puppeteer = require('puppeteer-core');

export const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--use-angle=gl-egl', '--use-gl=angle', '--ignore-gpu-blocklist',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--disable-quic', '--disable-default-apps', '--disable-extensions', '--mute-audio',
  '--disable-features=Translate,MediaRouter,OptimizationHints',
];

export async function launch(width = 800, height = 600) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'wz-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.WONDERZOOM_CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, `--user-data-dir=${userDataDir}`, `--window-size=${width},${height}`],
    defaultViewport: { width, height, deviceScaleFactor: 1 },
    protocolTimeout: 600000,
  });
  const close = async () => {
    await browser.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { browser, close };
}

async function run(job) {
  const { browser, close } = await launch(job.width || 800, job.height || 600);
  const timeout = job.timeout_ms || 120000;
  const pages = [];
  try {
    for (const spec of job.pages || [{ url: job.url, ops: job.ops }]) {
      const out = { url: spec.url, results: [], console: [], errors: [], requests: [], failed: [] };
      pages.push(out);
      const page = await browser.newPage();
      page.setDefaultTimeout(timeout);
      page.on('console', (m) => out.console.push({ type: m.type(), text: m.text() }));
      page.on('pageerror', (e) => out.errors.push(String(e && e.message ? e.message : e)));
      page.on('request', (r) => out.requests.push(r.url()));
      page.on('requestfailed', (r) => out.failed.push({ url: r.url(), error: r.failure() && r.failure().errorText }));
      page.on('response', (r) => { if (r.status() >= 400) out.failed.push({ url: r.url(), status: r.status() }); });
      try {
        if (spec.init) await page.evaluateOnNewDocument(spec.init); // e.g. a browser without WebGL2
        const t0 = Date.now();
        await page.goto(spec.url, { waitUntil: 'load' });
        out.load_ms = Date.now() - t0;
        for (const op of spec.ops || []) out.results.push(await step(page, op, job, timeout));
      } catch (e) {
        out.errors.push(`driver: ${e.message}`);
      }
      await page.close();
    }
  } finally {
    await close();
  }
  return { pages };
}

async function step(page, op, job, timeout) {
  switch (op.op) {
    case 'ready':
      return page.evaluate(async () => {
        for (let i = 0; i < 1000 && !window.wonderzoom; i++) await new Promise((r) => setTimeout(r, 10));
        try { return await window.wonderzoom.ready; } catch (e) { return { error: e.message }; }
      });
    case 'render': {
      const r = await page.evaluate((cam, s) => window.wonderzoom.render(cam, s ?? undefined), op.camera, op.step ?? null);
      if (op.save) writeFileSync(join(job.out, op.save), Buffer.from(r.pixels, 'base64'));
      return { width: r.width, height: r.height, drawn: r.drawn, big: r.big, saved: op.save || null };
    }
    case 'time':
      return page.evaluate((cam, n, s) => window.wonderzoom.time(cam, n, s ?? undefined), op.camera, op.frames || 5, op.step ?? null);
    case 'sweep_cameras':
      return page.evaluate((n, w, h) => window.wonderzoom.sweepCameras(n, w, h), op.frames, op.width, op.height);
    case 'first_frame':
      await page.waitForFunction(() => window.__frameDone >= 1 || window.__wzError, { timeout, polling: 50 });
      return page.evaluate(() => ({ firstFrameMs: window.__firstFrameMs ?? null, error: window.__wzError,
        nav: performance.getEntriesByType('navigation')[0]?.startTime ?? 0 }));
    case 'message':
      return page.evaluate(() => {
        const m = document.getElementById('message');
        return m && !m.hidden ? m.textContent : null;
      });
    case 'click':
      await page.click(op.selector);
      return true;
    case 'wait':
      await page.waitForFunction(op.expr, { timeout, polling: 50 });
      return true;
    case 'eval':
      return page.evaluate(op.expr);
    case 'screenshot':
      await page.screenshot({ path: join(job.out, op.save) });
      return op.save;
    case 'wheel':
      await page.mouse.move(op.x, op.y);
      await page.mouse.wheel({ deltaY: op.deltaY });
      return true;
    case 'drag':
      await page.mouse.move(op.from[0], op.from[1]);
      await page.mouse.down();
      await page.mouse.move(op.to[0], op.to[1], { steps: 5 });
      await page.mouse.up();
      return true;
    case 'key':
      await page.keyboard.down(op.key);
      await new Promise((r) => setTimeout(r, op.ms || 200)); // holding a key is a duration, not a wait for work
      await page.keyboard.up(op.key);
      return true;
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

if (process.argv[1] && process.argv[1].endsWith('drive.mjs')) {
  const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  run(job).then((out) => { process.stdout.write(JSON.stringify(out)); });
}
