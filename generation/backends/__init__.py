"""Model backends of the generation stages (diffusers and transformers), loaded lazily.

Owns: the backends that need model weights, each registered in its stage's registry under
`diffusers`, `transformers` or `hook`. Importing this package is cheap: torch, diffusers and
transformers are imported only when a backend is built, inside the worker.
- `hf`: where a model is (a local folder or the Hugging Face cache), loading it offline with a
  one-line error naming the model and its config key, the device / dtype policy;
- `diffusers_backends`: super-resolve (SD x4 upscaler), edit (instruct-pix2pix or inpainting),
  auxiliary views (warp + inpainting pipeline);
- `transformers_backends`: context (captioner), masks (SAM, optionally Grounding DINO), depth
  (Depth Anything / DPT, fine-tuned to the coarse depth);
- `hook`: auxiliary views from a user function (a camera-controlled video model).
Does not own: the stage data types or the maths shared with the builtin backends.
"""

from __future__ import annotations

BACKEND_MODULES = ("diffusers_backends", "transformers_backends", "hook")


def load() -> None:
    import importlib

    for name in BACKEND_MODULES:
        importlib.import_module(f"generation.backends.{name}")
