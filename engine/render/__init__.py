"""The real-time splat renderer, its numpy oracle, and headless rendering.

- `engine.render.streaming`: `StreamingRenderer`, what the app draws every frame: visible
  chunk set, GPU residency under a byte budget, CPU cull + sort, one indexed point draw.
- `engine.render.visibility`: the CPU half of a frame (chunk- and splat-level culling,
  16-bit log-depth sort) for the streaming renderer.
- `engine.render.gpu_driven`: the streaming renderer's GPU path (cull, keys, compaction,
  sort and an indirect draw on the GPU; `gpu_cull.glsl`) and the choice of path;
  `engine.render.gpu_sort`: its stable radix sort (`radix_sort.glsl`).
- `engine.render.residency`: the GPU arena of resident chunks (pages, LRU, capped uploads).
- `engine.render.prepare`: CPU culling, camera-relative packing and back-to-front sorting
  into one instance array (the reference path, and the streaming renderer's quad path).
- `engine.render.reference`: the numpy rasterizer every GPU path is checked against.
- `engine.render.gl`: `SplatRenderer` (instanced quads, `splats.glsl`) and GL helpers.
- `engine.render.camera_path`, `engine.render.headless`: camera-path files, zoom sweeps and
  writing frames for `wonderzoom render`.

Import the submodules directly (`from engine.render.prepare import prepare`); this package
imports none of them, so the CPU parts load without moderngl.
Does not own: the frame loop, windows or input (`ui/`).
"""
