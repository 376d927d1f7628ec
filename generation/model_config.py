"""The model configuration file (TOML): which backend and model each stage uses.

Owns: finding the file (`--config PATH`, else `$WONDERZOOM_CONFIG`), parsing and checking it
into the flat settings `GenerationConfig.from_settings` takes (so the worker process gets them
like any other setting), its `[service]` table (`generation.service_config`: where generation
runs), its `[render]` table (`renderer = "auto" | "cpu" | "gpu"`: the path `play` and
`render` draw with, see docs/rendering.md), and `model_rows` for `wonderzoom models`. Every
mistake is one line naming the file and the key. The format is documented in docs/models.toml (an example that
configures the paper-like models) and the README.

    zoom_iterations = 10            # any generation setting at the top level
    [device]                        # device, dtype, attention_slicing, cpu_offload
    device = "auto"
    [stages.depth]                  # one table per stage: backend, then that backend's options
    backend = "transformers"
    model = "depth-anything/Depth-Anything-V2-Small-hf"   # a hub id or a local folder
Does not own: loading models (generation.backends.hf) or running stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from generation.config import DEVICE_SETTINGS, STAGES, ConfigError, GenerationConfig
from generation.service_config import ServiceConfig, parse_service_table

ENV_VAR = "WONDERZOOM_CONFIG"
MAX_CONFIG_BYTES = 1 << 20


def config_path(arg: str | None) -> Path | None:
    """The config file to use: the argument, else $WONDERZOOM_CONFIG, else none."""
    text = arg if arg else os.environ.get(ENV_VAR, "").strip() or None
    return Path(text).expanduser() if text else None


def registry(stage: str):
    import importlib

    from generation.stages import load_backends

    load_backends()
    module = "splat_init" if stage == "init" else stage
    return importlib.import_module(f"generation.stages.{module}").REGISTRY


def backend_options(stage: str, backend: str) -> dict[str, Any] | None:
    """The options (with defaults) a backend declares, or None if it takes none."""
    factory = registry(stage).factory(backend)
    return dict(getattr(factory, "OPTIONS", {})) or None


def read_settings(path: Path) -> dict[str, Any]:
    """The file as flat settings for `GenerationConfig.from_settings` (ConfigError: one line)."""
    data, where = _read_table(path)
    return settings_from_table(data, where)


def read_service(path: Path) -> ServiceConfig:
    """The file's `[service]` table: where generation runs (default: the local worker)."""
    data, where = _read_table(path)
    return parse_service_table(data.get("service", {}), where)


RENDERERS = ("auto", "cpu", "gpu")


def parse_render_table(table: Any, where: str) -> str | None:
    """`[render]`: `renderer = "auto" | "cpu" | "gpu"` (None where the key is absent)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [render] must be a table")
    for k in table:
        if k != "renderer":
            raise ConfigError(f"{where}: render.{k}: unknown key (known: renderer)")
    value = table.get("renderer")
    if value is not None and value not in RENDERERS:
        raise ConfigError(f"{where}: render.renderer: expected one of {', '.join(RENDERERS)}")
    return value


def read_renderer(path: Path) -> str | None:
    """The file's `[render] renderer`, or None."""
    data, where = _read_table(path)
    return parse_render_table(data.get("render", {}), where)


def _read_table(path: Path) -> tuple[dict[str, Any], str]:
    from engine.textfiles import display_name, parse_toml, read_text_file

    where = display_name(path)
    text = read_text_file(path, MAX_CONFIG_BYTES, ConfigError, "config file")
    return parse_toml(text, where, ConfigError), where


def settings_from_table(data: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    settings: dict[str, Any] = {}
    backends: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key == "device":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [device] must be a table")
            for k, v in value.items():
                if k not in DEVICE_SETTINGS:
                    raise ConfigError(f"{where}: device.{k}: unknown key (known: "
                                      f"{', '.join(DEVICE_SETTINGS)})")
                settings[k] = v
        elif key == "stages":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [stages] must hold one table per stage")
            for stage, table in value.items():
                backend, opts = _stage_table(stage, table, where)
                backends[stage] = backend
                if opts:
                    options[stage] = opts
        elif key == "service":  # where generation runs, not how: checked here, not a setting
            parse_service_table(value, where)
        elif key == "render":  # how the app draws: checked here, not a generation setting
            parse_render_table(value, where)
        elif isinstance(value, Mapping):
            raise ConfigError(f"{where}: [{key}]: unknown table (known: device, render, service, "
                              "stages.<stage>)")
        else:
            settings[key] = value
    if backends:
        settings["backends"] = backends
    if options:
        settings["stage_options"] = options
    try:  # check the top-level settings now, so the error names the file
        GenerationConfig.from_settings(settings)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return settings


def _stage_table(stage: str, table: Any, where: str) -> tuple[str, dict[str, Any]]:
    if stage not in STAGES:
        raise ConfigError(f"{where}: [stages.{stage}]: unknown stage (stages: {', '.join(STAGES)})")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: stages.{stage} must be a table")
    backend = table.get("backend")
    if not isinstance(backend, str):
        raise ConfigError(f"{where}: stages.{stage}.backend: missing (e.g. backend = \"builtin\")")
    from generation.registry import UnknownBackendError

    try:
        declared = backend_options(stage, backend)
    except UnknownBackendError as exc:
        raise ConfigError(f"{where}: stages.{stage}.backend: {exc}") from None
    opts = {k: v for k, v in table.items() if k != "backend"}
    if opts and declared is None:
        raise ConfigError(f"{where}: stages.{stage}: backend {backend!r} takes no options "
                          f"(got {', '.join(opts)})")
    for k, v in opts.items():
        if k not in declared:
            raise ConfigError(f"{where}: stages.{stage}.{k}: unknown option for backend {backend!r} "
                              f"(known: {', '.join(sorted(declared))})")
        default = declared[k]
        ok = (isinstance(v, bool) if isinstance(default, bool) else
              isinstance(v, (int, float)) and not isinstance(v, bool) if isinstance(default, (int, float)) else
              isinstance(v, str))
        if not ok:
            raise ConfigError(f"{where}: stages.{stage}.{k} = {v!r}: must be "
                              f"{type(default).__name__}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(v, float):
            if not v.is_integer():
                raise ConfigError(f"{where}: stages.{stage}.{k} = {v!r}: must be int")
            opts[k] = int(v)
    return backend, opts


def file_settings(config_arg: str | None) -> dict[str, Any]:
    """The settings of the config file (`config_arg`, else $WONDERZOOM_CONFIG), or {}."""
    path = config_path(config_arg)
    return read_settings(path) if path is not None else {}


def file_renderer(config_arg: str | None) -> str | None:
    """`[render] renderer` of the config file (`config_arg`, else $WONDERZOOM_CONFIG), or None."""
    path = config_path(config_arg)
    return read_renderer(path) if path is not None else None


def file_service(config_arg: str | None) -> ServiceConfig:
    """The `[service]` of the config file (`config_arg`, else $WONDERZOOM_CONFIG), or the
    default: the local worker process."""
    path = config_path(config_arg)
    return read_service(path) if path is not None else ServiceConfig()


def build_config(settings: Mapping[str, Any], kind: str, *, backend: str | None = None,
                 long_side: int | None = None, iterations: int | None = None,
                 overrides: Mapping[str, str] | None = None,
                 num_threads: int | None = None) -> GenerationConfig:
    """The config of one `new` (`kind="new"`) or `zoom` run: the file's `settings`, then
    `backend` for every stage that has such a backend, the working size and iterations of
    that kind, `overrides` (strings, as typed after `--set`) and the thread count. Every
    stage's backend is checked to exist (ConfigError: one line)."""
    if kind not in ("new", "zoom"):
        raise ValueError(f"kind must be 'new' or 'zoom', not {kind!r}")
    merged: dict[str, Any] = dict(settings)
    if num_threads is not None:
        merged["num_threads"] = num_threads
    if backend is not None:
        chosen = {st: backend for st in STAGES if backend in registry(st).names()}
        if not chosen:
            known = sorted({n for st in STAGES for n in registry(st).names()})
            raise ConfigError(f"--backend: unknown backend {backend!r} (known: {', '.join(known)})")
        merged["backends"] = {**merged.get("backends", {}), **chosen}
    if long_side is not None:
        merged[f"{kind}_long_side"] = long_side
    if iterations is not None:
        merged[f"{kind}_iterations"] = iterations
    merged.update(overrides or {})
    config = GenerationConfig.from_settings(merged)
    for stage in STAGES:
        names = registry(stage).names()
        if config.backend_for(stage) not in names:
            raise ConfigError(f"stage {stage}: unknown backend {config.backend_for(stage)!r} "
                              f"(known: {', '.join(names)})")
    return config


def load_config(path: Path | None, base: Mapping[str, Any] | None = None) -> GenerationConfig:
    """`base` settings (e.g. from the CLI) over the file's; no file = `base` alone."""
    settings = read_settings(path) if path is not None else {}
    merged = {**settings, **(base or {})}
    if "backends" in settings and "backends" in (base or {}):
        merged["backends"] = {**settings["backends"], **base["backends"]}
    return GenerationConfig.from_settings(merged)


# ---- `wonderzoom models` -----------------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    stage: str
    backend: str
    key: str  # config key of the model ("" for builtin stages)
    model: str  # id or folder ("" for builtin)
    present: bool
    where: str  # folder, or why it is missing

    @property
    def config_key(self) -> str:
        return f"stages.{self.stage}.{self.key}" if self.key else ""


def model_rows(config: GenerationConfig) -> list[ModelRow]:
    from generation.backends.hf import status

    rows = []
    for stage in STAGES:
        backend = config.backend_for(stage)
        factory = registry(stage).factory(backend)
        keys = getattr(factory, "MODEL_KEYS", ())
        if backend == "hook":
            spec = str(config.stage_options.get(stage, {}).get("hook", ""))
            try:
                from generation.backends.hook import resolve

                resolve(spec)
                rows.append(ModelRow(stage, backend, "hook", spec, True, "importable"))
            except ValueError as exc:
                rows.append(ModelRow(stage, backend, "hook", spec, False, str(exc)))
            continue
        if not keys:
            rows.append(ModelRow(stage, backend, "", "", True, "ships with the app"))
            continue
        opts = {**getattr(factory, "OPTIONS", {}), **config.stage_options.get(stage, {})}
        for key in keys:
            model = str(opts.get(key, ""))
            if not model:  # an optional model left empty (e.g. no Grounding DINO)
                continue
            present, where = status(model)
            rows.append(ModelRow(stage, backend, key, model, present, where))
    return rows
