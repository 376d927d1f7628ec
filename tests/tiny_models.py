"""Tiny, randomly initialised stand-ins for the real generation models, built offline.

``build_tiny_models(root)`` writes one ``save_pretrained`` folder per model under ``root`` and
returns ``{name: folder}``; each folder loads with the standard one-line ``from_pretrained(folder)``
of its class (no network: everything, tokenizers included, is built here). Weights are random but
seeded, so two builds give byte-identical folders. The transformers models are under 1 MB each;
the diffusers pipelines ~13 MB each, nearly all of it the full CLIP vocabulary (tokenizer files
and the 49408 x 32 token embedding). Every forward pass or 2-step pipeline call takes well under a
second on a CPU; the outputs are noise with the right shapes and types, never meaningful
pictures, depths, captions, masks or boxes.

The CLIP tokenizer is the real one (49408 tokens): its BPE table ships inside the
``open_clip_torch`` wheel (``open_clip/bpe_simple_vocab_16e6.txt.gz``; install that wheel with
``--no-deps``). The BERT tokenizers use a small hand-written vocabulary (~1250 tokens for
Grounding DINO, laid out like ``bert-base-uncased`` for its first ids because Grounding DINO
hard-codes [CLS]=101, [SEP]=102, "."=1012, "?"=1029; ~260 tokens for BLIP).

``tiny_models`` is a session-scoped pytest fixture: import it into a test module (or a conftest)
with ``from tests.tiny_models import tiny_models``.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

# Bump when a builder changes so stale folders from an older layout are rebuilt, not reused.
BUILD_VERSION = "5"
_MARKER = ".tiny_model_complete"

NAMES = ("upscaler", "instruct_pix2pix", "inpaint", "depth", "captioner", "sam", "grounding_dino")

# Text encoder / cross-attention width shared by the three diffusers pipelines.
_TEXT_DIM = 32


# --------------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clip_bpe_path() -> Path:
    """The CLIP BPE merges table shipped in the open_clip_torch wheel (found without importing
    open_clip, which would pull in optional dependencies)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "open_clip_torch is not installed; `pip install --no-deps open_clip_torch` provides "
            "the CLIP BPE vocabulary (open_clip/bpe_simple_vocab_16e6.txt.gz) that the tiny "
            "CLIP tokenizer is built from"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise RuntimeError(f"open_clip is installed but {path} is missing")
    return path


_CLIP_FILES: tuple[dict[str, int], list[str]] | None = None


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) exactly as OpenAI CLIP builds them: 256 byte symbols, the same with
    ``</w>``, 48894 merges, then <|startoftext|> and <|endoftext|> = 49408 tokens."""
    global _CLIP_FILES
    if _CLIP_FILES is None:
        lines = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")
        merges = lines[1 : 49152 - 256 - 2 + 1]
        symbols = list(_bytes_to_unicode().values())
        symbols += [s + "</w>" for s in symbols]
        symbols += ["".join(m.split()) for m in merges]
        symbols += ["<|startoftext|>", "<|endoftext|>"]
        vocab = {s: i for i, s in enumerate(symbols)}
        assert len(vocab) == 49408, len(vocab)
        _CLIP_FILES = (vocab, merges)
    return _CLIP_FILES


def build_clip_tokenizer():
    """A real (full-vocabulary) ``CLIPTokenizer``, built offline from open_clip's BPE table."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], model_max_length=77
    )


def _save_clip_tokenizer(tokenizer, folder: Path) -> None:
    tokenizer.save_pretrained(folder)
    # Also the classic slow-tokenizer files, so older transformers releases can load the folder.
    vocab, merges = _clip_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )


_WORDS = """
a an the of on in at to and with for from by is are was it this that his her its their some
two three one many small big large little old new red green blue yellow white black brown orange
pink purple gray dark bright cat cats dog dogs bird birds fish horse cow sheep bear elephant
lady ##bug ladybug bug insect flower flowers leaf leaves tree trees grass plant garden forest
field mountain mountains hill river lake sea ocean beach sand sky cloud clouds sun moon star
stars rock rocks stone water snow ice road street city town house houses building buildings
window door wall roof room table chair bed car bus train boat bike person man woman child
people boy girl face hand eye head hair picture photo photograph image painting drawing view
close up of sitting standing lying on top next near under over sleeping eating walking flying
park bench grass field ##s ##ing ##ed ##er ##ly ##y
""".split()


def _bert_vocab(bert_ids: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """A small uncased WordPiece vocabulary: the five BERT special tokens, the printable
    lower-case ASCII characters, ``##a``..``##z`` and ~200 English words, then ``extra``.

    With ``bert_ids`` the first 1067 ids follow bert-base-uncased exactly: [PAD]=0, [unused*],
    [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, [unused*], then the characters from id 999
    ("."=1012, "?"=1029), because Grounding DINO hard-codes [101, 102, 1012, 1029]. Without it
    the vocabulary is compact ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4) so that a random decoder
    can only emit real characters and words, never ``[unusedN]``."""
    if bert_ids:
        tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)]
        tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokens += [f"[unused{i}]" for i in range(99, 994)]
        assert len(tokens) == 999
    else:
        tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [chr(c) for c in range(ord("!"), ord("~") + 1) if not "A" <= chr(c) <= "Z"]
    if bert_ids:
        assert tokens[101] == "[CLS]" and tokens[102] == "[SEP]"
        assert tokens[1012] == "." and tokens[1029] == "?"
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    for word in _WORDS + list(extra):
        if word not in tokens:
            tokens.append(word)
    return tokens


def _bert_tokenizer(tokens: list[str], **kwargs):
    from transformers import BertTokenizer

    return BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True, **kwargs)


def _save_bert_tokenizer(tokenizer, tokens: list[str], folder: Path) -> None:
    tokenizer.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# diffusers pipelines
# --------------------------------------------------------------------------------------------


def _clip_text_encoder():
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=_TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=_TEXT_DIM,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(config).eval()


def _sd_vae(num_blocks: int):
    """AutoencoderKL whose decoder enlarges 2**(num_blocks-1) times (4 blocks: 8x like SD,
    3 blocks: 4x like the x4 upscaler)."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    channels = (8, 8, 16, 16)[:num_blocks]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks,
        block_out_channels=channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.08333 if num_blocks == 3 else 0.18215,
    ).eval()


def _sd_unet(in_channels: int, **extra):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=_TEXT_DIM,
        attention_head_dim=4,
        **extra,
    ).eval()


def _sd_parts(vae_blocks: int, unet_in_channels: int, **unet_extra) -> dict:
    """The components every SD pipeline here shares (each seeds itself)."""
    return dict(vae=_sd_vae(vae_blocks), text_encoder=_clip_text_encoder(),
                tokenizer=build_clip_tokenizer(), unet=_sd_unet(unet_in_channels, **unet_extra))


# pipelines with their own safety checker slot: none here
_NO_SAFETY = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _build_upscaler(folder: Path) -> None:
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline(
        # like stabilityai/stable-diffusion-x4-upscaler: noise level is a class label
        **_sd_parts(3, 7, num_class_embeds=1000, use_linear_projection=True),
        low_res_scheduler=DDPMScheduler(
            beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02
        ),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.0001,
            beta_end=0.02,
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        max_noise_level=350,
    )
    _save_pipeline(pipe, folder)


def _build_instruct_pix2pix(folder: Path) -> None:
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        **_sd_parts(4, 8),
        scheduler=EulerAncestralDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
        ),
        **_NO_SAFETY,
    )
    _save_pipeline(pipe, folder)


def _build_inpaint(folder: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        **_sd_parts(4, 9),
        scheduler=PNDMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            skip_prk_steps=True,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        **_NO_SAFETY,
    )
    _save_pipeline(pipe, folder)


def _save_pipeline(pipe, folder: Path) -> None:
    tokenizer = pipe.tokenizer
    pipe.save_pretrained(folder, safe_serialization=True)
    _save_clip_tokenizer(tokenizer, folder / "tokenizer")


# --------------------------------------------------------------------------------------------
# transformers models
# --------------------------------------------------------------------------------------------


def _build_depth(folder: Path) -> None:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=126,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=32,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 16, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessorPil(
        do_resize=True,
        size={"height": 126, "width": 126},  # the real Depth-Anything processor uses 518
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,  # bicubic
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    )
    _calibrate_depth_head(model, processor)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _calibrate_depth_head(model, processor) -> None:
    """Make the randomly initialised DPT neck and head well conditioned.

    Straight from ``__init__`` the head outputs an almost constant map (spread ~1e-7, so it
    would take a gain of ~1e6 to make it vary) which the final ReLU may zero out entirely; one
    Adam step then kills it. So, on a fixed synthetic picture: rescale every neck/head
    convolution in forward order so that its output has unit spread (LSUV initialisation), then
    set the last 1x1 convolution so that the map has mean 1 and spread 0.15. The result is
    positive on ordinary pictures (gradients flow through the ReLU), varies with the image, and
    survives a few Adam steps at lr 1e-3 or 1e-4."""
    import numpy as np
    import torch
    from PIL import Image

    yy, xx = np.mgrid[0:180, 0:320]
    picture = np.stack([xx * 255 // 319, yy * 255 // 179, (xx // 40 + yy // 45) % 2 * 255], -1)
    inputs = processor(images=Image.fromarray(picture.astype(np.uint8)), return_tensors="pt")
    last = model.head.conv3

    def normalise(module, args, output):
        # Runs as each convolution finishes, in forward order, so every layer is rescaled
        # against the already-rescaled activations of the layers before it: one forward pass.
        spread = output.std()
        if spread < 1e-6:
            module.reset_parameters()
            output = module.forward(*args)  # .forward() skips this hook
            spread = output.std()
        module.weight.div_(spread)
        if module.bias is not None:
            module.bias.div_(spread)
        return output / spread

    def settle(module, args, output):
        raw = output - module.bias.view(1, -1, 1, 1)
        scale = 0.15 / raw.std().clamp_min(1e-12)
        module.weight.mul_(scale)
        module.bias.fill_(1.0 - (raw * scale).mean().item())
        return module.forward(*args)

    hooks = [last.register_forward_hook(settle)]
    for name, module in model.named_modules():
        if (
            not name.startswith("backbone")
            and isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
            and module is not last
        ):
            hooks.append(module.register_forward_hook(normalise))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()


def _build_captioner(folder: Path) -> None:
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokens = _bert_vocab(bert_ids=False, extra=("[DEC]", "[ENC]"))
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = _bert_tokenizer(tokens, bos_token="[DEC]", model_max_length=64)
    torch.manual_seed(0)
    config = BlipConfig(
        text_config=BlipTextConfig(
            vocab_size=len(tokens),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"],
            eos_token_id=vocab["[SEP]"],
            sep_token_id=vocab["[SEP]"],
            pad_token_id=vocab["[PAD]"],
        ),
        vision_config=BlipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=64,
            patch_size=16,
            initializer_range=0.02,
        ),
        projection_dim=32,
        image_text_hidden_size=32,
    )
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    image_processor = BlipImageProcessorPil(
        size={"height": 64, "width": 64},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


def _build_sam(folder: Path) -> None:
    import torch
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    image_size, patch_size, width = 64, 8, 32
    torch.manual_seed(0)
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=32,
            output_channels=width,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            mlp_ratio=2.0,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=width // 2,
            initializer_range=0.02,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=width,
            image_size=image_size,
            patch_size=patch_size,
            mask_input_channels=8,
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=width,
            mlp_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            iou_head_hidden_dim=32,
        ),
    )
    SamModel(config).eval().save_pretrained(folder)
    low_res = image_size // patch_size * 4  # the mask decoder upsamples the embedding grid 4x
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": low_res},
        mask_pad_size={"height": low_res, "width": low_res},
    )
    SamProcessor(image_processor=image_processor).save_pretrained(folder)


def _build_grounding_dino(folder: Path) -> None:
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    tokens = _bert_vocab(bert_ids=True)
    tokenizer = _bert_tokenizer(tokens, model_max_length=256)
    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=224,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            mlp_ratio=2.0,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig(
            vocab_size=len(tokens),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=256,
            pad_token_id=0,
        ),
        d_model=32,
        num_queries=16,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=256,
        dropout=0.0,
        fusion_droppath=0.0,
    )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": 128, "longest_edge": 224}
    )
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        folder
    )
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "upscaler": _build_upscaler,
    "instruct_pix2pix": _build_instruct_pix2pix,
    "inpaint": _build_inpaint,
    "depth": _build_depth,
    "captioner": _build_captioner,
    "sam": _build_sam,
    "grounding_dino": _build_grounding_dino,
}


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------


def _is_complete(folder: Path) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text().strip() == BUILD_VERSION


def build_tiny_models(root: Path, names: tuple[str, ...] | list[str] = NAMES) -> dict[str, Path]:
    """Build tiny randomly-initialised models (seeded, deterministic) and save each with
    save_pretrained into root/<name>, returning name -> folder. Idempotent: reuse a folder that
    already holds a complete model.

    Each model is written to a scratch folder first and moved into place only once complete
    (the marker file ``.tiny_model_complete`` is written last), so an interrupted build is
    redone rather than reused, and concurrent builders never see half a model."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    for name in names:
        folder = root / name
        folders[name] = folder
        if _is_complete(folder):
            continue
        scratch = root / f".{name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        scratch.mkdir()
        try:
            _BUILDERS[name](scratch)
            (scratch / _MARKER).write_text(BUILD_VERSION + "\n")
            if folder.exists():
                if _is_complete(folder):  # another process finished it meanwhile
                    continue
                shutil.rmtree(folder)
            try:
                os.replace(scratch, folder)
            except OSError:
                if not _is_complete(folder):
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return folders


_SESSION_MODELS: dict[Path, dict[str, Path]] = {}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """name -> folder of every tiny model, built once per test session (and per xdist worker).

    Importing this fixture into several test modules gives each module its own fixture
    definition; the cache below still builds the models only once per session."""
    base = tmp_path_factory.getbasetemp()
    if base not in _SESSION_MODELS:
        _SESSION_MODELS[base] = build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
    return dict(_SESSION_MODELS[base])
