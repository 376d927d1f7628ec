"""The model config file (TOML) and `wonderzoom models`: parsing, one-line errors naming the
file and key, presence checks, and the pure helpers of the model backends (no models here)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import main
from generation.config import ConfigError, GenerationConfig
from generation.model_config import load_config, read_settings


def write(tmp_path, text, name="models.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_documented_example_parses_into_backends_options_and_device():
    from pathlib import Path

    s = read_settings(Path(__file__).resolve().parents[1] / "docs" / "models.toml")
    cfg = GenerationConfig.from_settings(s)
    assert cfg.backend_for("depth") == "transformers"
    assert cfg.backend_for("edit") == "diffusers" and cfg.backend_for("observe") == "builtin"
    assert cfg.stage_options["masks"]["grounding_model"] == "IDEA-Research/grounding-dino-tiny"
    assert cfg.zoom_iterations == 30
    opts = cfg.options_for("depth")
    assert opts["model"] == "depth-anything/Depth-Anything-V2-Small-hf"
    assert opts["device"] == "auto" and opts["finetune_steps"] == 5
    assert cfg.options_for("observe") == {}  # builtin backends take no model options
    # the options survive the trip to the worker process and into the save file
    assert GenerationConfig.from_settings(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize("text, needle", [
    ("[stages.edit]\nbackend = 'diffusers'\nstepz = 3\n", "stages.edit.stepz: unknown option"),
    ("[stages.edit]\nbackend = 'diffusers'\nsteps = 'many'\n", "stages.edit.steps"),
    ("[stages.edit]\nbackend = 'diffusers'\nsteps = 2.5\n", "must be int"),
    ("[stages.edit]\nbackend = 'nope'\n", "unknown backend 'nope'"),
    ("[stages.edit]\nmodel = 'x'\n", "stages.edit.backend: missing"),
    ("[stages.wobble]\nbackend = 'builtin'\n", "unknown stage"),
    ("[stages.observe]\nbackend = 'builtin'\nmodel = 'x'\n", "takes no options"),
    ("[device]\ndevice = 'tpu'\n", "device"),
    ("[device]\ncolour = 'red'\n", "device.colour: unknown key"),
    ("zoom_iterations = -4\n", "zoom_iterations"),
    ("wobble = 1\n", "unknown setting 'wobble'"),
    ("[extras]\na = 1\n", "[extras]: unknown table"),
    ("this is = = not toml", "not valid TOML"),
])
def test_mistakes_are_one_line_naming_the_file_and_key(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        read_settings(p)
    msg = str(err.value)
    assert "\n" not in msg and str(p) in msg and needle in msg, msg


def test_missing_file_and_cli_overrides(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        read_settings(tmp_path / "absent.toml")
    p = write(tmp_path, "zoom_iterations = 7\n[stages.depth]\nbackend = 'transformers'\n"
                        "finetune_steps = 0\n")
    cfg = load_config(p, {"zoom_iterations": 3})
    assert cfg.zoom_iterations == 3 and cfg.backend_for("depth") == "transformers"
    assert cfg.options_for("depth")["finetune_steps"] == 0


def test_bool_settings_parse_from_the_command_line():
    cfg = GenerationConfig.from_settings({"attention_slicing": "yes", "cpu_offload": "0"})
    assert cfg.attention_slicing is True and cfg.cpu_offload is False
    with pytest.raises(ConfigError):
        GenerationConfig.from_settings({"attention_slicing": "maybe"})


def test_status_of_folders_ids_and_nonsense(tmp_path):
    from generation.backends.hf import is_path, status

    assert is_path("./models/x") and is_path("/abs") and not is_path("org/name")
    assert status(str(tmp_path / "nope")) == (False, f"no such folder: {tmp_path / 'nope'}")
    (tmp_path / "m").mkdir()
    assert status(str(tmp_path / "m"))[0] is False  # a folder without a config
    (tmp_path / "m" / "config.json").write_text("{}")
    assert status(str(tmp_path / "m")) == (True, str(tmp_path / "m"))
    present, why = status("nobody-has/this-model-xyz")
    assert not present and "cache" in why


def test_models_command_lists_missing_models_with_the_fetch_command(tmp_path, capsys):
    p = write(tmp_path, "[stages.depth]\nbackend = 'transformers'\nmodel = 'org/depth-model'\n"
                        f"[stages.context]\nbackend = 'transformers'\nmodel = '{tmp_path}/cap'\n")
    code = main.main(["models", "--config", str(p)])
    out = capsys.readouterr().out
    assert code == 1
    assert "hf download org/depth-model" in out and "stages.depth.model" in out
    assert f"no such folder: {tmp_path}/cap" in out
    code = main.main(["models", "--config", str(p), "--json"])
    data = json.loads(capsys.readouterr().out)
    rows = {r["stage"]: r for r in data["stages"]}
    assert rows["depth"]["present"] is False and rows["observe"]["present"] is True
    assert main.main(["models"]) == 0  # builtin: nothing to fetch


def test_models_command_bad_config_is_one_line(tmp_path, capsys):
    p = write(tmp_path, "[stages.edit]\nbackend = 'diffusers'\nstepz = 1\n")
    assert main.main(["models", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages.edit.stepz" in err[0]


def test_config_from_the_environment(tmp_path, monkeypatch, capsys):
    p = write(tmp_path, "[stages.depth]\nbackend = 'transformers'\nmodel = 'org/env-model'\n")
    monkeypatch.setenv("WONDERZOOM_CONFIG", str(p))
    assert main.main(["models"]) == 1
    assert "org/env-model" in capsys.readouterr().out


def test_missing_model_is_one_readable_line():
    from generation.backends.hf import ModelUnavailable
    from generation.stages import depth as depth_stage
    from generation.stages import load_backends

    load_backends()
    with pytest.raises(ModelUnavailable) as err:
        depth_stage.REGISTRY.get("transformers", model="org/not-here-model")
    msg = str(err.value)
    assert "\n" not in msg and "org/not-here-model" in msg and "stages.depth.model" in msg
    assert "hf download org/not-here-model" in msg
    from generation.pipeline import one_line

    assert one_line(err.value) == msg  # the failed result's reason is that line, unprefixed


# ---- pure helpers of the model backends ---------------------------------------------------
def test_pick_box_prefers_a_box_holding_the_point_then_the_nearest():
    from generation.backends.transformers_backends import pick_box

    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [15, 15, 45, 45]], float)
    scores = np.array([0.9, 0.5, 0.7])
    assert pick_box(boxes, scores, (30, 30)).tolist() == [15, 15, 45, 45]  # both hold it
    assert pick_box(boxes, scores, (12, 12)).tolist() == [0, 0, 10, 10]  # nearest centre
    assert pick_box(np.zeros((0, 4)), np.zeros(0), (1, 1)) is None


def test_choose_mask_needs_overlap_with_the_editors_estimate():
    from generation.backends.transformers_backends import choose_mask

    hint = np.zeros((20, 20))
    hint[5:10, 5:10] = 1
    a = np.zeros((20, 20), bool)
    a[5:10, 5:12] = True  # overlaps the hint
    b = np.zeros((20, 20), bool)
    b[15:, 15:] = True  # elsewhere, better scored
    assert choose_mask(np.stack([a, b]), np.array([0.5, 0.9]), hint, 0.2) == 0
    assert choose_mask(np.stack([b]), np.array([0.9]), hint, 0.2) is None


def test_weighted_scale_shift_recovers_an_affine_map_and_ignores_zero_weights():
    import torch

    from generation.backends.transformers_backends import weighted_scale_shift

    x = torch.linspace(0, 1, 50)
    y = 3 * x + 0.5
    w = torch.ones(50)
    y[:10] = 100.0  # outliers with weight 0
    w[:10] = 0
    s, t = weighted_scale_shift(x, y, w)
    assert abs(float(s) - 3) < 1e-5 and abs(float(t) - 0.5) < 1e-5


def test_layout_maps_disparity_to_the_depth_range_nearest_first():
    from generation.backends.transformers_backends import NetworkDepth

    disp = np.linspace(0, 1, 100).reshape(10, 10)
    d = NetworkDepth.layout(disp, 3.0, disparity=True)
    assert d.min() == pytest.approx(1.0) and d.max() == pytest.approx(3.0)
    assert d[0, 0] > d[-1, -1]  # larger disparity = nearer
    d2 = NetworkDepth.layout(disp, 3.0, disparity=False)
    assert d2[0, 0] < d2[-1, -1]


def test_edit_region_and_change_mask():
    from generation.backends.diffusers_backends import change_mask, disk

    r = disk(40, 60, (30, 20), 8, 2)
    assert r[20, 30] == 1 and r[0, 0] == 0 and 0 < r[20, 39] < 1
    before = np.full((40, 60, 3), 0.5)
    after = before.copy()
    after[15:25, 25:35] = [1.0, 0.0, 0.0]
    m = change_mask(before, after, r, 0.1)
    assert m[20, 30] > 0.9 and m[5, 5] == 0 and m.max() <= 1


def test_a_broken_model_folder_is_one_readable_line(tmp_path):
    from generation.backends.hf import ModelUnavailable
    from generation.stages import depth as depth_stage
    from generation.stages import load_backends

    load_backends()
    bad = tmp_path / "depth-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelUnavailable) as err:
        depth_stage.REGISTRY.get("transformers", model=str(bad))
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "could not be loaded" in msg
    assert "stages.depth.model" in msg


def test_the_renderer_comes_from_the_flag_then_the_environment_then_the_config(tmp_path,
                                                                              monkeypatch):
    from cli.common import renderer_choice
    from engine.errors import UserError

    monkeypatch.delenv("WONDERZOOM_RENDERER", raising=False)
    monkeypatch.delenv("WONDERZOOM_CONFIG", raising=False)
    cfg = write(tmp_path, '[render]\nrenderer = "cpu"\n')
    assert renderer_choice(None) == "auto"
    assert renderer_choice(None, str(cfg)) == "cpu"
    monkeypatch.setenv("WONDERZOOM_CONFIG", str(cfg))  # the config found through the env
    assert renderer_choice(None) == "cpu"
    monkeypatch.setenv("WONDERZOOM_RENDERER", "gpu")
    assert renderer_choice(None, str(cfg)) == "gpu"
    assert renderer_choice("auto", str(cfg)) == "auto"
    monkeypatch.delenv("WONDERZOOM_RENDERER")
    read_settings(cfg)  # a [render] table is part of a valid model config
    for text, needle in [('[render]\nrenderer = "vulkan"\n', "render.renderer: expected one of"),
                         ('[render]\nsort = "gpu"\n', "render.sort: unknown key"),
                         ('render = 3\n', "[render] must be a table")]:
        bad = write(tmp_path, text, "bad.toml")
        with pytest.raises(UserError, match=re.escape(needle)):
            renderer_choice(None, str(bad))
        with pytest.raises(ConfigError, match=re.escape(needle)):
            read_settings(bad)
