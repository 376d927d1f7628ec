"""The diffusers / transformers backends end to end with tiny random models (tests/tiny_models.py):
every stage through its real backend code, the depth fine-tuning, and full `wonderzoom new` /
`wonderzoom zoom` runs with every stage on a model backend, on the CPU, offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

import main
from tests.tiny_models import tiny_models  # noqa: F401 (session fixture)

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

FAST = ["--size", "64", "--iterations", "2", "--quiet"]


def tiny_config(models, tmp_path, edit="instruct_pix2pix", grounding=True, extra=""):
    g = f'grounding_model = "{models["grounding_dino"]}"' if grounding else ""
    text = f"""
aux_views_zoom = 1
aux_views_new = 1
[device]
device = "cpu"
[stages.context]
backend = "transformers"
model = "{models['captioner']}"
max_new_tokens = 6
[stages.super_resolve]
backend = "diffusers"
model = "{models['upscaler']}"
steps = 2
[stages.edit]
backend = "diffusers"
model = "{models[edit]}"
steps = 2
mask_radius = 0.3
change_threshold = 0.02
[stages.masks]
backend = "transformers"
model = "{models['sam']}"
{g}
box_threshold = 0.0
[stages.depth]
backend = "transformers"
model = "{models['depth']}"
finetune_steps = 2
[stages.aux_views]
backend = "diffusers"
model = "{models['inpaint']}"
steps = 2
min_hole_fraction = 0.0
{extra}
"""
    p = tmp_path / f"tiny_{edit}_{int(grounding)}.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from skimage.data import coffee

    p = tmp_path_factory.mktemp("img") / "coffee.png"
    Image.fromarray(coffee()[::4, ::4]).save(p)
    return p


@pytest.fixture(scope="module")
def model_world(tmp_path_factory, tiny_models, photo):
    """`new` then `zoom` with every stage on a model backend (made once)."""
    d = tmp_path_factory.mktemp("mworld")
    cfg = tiny_config(tiny_models, d)
    w = d / "w.wzs"
    assert main.main(["new", str(photo), "-o", str(w), "--config", str(cfg), *FAST]) == 0
    assert main.main(["zoom", str(w), "--at", "30,20", "--prompt", "a ladybug", "--seed", "1",
                      "--config", str(cfg), *FAST]) == 0
    return w, cfg


def test_a_full_zoom_on_model_backends_appends_a_valid_level(model_world, capsys):
    from saves import load_world

    w, _ = model_world
    loaded = load_world(w)
    h = loaded.history
    assert [s.kind for s in h] == ["image", "zoom"]
    zoom = h.steps[1]
    stages = zoom.backend["settings"]["stages"]
    assert stages == {"observe": "builtin", "context": "transformers",
                      "super_resolve": "diffusers", "edit": "diffusers",
                      "masks": "transformers", "harmonize": "builtin",
                      "depth": "transformers",
                      "aux_views": "diffusers", "init": "builtin", "optimize": "builtin"}
    assert zoom.backend["sr_model"].startswith("diffusers:")
    assert zoom.backend["mask"].startswith(("sam", "edit"))
    assert zoom.backend["settings"]["stage_options"]["depth"]["finetune_steps"] == 2
    assert isinstance(zoom.backend["caption"], str)
    for cid in zoom.chunk_ids:
        loaded.chunks[cid].validate()
    assert sum(len(loaded.chunks[c]) for c in zoom.chunk_ids) > 100
    assert main.main(["info", str(w), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["valid"] is True and len(info["levels"]) == 2


def test_each_model_backend_through_its_stage(tiny_models):
    from engine.camera import Camera
    from generation.config import GenerationConfig
    from generation.model_config import load_config
    from generation.stages import context, depth, edit, load_backends, masks, super_resolve

    load_backends()
    rng = np.random.default_rng(0)
    low = rng.uniform(0, 1, (20, 32, 3))
    sr = super_resolve.run(super_resolve.SuperResolveInput(low, 128, 80, 0, 1.0, "a cup"),
                           "diffusers", model=str(tiny_models["upscaler"]), steps=2, device="cpu")
    assert sr.rgb.shape == (80, 128, 3) and np.isfinite(sr.rgb).all()
    assert 0 <= sr.rgb.min() and sr.rgb.max() <= 1 and sr.model.startswith("diffusers:")

    cap = context.run(context.ContextInput(low, "a ladybug"), "transformers",
                      model=str(tiny_models["captioner"]), max_new_tokens=5, device="cpu")
    assert isinstance(cap.caption, str) and cap.caption and "\n" not in cap.caption

    img = rng.uniform(0.3, 0.7, (80, 128, 3))
    for name in ("instruct_pix2pix", "inpaint"):
        ed = edit.run(edit.EditInput(img, "a ladybug", (64.0, 40.0), seed=0), "diffusers",
                      model=str(tiny_models[name]), steps=2, mask_radius=0.25,
                      change_threshold=0.02, device="cpu")
        assert ed.rgb.shape == img.shape
        far = np.zeros((80, 128), bool)
        far[:, :20] = True  # well outside the edit disk (radius 20 px around (64, 40))
        assert np.array_equal(ed.rgb[far], img[far])  # the rest of the view is untouched
        assert ed.mask[far].max() == 0 and ed.mask.max() > 0
        assert ed.label.startswith("instruct" if name == "instruct_pix2pix" else "inpaint")
        # an empty prompt is a pure refinement
        same = edit.run(edit.EditInput(img, "", (64.0, 40.0)), "diffusers",
                        model=str(tiny_models[name]), steps=2, device="cpu")
        assert same.rgb is img

    hint = np.zeros((80, 128))
    hint[30:50, 54:74] = 1
    for grounding in ("", str(tiny_models["grounding_dino"])):
        m = masks.run(masks.MasksInput(img, "a ladybug", (64.0, 40.0), hint), "transformers",
                      model=str(tiny_models["sam"]), grounding_model=grounding,
                      box_threshold=0.0, device="cpu")
        assert m.mask.shape == (80, 128) and 0 <= m.mask.min() and m.mask.max() <= 1
        assert m.source.startswith(("sam", "edit"))

    cam = Camera.look_at(np.array([0.0, 0, -2]), np.zeros(3), width=128, height=80)
    e0 = depth.run(depth.DepthInput(cam, img, depth_ratio=3.0), "transformers",
                   model=str(tiny_models["depth"]), device="cpu")
    assert e0.depth.shape == (80, 128) and np.isfinite(e0.depth).all() and e0.depth.min() > 0
    assert e0.depth.max() <= 3.0 + 1e-6

    cfg = load_config(None)
    assert isinstance(cfg, GenerationConfig)


def test_depth_finetuning_fits_the_coarse_depth_better_and_restores_the_weights(tiny_models):
    import torch

    from engine.camera import Camera
    from generation.stages import depth, load_backends

    load_backends()
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 1, (48, 64, 3))
    cam = Camera.look_at(np.array([0.0, 0, -2]), np.zeros(3), width=64, height=48)
    v, u = np.mgrid[0:48, 0:64]
    coarse = 1.5 + 0.8 * u / 64 + 0.3 * np.sin(v / 5)  # a slanted, rippled surface
    weight = np.ones_like(coarse)
    inp = depth.DepthInput(cam, img, coarse, weight)

    def fit_error(steps):
        net = depth.REGISTRY.get("transformers", model=str(tiny_models["depth"]),
                                 finetune_steps=steps, finetune_lr=1e-3, device="cpu")
        before = {k: t.clone() for k, t in net.net.state_dict().items()}
        pred = net(inp)
        after = net.net.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # weights restored
        assert net.finetuned_steps == steps
        return float(np.mean(np.abs(pred - coarse) / coarse))

    plain, tuned = fit_error(0), fit_error(8)
    assert tuned < plain, (tuned, plain)
    # the aux views ask for no fine-tuning
    net = depth.REGISTRY.get("transformers", model=str(tiny_models["depth"]), finetune_steps=8,
                             finetune_lr=1e-3, device="cpu")
    from dataclasses import replace

    net(replace(inp, finetune=False))
    assert net.finetuned_steps == 0


def test_inpainting_editor_and_sam_point_prompt_in_a_full_zoom(tiny_models, tmp_path, photo):
    cfg = tiny_config(tiny_models, tmp_path, edit="inpaint", grounding=False)
    w = tmp_path / "w.wzs"
    assert main.main(["new", str(photo), "-o", str(w), *FAST]) == 0  # builtin E0
    assert main.main(["zoom", str(w), "--at", "20,20", "--prompt", "a red mushroom",
                      "--config", str(cfg), *FAST]) == 0
    from saves import load_world

    step = load_world(w).history.steps[1]
    assert step.backend["edit"].startswith("inpaint:")


def render_views(rgb, depth, camera, cameras, caption):
    """An aux-views hook (a stand-in for a camera-controlled video model): flat grey views."""
    return [np.full((c.height, c.width, 3), 0.5) for c in cameras]


def test_the_aux_views_hook_gets_every_camera(tmp_path, photo, capsys):
    cfg = tmp_path / "hook.toml"
    cfg.write_text('[stages.aux_views]\nbackend = "hook"\n'
                   'hook = "tests.test_model_backends:render_views"\n')
    w = tmp_path / "w.wzs"
    assert main.main(["new", str(photo), "-o", str(w), "--config", str(cfg), *FAST,
                      "--set", "aux_views_new=2"]) == 0
    capsys.readouterr()
    assert main.main(["models", "--config", str(cfg)]) == 0
    assert "tests.test_model_backends:render_views" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[stages.aux_views]\nbackend = "hook"\nhook = "nowhere.module:fn"\n')
    assert main.main(["new", str(photo), "-o", str(tmp_path / "x.wzs"), "--config", str(bad),
                      *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.aux_views.hook" in err[0]


def test_a_missing_model_fails_a_zoom_with_one_line_and_leaves_the_world(model_world, tmp_path,
                                                                          capsys):
    w, _ = model_world
    before = w.read_bytes()
    cfg = tmp_path / "missing.toml"
    cfg.write_text('[stages.depth]\nbackend = "transformers"\nmodel = "org/absent-depth"\n')
    code = main.main(["zoom", str(w), "--at", "30,20", "--config", str(cfg), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "org/absent-depth" in err[0] and "stages.depth.model" in err[0], err
    assert w.read_bytes() == before


def test_the_apps_worker_runs_the_model_backends_and_reports_a_missing_model(model_world,
                                                                               tmp_path):
    """`play --config`: the settings go to the worker process, which loads the models there."""
    import time

    from engine.messages import ZoomResult
    from generation.model_config import file_settings
    from generation.pipeline import request_at_pixel
    from generation.service import GenerationService
    from saves import load_world

    w, cfg = model_world
    loaded = load_world(w)
    view = loaded.history.steps[0].camera
    missing = tmp_path / "missing.toml"
    missing.write_text('[stages.context]\nbackend = "transformers"\nmodel = "org/absent-cap"\n')
    for rid, path in ((1, cfg), (2, missing)):
        settings = {**file_settings(str(path)), "zoom_long_side": 64, "zoom_iterations": 1}
        svc = GenerationService(settings, timeout_s=300)
        try:
            svc.submit(request_at_pixel(loaded.history, loaded.chunks, view, (30, 20), "a ladybug",
                                        seed=rid, request_id=rid))
            end, got = time.monotonic() + 300, []
            while not got and time.monotonic() < end:
                got = [e for e in svc.poll() if isinstance(e, ZoomResult)]
                time.sleep(0.05)
        finally:
            svc.close()
        (r,) = got
        if rid == 1:
            assert r.ok, r.error
            assert r.backend["settings"]["stages"]["depth"] == "transformers"
            for c in r.chunks.values():
                c.validate()
        else:
            assert not r.ok and "org/absent-cap" in r.error and "stages.context.model" in r.error
            assert "\n" not in r.error


@pytest.mark.cuda
def test_tiny_models_on_cuda_in_half_precision(tiny_models, tmp_path, photo):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = tiny_config(tiny_models, tmp_path).read_text().replace('device = "cpu"',
                                                                 'device = "cuda"')
    p = tmp_path / "cuda.toml"
    p.write_text(cfg)
    w = tmp_path / "w.wzs"
    assert main.main(["new", str(photo), "-o", str(w), *FAST]) == 0
    assert main.main(["zoom", str(w), "--at", "30,20", "--prompt", "a ladybug",
                      "--config", str(p), *FAST]) == 0


@pytest.mark.real_weights
def test_the_documented_real_models_grow_a_level(tmp_path, photo):
    """With the models of docs/models.toml in the local cache (a GPU machine after
    `hf download ...`), a zoom with them appends a level."""
    from pathlib import Path

    from generation.config import GenerationConfig
    from generation.model_config import model_rows, read_settings

    example = Path(__file__).resolve().parents[1] / "docs" / "models.toml"
    rows = model_rows(GenerationConfig.from_settings(read_settings(example)))
    missing = [r.model for r in rows if not r.present]
    if missing:
        pytest.skip(f"real weights not in the local cache: {', '.join(missing)}")
    w = tmp_path / "w.wzs"
    assert main.main(["new", str(photo), "-o", str(w), "--config", str(example), "--quiet"]) == 0
    assert main.main(["zoom", str(w), "--at", "30,20", "--prompt", "a ladybug",
                      "--config", str(example), "--quiet"]) == 0


def test_model_stages_report_progress_inside_and_cancel_mid_diffusion(model_world):
    """The diffusion loops and the depth fine-tuning tick the stage's progress bar, and a
    cancel during a diffusion loop stops the request there."""
    from generation.config import GenerationConfig
    from generation.model_config import file_settings
    from generation.pipeline import Cancelled, request_at_pixel, run_zoom
    from saves import load_world

    w, cfg = model_world
    loaded = load_world(w)
    view = loaded.history.steps[0].camera
    config = GenerationConfig.from_settings({**file_settings(str(cfg)), "zoom_long_side": 64,
                                             "zoom_iterations": 1})
    seen: list[tuple[str, float]] = []
    run_zoom(request_at_pixel(loaded.history, loaded.chunks, view, (55, 35), "a ladybug", seed=5),
             config,
             progress=lambda stage, f: seen.append((stage, f)))
    inner = {stage for stage, f in seen if 0.0 < f < 1.0}
    assert {"super_resolve", "edit", "depth"} <= inner, seen
    for stage in ("super_resolve", "edit", "depth"):
        fs = [f for s, f in seen if s == stage]
        assert fs == sorted(fs) and fs[0] == 0.0 and fs[-1] == 1.0
    state = {"edit_ticks": 0}

    def progress(stage, f):
        if stage == "edit" and 0 < f < 1:
            state["edit_ticks"] += 1

    with pytest.raises(Cancelled):
        run_zoom(request_at_pixel(loaded.history, loaded.chunks, view, (55, 35), "a ladybug",
                                  seed=6), config,
                 progress=progress, cancel=lambda: state["edit_ticks"] >= 1)
    assert state["edit_ticks"] == 1  # stopped at the first denoising step of the edit
