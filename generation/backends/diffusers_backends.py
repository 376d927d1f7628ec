"""diffusers backends: super-resolve, edit and auxiliary-view inpainting.

Owns three backends, each registered as `diffusers` in its stage's registry and built from a
pipeline folder or hub id (`generation.backends.hf.load`, offline):
- super_resolve: a text-conditioned latent upscaler (`StableDiffusionUpscalePipeline`, the SD
  x4 upscaler) prompted with the context caption, applied until the view reaches the new
  level's size (one pass for a 4x zoom), then resampled to the exact size; Chain-of-Zoom in the
  paper is this idea with a VLM-written prompt per step;
- edit: an image editor run on the super-resolved view, either instruct-pix2pix ("add {prompt}")
  or an inpainting pipeline over a disk around the picked point; the result is kept only inside
  that disk (so the rest of the view stays what the upscaler made and depth registration holds)
  and the structure's mask is where the editor changed the image;
- aux_views: the builtin warp of what exists into each orbiting camera, with the holes filled
  by an inpainting pipeline prompted with the caption (as LucidDreamer / WonderWorld do),
  instead of OpenCV.
Pipelines get sizes rounded to multiples of 8 (the VAE's factor) and the result is resampled
back. Does not own: the stage data types, the warp or the depth registration.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from generation.backends.hf import (DEVICE_OPTIONS, accepted_kwargs, from_pil_or_array, load,
                                    multiple_of, quiet_libraries, runtime_from, to_pil)
from generation.progress import diffusers_callbacks
from generation.imaging import blur, resize
from generation.stages import aux_views as aux_stage
from generation.stages import edit as edit_stage
from generation.stages import super_resolve as sr_stage

NEGATIVE = "blurry, lowres, jpeg artifacts, deformed"


def _pipeline(stage: str, model: str, options: dict[str, Any], cls_name: str | None = None):
    quiet_libraries()
    import diffusers

    runtime = runtime_from(options)
    cls = getattr(diffusers, cls_name) if cls_name else diffusers.DiffusionPipeline
    pipe = load(cls, model, stage, dtype=runtime.torch_dtype)
    return runtime.prepare_pipeline(pipe), runtime


def _call(pipe: Any, **kwargs: Any) -> np.ndarray:
    """Run a pipeline with the keyword arguments its __call__ accepts; [H, W, 3] in [0, 1]."""
    import warnings

    with warnings.catch_warnings():  # deprecation notices are for us, not for users
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        out = pipe(**accepted_kwargs(pipe.__call__, **kwargs))
    return from_pil_or_array(out.images[0])


def _resize_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    return np.clip(resize(rgb, width, height), 0.0, 1.0)


# ---- super-resolve ----------------------------------------------------------------------
@sr_stage.REGISTRY.register("diffusers")
class DiffusersUpscaler:
    OPTIONS = {"model": "stabilityai/stable-diffusion-x4-upscaler", "steps": 20,
               "guidance": 7.5, "noise_level": 20, "negative_prompt": NEGATIVE,
               "detail_strength": 0.0, **DEVICE_OPTIONS}
    MODEL_KEYS = ("model",)

    def __init__(self, **options: Any) -> None:
        self.opts = {**self.OPTIONS, **options}
        self.pipe, self.runtime = _pipeline("super_resolve", self.opts["model"], self.opts)
        self.name = f"diffusers:{self.opts['model']}"

    def upscale_once(self, rgb: np.ndarray, prompt: str, seed: int, start: float = 0.0,
                     span: float = 1.0) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = _resize_to(rgb, multiple_of(w, 8), multiple_of(h, 8))
        return _call(self.pipe, prompt=prompt, image=to_pil(x),
                     **diffusers_callbacks(start, span, int(self.opts["steps"])),
                     num_inference_steps=int(self.opts["steps"]),
                     guidance_scale=float(self.opts["guidance"]),
                     noise_level=int(self.opts["noise_level"]),
                     negative_prompt=self.opts["negative_prompt"] or None,
                     generator=self.runtime.generator(seed), output_type="np")

    def __call__(self, inp: sr_stage.SuperResolveInput) -> sr_stage.SuperResolveOutput:
        from generation.detail import synthesize_detail

        h, w = inp.low_rgb.shape[:2]
        if (w, h) == (inp.width, inp.height):
            return sr_stage.SuperResolveOutput(inp.low_rgb, inp.low_rgb, np.zeros((h, w)), "none")
        x = inp.low_rgb
        scale = max(inp.width / w, inp.height / h)
        total = max(1, min(4, int(np.ceil(np.log(scale * 0.9) / np.log(4.0) - 1e-9))))
        passes = 0
        while (x.shape[1] < 0.9 * inp.width or x.shape[0] < 0.9 * inp.height) and passes < 4:
            x = self.upscale_once(x, inp.prompt, inp.seed + passes, passes / total, 1 / total)
            passes += 1
        up = _resize_to(x, inp.width, inp.height)
        strength = float(self.opts["detail_strength"])
        if strength > 0:
            rgb, detail = synthesize_detail(up, inp.low_rgb, seed=inp.seed, strength=strength)
        else:
            rgb, detail = up, np.zeros(up.shape[:2])
        return sr_stage.SuperResolveOutput(rgb, up, detail, self.name)


# ---- edit -------------------------------------------------------------------------------
def disk(height: int, width: int, centre: tuple[float, float], radius: float,
         feather: float) -> np.ndarray:
    """[H, W] soft disk: 1 inside `radius` px of `centre`, falling to 0 over `feather` px."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    r = np.hypot(u - centre[0], v - centre[1])
    return np.clip((radius + feather - r) / max(feather, 1e-6), 0.0, 1.0)


def change_mask(before: np.ndarray, after: np.ndarray, region: np.ndarray,
                threshold: float) -> np.ndarray:
    """[H, W] in [0, 1]: where `after` differs from `before` by more than `threshold` (colour
    distance), smoothed, inside `region`."""
    diff = np.linalg.norm(after - before, axis=-1) / np.sqrt(3.0)
    soft = np.clip((blur(diff, 1.5) - 0.5 * threshold) / max(threshold, 1e-6), 0.0, 1.0)
    return soft * region


@edit_stage.REGISTRY.register("diffusers")
class DiffusersEditor:
    OPTIONS = {"model": "timbrooks/instruct-pix2pix", "pipeline": "auto", "steps": 20,
               "guidance": 7.5, "image_guidance": 1.5, "strength": 1.0,
               "instruction": "add {prompt}", "negative_prompt": NEGATIVE,
               "mask_radius": 0.3, "change_threshold": 0.1, **DEVICE_OPTIONS}
    MODEL_KEYS = ("model",)

    def __init__(self, **options: Any) -> None:
        self.opts = {**self.OPTIONS, **options}
        self.pipe, self.runtime = _pipeline("edit", self.opts["model"], self.opts)
        accepted = inspect.signature(self.pipe.__call__).parameters
        mode = self.opts["pipeline"]
        if mode == "auto":
            mode = "inpaint" if "mask_image" in accepted else "instruct"
        if mode not in ("inpaint", "instruct"):
            from generation.backends.hf import ModelUnavailable

            raise ModelUnavailable(f"stage edit: pipeline = {mode!r} (config key "
                                   "stages.edit.pipeline) must be auto, inpaint or instruct")
        self.mode = mode

    def __call__(self, inp: edit_stage.EditInput) -> edit_stage.EditOutput:
        H, W = inp.rgb.shape[:2]
        if not inp.prompt.strip():
            return edit_stage.EditOutput(inp.rgb, np.zeros((H, W)), np.zeros((H, W)), "")
        radius = float(self.opts["mask_radius"]) * min(H, W)
        region = disk(H, W, inp.centre, radius, max(2.0, 0.15 * radius))
        w8, h8 = multiple_of(W, 8), multiple_of(H, 8)
        image = to_pil(_resize_to(inp.rgb, w8, h8))
        common = dict(**diffusers_callbacks(0.0, 1.0, int(self.opts["steps"])),
                      num_inference_steps=int(self.opts["steps"]),
                      guidance_scale=float(self.opts["guidance"]),
                      negative_prompt=self.opts["negative_prompt"] or None,
                      generator=self.runtime.generator(inp.seed), output_type="np")
        if self.mode == "inpaint":
            mask = to_pil(_resize_to(np.repeat(region[..., None], 3, -1), w8, h8))
            out = _call(self.pipe, prompt=inp.prompt, image=image, mask_image=mask,
                        height=h8, width=w8, strength=float(self.opts["strength"]), **common)
        else:
            instruction = str(self.opts["instruction"]).replace("{prompt}", inp.prompt.strip())
            out = _call(self.pipe, prompt=instruction, image=image,
                        image_guidance_scale=float(self.opts["image_guidance"]), **common)
        out = _resize_to(out, W, H)
        edited = region[..., None] * out + (1 - region[..., None]) * inp.rgb
        mask = change_mask(inp.rgb, edited, region, float(self.opts["change_threshold"]))
        return edit_stage.EditOutput(np.clip(edited, 0, 1), mask, np.zeros((H, W)),
                                     f"{self.mode}: {inp.prompt.strip()[:60]}",
                                     tuple(inp.prompt.split()))


# ---- auxiliary views --------------------------------------------------------------------
@aux_stage.REGISTRY.register("diffusers")
class DiffusersWarpInpaint(aux_stage.WarpInpaint):
    """The builtin warp, with an inpainting pipeline filling what no camera saw."""

    OPTIONS = {"model": "stabilityai/stable-diffusion-2-inpainting", "steps": 20,
               "guidance": 7.5, "strength": 1.0, "negative_prompt": NEGATIVE,
               "min_hole_fraction": 0.002, **DEVICE_OPTIONS}
    MODEL_KEYS = ("model",)

    def __init__(self, **options: Any) -> None:
        self.opts = {**self.OPTIONS, **options}
        self.pipe, self.runtime = _pipeline("aux_views", self.opts["model"], self.opts)
        self.calls = 0
        self.views_done, self.views_total = 0, 1

    def __call__(self, inp: aux_stage.AuxViewsInput) -> aux_stage.AuxViewsOutput:
        self.views_done, self.views_total = 0, max(1, inp.count)
        return super().__call__(inp)

    def fill(self, inp: aux_stage.AuxViewsInput, cam, rgb: np.ndarray, unknown: np.ndarray
             ) -> np.ndarray:
        from generation.imaging import inpaint_rgb

        base = inpaint_rgb(rgb, unknown)  # a sensible start for the masked pixels
        if unknown.mean() < float(self.opts["min_hole_fraction"]):
            return base
        H, W = rgb.shape[:2]
        w8, h8 = multiple_of(W, 8), multiple_of(H, 8)
        grown = blur(unknown.astype(np.float64), 1.0) > 0.01
        mask = _resize_to(np.repeat(grown[..., None].astype(np.float64), 3, -1), w8, h8)
        self.calls += 1
        start, span = self.views_done / self.views_total, 1 / self.views_total
        self.views_done += 1
        out = _call(self.pipe, **diffusers_callbacks(start, span, int(self.opts["steps"])),
                    prompt=inp.caption or "a detailed photo", image=to_pil(
            _resize_to(base, w8, h8)), mask_image=to_pil(mask), height=h8, width=w8,
            strength=float(self.opts["strength"]), num_inference_steps=int(self.opts["steps"]),
            guidance_scale=float(self.opts["guidance"]),
            negative_prompt=self.opts["negative_prompt"] or None,
            generator=self.runtime.generator(self.calls), output_type="np")
        out = _resize_to(out, W, H)
        keep = grown[..., None]
        return np.where(keep, out, rgb)
