"""transformers backends: context (captioner), masks (SAM + Grounding DINO) and depth.

Owns three backends, each registered as `transformers` in its stage's registry:
- context: an image-to-text model (BLIP-style, `AutoModelForImageTextToText` + its processor)
  captions the observed view; the caption conditions the upscaler and the view inpainting;
- masks: SAM segments the inserted structure, prompted by the box Grounding DINO finds for the
  prompt near the picked point when `grounding_model` is set, else by the picked point itself;
  the mask SAM scores best among those that overlap the editor's own estimate wins (no overlap
  at all: the editor's estimate is kept). Grounded-SAM in the paper;
- depth: a depth network (Depth Anything / DPT via `AutoModelForDepthEstimation`) registered as
  the paper does: it is fine-tuned for a few Adam steps on the mask-weighted L1 between its
  output (under a closed-form scale and shift) and the rendered coarse depth, over pixels where
  the coarse world is opaque and nothing was inserted, then predicts; its weights are restored
  afterwards so every request starts from the same model. Relative-depth networks predict
  disparity (`output = "disparity"`), so the fit is done in inverse depth. With
  `finetune_steps = 0` only the scale and shift are fitted. Without coarse geometry (scene E0)
  the prediction is mapped to [1, depth_ratio] like the builtin layout prior.
Does not own: the stage data types or the final registration (generation.stages.depth).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generation.backends.hf import (DEVICE_OPTIONS, accepted_kwargs, load, quiet_libraries,
                                    runtime_from, to_pil)
from generation.progress import tick
from generation.imaging import robust_fit_scale_shift
from generation.stages import context as context_stage
from generation.stages import depth as depth_stage
from generation.stages import masks as masks_stage


# ---- context ----------------------------------------------------------------------------
@context_stage.REGISTRY.register("transformers")
class Captioner:
    OPTIONS = {"model": "Salesforce/blip-image-captioning-large", "max_new_tokens": 30,
               "text": "", **DEVICE_OPTIONS}
    MODEL_KEYS = ("model",)

    def __init__(self, **options: Any) -> None:
        quiet_libraries()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.opts = {**self.OPTIONS, **options}
        self.runtime = runtime_from(self.opts)
        model = self.opts["model"]
        self.processor = load(AutoProcessor, model, "context")
        self.net = load(AutoModelForImageTextToText, model, "context",
                        dtype=self.runtime.torch_dtype).to(self.runtime.torch_device).eval()

    def __call__(self, inp: context_stage.ContextInput) -> context_stage.ContextOutput:
        import torch

        kwargs = {"images": to_pil(inp.rgb), "return_tensors": "pt"}
        if self.opts["text"]:
            kwargs["text"] = self.opts["text"]
        batch = self.processor(**kwargs).to(self.runtime.torch_device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.runtime.torch_dtype)
        with torch.no_grad():
            ids = self.net.generate(**batch, max_new_tokens=int(self.opts["max_new_tokens"]),
                                    do_sample=False)
        text = self.processor.decode(ids[0], skip_special_tokens=True)
        text = " ".join(str(text).split())[:context_stage.MAX_CAPTION_CHARS]
        if not text:  # a model that says nothing: fall back to what the app knows
            return context_stage.REGISTRY.get("builtin")(inp)
        return context_stage.ContextOutput(text)


# ---- masks ------------------------------------------------------------------------------
def pick_box(boxes: np.ndarray, scores: np.ndarray, centre: tuple[float, float]
             ) -> np.ndarray | None:
    """The box (x0, y0, x1, y1) holding `centre` with the best score, else the one whose
    centre is nearest; None without boxes."""
    if len(boxes) == 0:
        return None
    cu, cv = centre
    inside = (boxes[:, 0] <= cu) & (cu <= boxes[:, 2]) & (boxes[:, 1] <= cv) & (cv <= boxes[:, 3])
    if inside.any():
        idx = np.flatnonzero(inside)
        return boxes[idx[np.argmax(scores[idx])]]
    mid = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    return boxes[int(np.argmin(np.hypot(mid[:, 0] - cu, mid[:, 1] - cv)))]


def choose_mask(masks: np.ndarray, scores: np.ndarray, hint: np.ndarray,
                min_overlap: float) -> int | None:
    """Index of the best-scored mask whose overlap with `hint` (intersection / the smaller of
    the two areas) is at least `min_overlap`; None if none does."""
    h = hint > 0.5
    best, best_score = None, -np.inf
    for i, m in enumerate(masks):
        area = min(int(m.sum()), int(h.sum()))
        if area == 0:
            continue
        overlap = float((m & h).sum()) / area
        if overlap >= min_overlap and scores[i] > best_score:
            best, best_score = i, float(scores[i])
    return best


@masks_stage.REGISTRY.register("transformers")
class GroundedSam:
    OPTIONS = {"model": "facebook/sam-vit-base", "grounding_model": "",
               "box_threshold": 0.3, "text_threshold": 0.25, "min_overlap": 0.2,
               **DEVICE_OPTIONS}
    MODEL_KEYS = ("model", "grounding_model")

    def __init__(self, **options: Any) -> None:
        quiet_libraries()
        from transformers import SamModel, SamProcessor

        self.opts = {**self.OPTIONS, **options}
        self.runtime = runtime_from(self.opts)
        dev = self.runtime.torch_device
        self.sam_processor = load(SamProcessor, self.opts["model"], "masks")
        self.sam = load(SamModel, self.opts["model"], "masks").to(dev).eval()
        self.dino = self.dino_processor = None
        if self.opts["grounding_model"]:
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            g = self.opts["grounding_model"]
            self.dino_processor = load(AutoProcessor, g, "masks", key="grounding_model")
            self.dino = load(AutoModelForZeroShotObjectDetection, g, "masks",
                             key="grounding_model").to(dev).eval()

    def detect(self, image, prompt: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        text = " ".join(prompt.lower().split()).rstrip(".") + "."
        batch = self.dino_processor(images=image, text=text, return_tensors="pt")
        batch = batch.to(self.runtime.torch_device)
        with torch.no_grad():
            out = self.dino(**batch)
        post = self.dino_processor.post_process_grounded_object_detection
        res = post(out, batch["input_ids"], target_sizes=[size],
                   **accepted_kwargs(post, threshold=float(self.opts["box_threshold"]),
                                 box_threshold=float(self.opts["box_threshold"]),
                                 text_threshold=float(self.opts["text_threshold"])))[0]
        return res["boxes"].cpu().numpy().reshape(-1, 4), res["scores"].cpu().numpy().reshape(-1)

    def __call__(self, inp: masks_stage.MasksInput) -> masks_stage.MasksOutput:
        import torch

        H, W = inp.rgb.shape[:2]
        image = to_pil(inp.rgb)
        box, source = None, "sam point"
        if self.dino is not None:
            boxes, scores = self.detect(image, inp.prompt, (H, W))
            box = pick_box(boxes, scores, inp.centre)
            if box is not None:
                source = "sam box (grounding dino)"
        if box is not None:
            batch = self.sam_processor(images=image, input_boxes=[[[float(x) for x in box]]],
                                       return_tensors="pt")
        else:
            batch = self.sam_processor(images=image, input_points=[[[list(inp.centre)]]],
                                       return_tensors="pt")
        batch = batch.to(self.runtime.torch_device)
        with torch.no_grad():
            out = self.sam(**batch, multimask_output=True)
        post = getattr(self.sam_processor, "post_process_masks", None) or \
            self.sam_processor.image_processor.post_process_masks
        masks = post(out.pred_masks.cpu(), batch["original_sizes"].cpu(),
                     batch["reshaped_input_sizes"].cpu())[0]
        masks = np.asarray(masks, bool).reshape(-1, H, W)
        scores = out.iou_scores.detach().cpu().float().numpy().reshape(-1)[:len(masks)]
        best = choose_mask(masks, scores, np.asarray(inp.hint), float(self.opts["min_overlap"]))
        if best is None:
            return masks_stage.MasksOutput(np.clip(inp.hint, 0, 1), "edit (sam found no overlap)")
        return masks_stage.MasksOutput(masks[best].astype(np.float64), source)


# ---- depth ------------------------------------------------------------------------------
def weighted_scale_shift(x, y, w):
    """Closed-form weighted least squares y ~ s x + t (torch tensors, differentiable in x)."""
    sw = w.sum().clamp_min(1e-12)
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    vx = (w * (x - mx) ** 2).sum() / sw
    cov = (w * (x - mx) * (y - my)).sum() / sw
    s = cov / vx.clamp_min(1e-12)
    return s, my - s * mx


@depth_stage.REGISTRY.register("transformers")
class NetworkDepth:
    OPTIONS = {"model": "depth-anything/Depth-Anything-V2-Small-hf", "output": "disparity",
               "finetune_steps": 5, "finetune_lr": 2e-5, **DEVICE_OPTIONS}
    MODEL_KEYS = ("model",)

    def __init__(self, **options: Any) -> None:
        quiet_libraries()
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.opts = {**self.OPTIONS, **options}
        if self.opts["output"] not in ("disparity", "depth"):
            from generation.backends.hf import ModelUnavailable

            raise ModelUnavailable("stage depth: output (config key stages.depth.output) must "
                                   "be \"disparity\" or \"depth\"")
        self.runtime = runtime_from(self.opts)
        model = self.opts["model"]
        self.processor = load(AutoImageProcessor, model, "depth")
        # float32 always: the fine-tuning steps are not stable in half precision
        self.net = load(AutoModelForDepthEstimation, model, "depth").to(
            self.runtime.torch_device).eval()
        self.finetuned_steps = 0  # of the last call (tests, the backend info)

    def raw(self, rgb: np.ndarray):
        """The network's output at the image's size, [H, W] torch (graph kept if enabled)."""
        import torch.nn.functional as F

        H, W = rgb.shape[:2]
        batch = self.processor(images=to_pil(rgb), return_tensors="pt")
        pv = batch["pixel_values"].to(self.runtime.torch_device)
        pred = self.net(pixel_values=pv).predicted_depth
        pred = pred.reshape(1, 1, *pred.shape[-2:]).float()
        return F.interpolate(pred, size=(H, W), mode="bilinear", align_corners=False)[0, 0]

    def __call__(self, inp: depth_stage.DepthInput) -> np.ndarray:
        import torch

        disparity = self.opts["output"] == "disparity"
        valid = depth_stage._valid(inp)
        if inp.coarse_weight is not None:
            valid &= np.asarray(inp.coarse_weight) >= 0.5
        if inp.edit_mask is not None:
            valid &= np.asarray(inp.edit_mask) < 0.05
        self.finetuned_steps = 0
        if valid.sum() < depth_stage.MIN_FIT_PIXELS:
            with torch.no_grad():
                raw = self.raw(inp.rgb).cpu().double().numpy()
            return self.layout(raw, inp.depth_ratio, disparity)
        coarse = np.where(valid, inp.coarse_depth, 1.0)
        target_np = 1.0 / coarse if disparity else coarse
        norm = float(np.median(target_np[valid]))
        dev = self.runtime.torch_device
        target = torch.as_tensor(target_np / norm, dtype=torch.float32, device=dev)
        weight = torch.as_tensor(valid.astype(np.float32), device=dev)
        steps = int(self.opts["finetune_steps"]) if inp.finetune else 0
        saved = None
        try:
            if steps > 0:
                saved = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                self.net.train()
                opt = torch.optim.Adam(self.net.parameters(), lr=float(self.opts["finetune_lr"]))
                for _ in range(steps):
                    opt.zero_grad(set_to_none=True)
                    x = self.raw(inp.rgb)
                    s, t = weighted_scale_shift(x, target, weight)
                    loss = (weight * (s * x + t - target).abs()).sum() / weight.sum()
                    loss.backward()
                    opt.step()
                    self.finetuned_steps += 1
                    tick(0.9 * self.finetuned_steps / steps)
                self.net.eval()
            with torch.no_grad():
                raw = self.raw(inp.rgb).cpu().double().numpy()
        finally:
            if saved is not None:
                self.net.load_state_dict(saved)
                self.net.eval()
        a, b = robust_fit_scale_shift(raw[valid], target_np[valid] / norm)
        fitted = (a * raw + b) * norm
        if not disparity:
            return fitted
        floor = 0.1 * float(np.min(target_np[valid]))  # at most 10x farther than anything seen
        return 1.0 / np.maximum(fitted, floor)

    @staticmethod
    def layout(raw: np.ndarray, depth_ratio: float, disparity: bool) -> np.ndarray:
        """A prediction with no geometry to fit: depth in [1, depth_ratio] (near to far)."""
        lo, hi = np.percentile(raw, [1, 99])
        n = np.clip((raw - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        if disparity:  # 1 = nearest
            inv = n * (1.0 - 1.0 / depth_ratio) + 1.0 / depth_ratio
            return 1.0 / inv
        return 1.0 + n * (depth_ratio - 1.0)
