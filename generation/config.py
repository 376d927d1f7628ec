"""Generation settings: one frozen `GenerationConfig` for both `new` and `zoom`.

Owns: every knob of the pipeline (working sizes, iterations, auxiliary views, which backend
each stage uses) with its default, and `from_settings`, which builds a config from an untrusted
mapping (CLI `--set key=value`, a TOML table, `ZoomRequest.settings`) with one-line errors.
Does not own: the stages themselves or the backends' own options.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.errors import UserError
from generation.cores import background_threads

STAGES = ("observe", "context", "super_resolve", "edit", "masks", "harmonize", "depth",
          "aux_views", "init", "optimize")
# backends that load model weights: they take the device options and their own
# `stage_options` (model id or folder, steps, ...); the builtin ones take neither
MODEL_BACKENDS = frozenset({"diffusers", "transformers", "hook"})
DEVICE_SETTINGS = ("device", "dtype", "attention_slicing", "cpu_offload")
_SCALAR = (str, int, float, bool)


class ConfigError(UserError, ValueError):
    """A setting is unknown or out of range (the message is one line)."""


@dataclass(frozen=True)
class GenerationConfig:
    backend: str = "builtin"  # default backend of every stage
    backends: Mapping[str, str] = field(default_factory=dict)  # per-stage override
    # scene E0 from an image
    # working sizes (long side, pixels): 0 = the size the level is shown at, within what the
    # machine affords (`generation.sizes`: the window's / 1280 on a GPU; at most 640 for new
    # and 480 for a zoom on a CPU); the image is resized so its long side is this
    new_long_side: int = 0
    new_fov_deg: float = 55.0  # field of view across the long side of C_0
    depth_ratio: float = 3.0  # far / near of the monocular depth prior
    new_iterations: int = 12
    aux_views_new: int = 4
    aux_angle_new_deg: float = 5.0  # orbit of E0's auxiliary cameras around the scene centre
    under_edge_px_new: int = 2  # E0's far surfaces carried this many pixels under depth edges
    # a zoom step
    zoom_long_side: int = 0  # C_i is re-sampled to this long side (same pose and field of view)
    zoom_iterations: int = 10
    aux_views_zoom: int = 4
    aux_angle_zoom_deg: float = 12.0  # orbit of the auxiliary cameras around the zoom target
    sr_model: str = "realesrgan-x4plus"  # or "realesr-animevideov3-x4" (fast, flatter)
    # synthesized texture amplitude / the parent's (self-similar) for a level shown at its own
    # size; the texture tops the view's own up to this share of the parent's, so below 1 it
    # only fills what super-resolution left flat. A level made smaller than it is shown gets
    # `sizes.detail_scale` of it (a quarter, i.e. 0.5 of the parent band, for the CPU path's
    # 480 px in a 1280-px window: magnified, the band is blobs that cost NIQE; issue 21,
    # docs/benchmarks.md)
    detail_strength: float = 2.0
    # with a share above 1: the synthesized band's level above the parent band's is bounded
    # at this many grey levels (0 = no bound; `generation.detail.bounded_target`): twice a
    # faint band, but a strong one is not doubled into speckle (docs/benchmarks.md "Twice the
    # parent band on the GPU-size path")
    detail_bound_255: float = 3.0
    # the super-resolved view's own finest band amplified by 1 + this before detail synthesis
    # (`generation.detail.sharpen_band`, builtin and bicubic upscalers), with `edge_limit`
    # within each pixel's 3x3 range (no halo). Off: measured, it lowers BRISQUE but not NIQE,
    # and unlimited it draws halos (docs/benchmarks.md "Sharpening the super-resolved view")
    edge_gain: float = 0.0
    edge_limit: bool = False
    edit_size: float = 0.18  # radius of an inserted structure / the short side of C_i
    relief: float = 1.0  # image-driven depth relief, in pixel footprints per unit luma contrast
    # seamless joins (generation/stages/harmonize.py): the new level keeps its parent's low
    # frequencies below this many parent pixels (a Gaussian's sigma; 0 = no tone match) ...
    tone_sigma: float = 0.5
    # ... and its image fades into the parent's over this fraction of the short side at the
    # view's edge (0 = a hard edge)
    border_fade: float = 0.1
    # ... all but the detail finer than this Gaussian (working pixels), which the level keeps
    # up to its edge (0 = the fade takes the detail too)
    fade_detail_px: float = 1.0
    # ... and the splat fit's own tone shift is corrected in this many render-and-correct
    # rounds after it (0 = none; generation.stages.harmonize.correct_fit_tone)
    fit_tone_steps: int = 2
    # new splats: std-dev / spacing of their back-projected pixels. Half the spacing is the
    # narrowest Gaussian whose sum over the grid is flat (ripple 2 exp(-2 pi^2 0.5^2) ~ 1.4 %)
    # when the level is magnified; a wider one only blurs the image the level is made from
    # (the renderer adds its 0.3 px^2 low-pass anyway)
    splat_footprint: float = 0.5
    # shared
    aux_views_per_step: int = 1  # auxiliary views rendered per optimiser iteration
    num_threads: int = 0  # torch / ncnn / OpenCV threads; 0 = all cores but one
    max_chunk_splats: int = 1 << 16
    # model backends (a TOML config file sets these; see generation/model_config.py)
    stage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (float16 on CUDA, float32 on CPU) | float32 | float16 | bfloat16
    attention_slicing: bool = False  # diffusers: lower peak memory, a little slower
    cpu_offload: bool = False  # diffusers: keep idle sub-models in RAM (needs accelerate)

    def backend_for(self, stage: str) -> str:
        return self.backends.get(stage, self.backend)

    def options_for(self, stage: str) -> dict[str, Any]:
        """Keyword options for the backend of `stage` (`Registry.get(name, **options)`): a
        model backend's own table plus the device policy; nothing for the builtin ones."""
        if self.backend_for(stage) not in MODEL_BACKENDS:
            return {}
        device = {k: getattr(self, k) for k in DEVICE_SETTINGS}
        return {**device, **dict(self.stage_options.get(stage, {}))}

    def threads(self) -> int:
        if self.num_threads > 0:
            return self.num_threads
        return background_threads()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["backends"] = dict(self.backends)
        out["stage_options"] = {k: dict(v) for k, v in self.stage_options.items()}
        return out

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None = None,
                      base: "GenerationConfig | None" = None) -> "GenerationConfig":
        """`base` (default: the defaults) with the known keys of `settings` replaced.
        Keys the pipeline does not know raise ConfigError; keys starting with '_' (test
        hooks such as a fake runner's gate) are ignored."""
        base = base or cls()
        if not settings:
            return base
        fields = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in settings.items():
            if not isinstance(key, str):
                raise ConfigError(f"setting names must be strings, got {key!r}")
            if key.startswith("_"):
                continue
            if key not in fields:
                raise ConfigError(f"unknown setting {key!r} (known: {', '.join(sorted(fields))})")
            changes[key] = _coerce(key, value, getattr(base, key))
        out = dataclasses.replace(base, **changes)
        out.check()
        return out

    def check(self) -> None:
        for name, lo, hi in _RANGES:
            v = getattr(self, name)
            if name in _AUTO_ZERO and v == 0 and not isinstance(v, bool):
                continue  # 0: the automatic working size
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"setting {name}={v!r} is outside [{lo}, {hi}]")
        for stage in (*self.backends, *self.stage_options):
            if stage not in STAGES:
                raise ConfigError(f"backends: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ConfigError(f"setting dtype={self.dtype!r} must be auto, float32, float16 or "
                              "bfloat16")
        check_device(self.device)


def check_device(device: str) -> None:
    """The `device` setting's form: auto, cpu, cuda or cuda:N (whether this machine has that
    device is `generation.raster.set_device_policy`'s question)."""
    if not (device in ("auto", "cpu", "cuda")
            or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"setting device={device!r} must be auto, cpu, cuda or cuda:N")


def missing_device(device: str, cuda_available: bool, cuda_count: int) -> str | None:
    """Why this machine (CUDA available or not, with `cuda_count` devices) cannot run on a
    well-formed `device` setting, as one line, or None: the one wording of the pipeline's
    renders (`generation.raster.set_device_policy`) and the model backends (`backends.hf`)."""
    if not device.startswith("cuda"):
        return None
    if not cuda_available:
        return (f"device {device!r} is configured but this machine has no CUDA GPU "
                "(set device = \"auto\" or \"cpu\")")
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= cuda_count:
        return f"device {device!r}: this machine has {cuda_count} CUDA device(s), numbered from 0"
    return None



_AUTO_ZERO = ("new_long_side", "zoom_long_side")
_RANGES = (
    ("new_long_side", 16, 4096), ("zoom_long_side", 16, 4096), ("new_fov_deg", 5.0, 150.0),
    ("depth_ratio", 1.0, 100.0), ("new_iterations", 0, 10_000), ("zoom_iterations", 0, 10_000),
    ("aux_views_new", 0, 16), ("aux_views_zoom", 0, 16), ("aux_angle_new_deg", 0.0, 45.0),
    ("under_edge_px_new", 0, 16),
    ("aux_angle_zoom_deg", 0.0, 45.0), ("detail_strength", 0.0, 4.0),
    ("detail_bound_255", 0.0, 64.0), ("edge_gain", 0.0, 4.0), ("edit_size", 0.01, 0.5),
    ("relief", 0.0, 20.0), ("aux_views_per_step", 0, 16), ("num_threads", 0, 1024),
    ("max_chunk_splats", 1024, 1 << 22), ("splat_footprint", 0.25, 2.0),
    ("tone_sigma", 0.0, 16.0), ("border_fade", 0.0, 0.25),
    ("fade_detail_px", 0.0, 8.0), ("fit_tone_steps", 0, 8),
)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default`; strings (from the CLI) are parsed."""
    try:
        if key == "stage_options":
            return _stage_options(value)
        if isinstance(default, bool):
            if isinstance(value, str) and value.strip().lower() in _BOOLS:
                return _BOOLS[value.strip().lower()]
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(default, Mapping):
            if isinstance(value, str):  # "stage=name,stage=name"
                value = dict(part.split("=", 1) for part in value.split(",") if part)
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"setting {key!r} has an unsupported type")
    raise ConfigError(f"setting {key}={value!r} must be {type(default).__name__}")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def _stage_options(value: Any) -> dict[str, dict[str, Any]]:
    """{stage: {option: scalar}}; a JSON string is accepted too (from `--set`)."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise TypeError from None
    if not isinstance(value, Mapping):
        raise TypeError
    out: dict[str, dict[str, Any]] = {}
    for stage, table in value.items():
        if not isinstance(stage, str) or not isinstance(table, Mapping):
            raise TypeError
        if not all(isinstance(k, str) and isinstance(v, _SCALAR) for k, v in table.items()):
            raise TypeError
        out[stage] = dict(table)
    return out
