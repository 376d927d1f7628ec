"""The tiny offline models of tests/tiny_models.py load with their standard one-line
``from_pretrained(folder)`` and run the calls the generation code makes, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_models import NAMES, build_tiny_models, tiny_models  # noqa: F401, F811 (fixture)


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _mask(width: int, height: int) -> Image.Image:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 255
    return Image.fromarray(mask)


def test_all_folders_built_and_reused(tiny_models):
    assert set(tiny_models) == set(NAMES)
    for name, folder in tiny_models.items():
        assert folder.is_dir() and folder.name == name
    stamp = {n: (f / ".tiny_model_complete").stat().st_mtime_ns for n, f in tiny_models.items()}
    again = build_tiny_models(next(iter(tiny_models.values())).parent)
    assert again == tiny_models
    assert stamp == {n: (f / ".tiny_model_complete").stat().st_mtime_ns for n, f in again.items()}


def test_builds_are_deterministic(tiny_models, tmp_path):
    from safetensors.torch import load_file

    rebuilt = build_tiny_models(tmp_path, ["sam", "depth"])
    for name in ("sam", "depth"):
        a = load_file(tiny_models[name] / "model.safetensors")
        b = load_file(rebuilt[name] / "model.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_clip_tokenizer_is_the_real_one(tiny_models):
    from transformers import CLIPTokenizer

    folder = tiny_models["upscaler"] / "tokenizer"
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    assert len(tok) == 49408 and tok.model_max_length == 77
    # the ids openai/clip-vit-large-patch14 gives this prompt
    assert tok("a cat sitting").input_ids == [49406, 320, 2368, 4919, 49407]
    assert tok.decode(tok("a cat sitting").input_ids, skip_special_tokens=True) == "a cat sitting"


def _pipeline(class_name: str, folder):
    """A diffusers pipeline loaded offline from `folder`, without progress bars."""
    import diffusers

    pipe = getattr(diffusers, class_name).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_upscaler(tiny_models):
    pipe = _pipeline("StableDiffusionUpscalePipeline", tiny_models["upscaler"])
    out = pipe(
        prompt="a cat",
        image=_image(80, 48),
        num_inference_steps=2,
        noise_level=20,
        guidance_scale=1.5,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert out.shape == (1, 192, 320, 3)
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("size", [(320, 184), (64, 40)])
def test_instruct_pix2pix(tiny_models, size):
    pipe = _pipeline("StableDiffusionInstructPix2PixPipeline", tiny_models["instruct_pix2pix"])
    width, height = size
    out = pipe(
        prompt="make it snowy",
        image=_image(width, height),
        num_inference_steps=2,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        output_type="pil",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (width, height)


def test_inpaint(tiny_models):
    pipe = _pipeline("StableDiffusionInpaintPipeline", tiny_models["inpaint"])
    out = pipe(
        prompt="a stone wall",
        image=_image(320, 184),
        mask_image=_mask(320, 184),
        height=184,
        width=320,
        num_inference_steps=2,
        strength=1.0,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert out.shape == (1, 184, 320, 3)
    assert np.isfinite(out).all()


def test_depth_forward_and_finetune(tiny_models):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    folder = tiny_models["depth"]
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "DepthAnythingForDepthEstimation"
    image = _image(320, 180)
    inputs = processor(images=image, return_tensors="pt")
    pixel_values = inputs["pixel_values"]
    assert pixel_values.shape[-2] % 14 == 0 and pixel_values.shape[-1] % 14 == 0

    with torch.no_grad():
        outputs = model(**inputs)
    before = outputs.predicted_depth
    assert before.shape == (1, *pixel_values.shape[-2:])
    assert torch.isfinite(before).all() and (before > 0).all()
    assert before.std() > 0.05  # varies over the picture, not a constant map
    post = processor.post_process_depth_estimation(outputs, target_sizes=[(180, 320)])
    assert post[0]["predicted_depth"].shape == (180, 320)

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.rand_like(before)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        prediction = model(pixel_values=pixel_values).predicted_depth
        loss = torch.nn.functional.mse_loss(prediction, target)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        for part in ("backbone.", "neck.", "head."):  # gradients reach every part
            assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith(part)), part
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with torch.no_grad():
        after = model.eval()(**inputs).predicted_depth
    assert (after > 0).float().mean() > 0.9  # the ReLU head did not die


def test_captioner(tiny_models):
    from transformers import AutoProcessor, BlipForConditionalGeneration, BlipProcessor

    folder = tiny_models["captioner"]
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    assert isinstance(processor, BlipProcessor)
    assert isinstance(BlipProcessor.from_pretrained(folder, local_files_only=True), BlipProcessor)
    model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    inputs = processor(images=_image(320, 180), return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8)
    assert out.ndim == 2 and out.shape[1] <= 9
    caption = processor.decode(out[0], skip_special_tokens=True)
    assert isinstance(caption, str) and "[unused" not in caption


def test_sam(tiny_models):
    from transformers import SamModel, SamProcessor

    folder = tiny_models["sam"]
    processor = SamProcessor.from_pretrained(folder, local_files_only=True)
    model = SamModel.from_pretrained(folder, local_files_only=True)
    image = _image(320, 180)
    inputs = processor(images=image, input_points=[[[160, 90]]], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.pred_masks.shape[:3] == (1, 1, 3)
    assert outputs.iou_scores.shape == (1, 1, 3)
    masks = processor.image_processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    assert masks[0].shape == (1, 3, 180, 320) and masks[0].dtype == torch.bool
    masks = processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    assert masks[0].shape == (1, 3, 180, 320)


def test_grounding_dino(tiny_models):
    from transformers import (
        AutoModelForZeroShotObjectDetection,
        AutoProcessor,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
    )

    folder = tiny_models["grounding_dino"]
    processor = GroundingDinoProcessor.from_pretrained(folder, local_files_only=True)
    auto = AutoProcessor.from_pretrained(folder, local_files_only=True)
    assert isinstance(auto, GroundingDinoProcessor)
    model = GroundingDinoForObjectDetection.from_pretrained(folder, local_files_only=True)
    assert isinstance(
        AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True),
        GroundingDinoForObjectDetection,
    )
    image = _image(320, 180)
    inputs = processor(images=image, text="a ladybug.", return_tensors="pt")
    assert inputs["input_ids"][0].tolist()[0] == 101 and 1012 in inputs["input_ids"][0].tolist()
    with torch.no_grad():
        outputs = model(**inputs)
    results = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(180, 320)]
    )
    boxes = results[0]["boxes"]
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert len(results[0]["labels"]) == len(boxes)
    assert all(isinstance(label, str) for label in results[0]["text_labels"])
