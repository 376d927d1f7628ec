"""The web viewer: a world exported as a static folder, drawn in any browser with WebGL2.

- `ui.web.export`: `export_web(history, chunks, folder, step)` writes index.html, the viewer,
  manifest.json and the quantized chunk files (`ui.web.chunkfile`: 15 bytes per splat).
- `ui.web.serve`: `make_server(folder, host, port)`, a read-only static server for one folder.
- `viewer/`: the page itself, plain ES modules copied as they are (no build step):
  `main.js` (streaming, timeline, zoom sweep), `renderer.js` (WebGL2 EWA splats with the
  scale-aware modulation, as `engine/render/points.glsl`), `sort-worker.js` (fetch, decode,
  cull and sort off the main thread), `camera.js`, `controls.js`, `modulation.js`,
  `chunkfile.js`, `manifest.js`.
- `tools/drive.mjs`: headless Chromium (puppeteer-core, system browser) for tests and
  `bench/web.py`; `test/`: the viewer's math under `node --test`.
Imports `engine` only; `saves` loads worlds, the command line wires the two.
"""
