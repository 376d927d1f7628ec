"""Generation: the progressive detail synthesizer and its async service.

Owns, top to bottom:
- `config` (GenerationConfig: every knob, `from_settings` for untrusted settings),
- `registry` (backends by name per stage), `stages/` (one module per stage, frozen
  input/output dataclasses, the offline `builtin` backends),
- `pipeline` (scene E0 from an image: `run_new`; one zoom step: `run_zoom` / `zoom`),
- `service` (GenerationService: the worker process the app talks to), `cores` (how many
  cores it may use), `model_config` (the TOML model configuration),
- helpers the builtin backends use: `image_input`, `imaging`, `monodepth`, `realesrgan`,
  `detail`, `structures`; and the pieces built before: `raster` (differentiable rasterizer),
  `splat_opt` (pixel-aligned init + optimisation), `procedural` (a thread stand-in generator).
Does not own: the world model or building requests (`engine`, which it imports), windows,
the file format or the command line (`cli` writes the files `new` and `zoom` grow).
"""
