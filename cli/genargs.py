"""The generation options `new` and `zoom` share, and the config they make.

Owns: `--prompt --backend --config --seed --size --iterations --set --quiet --cluster` and
turning them into a `GenerationConfig` (through `generation.model_config.build_config`, which
takes plain values: the libraries never see argparse), or, for a cluster, into the settings
overrides each request carries (the model config itself is read on the workers).
Does not own: the settings themselves (`generation.config`) or the config file format.
"""

from __future__ import annotations

import argparse

from engine.errors import UserError


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, metavar="TOML",
                   help="model configuration: the backend and model of each stage, device, "
                        "settings (default: $WONDERZOOM_CONFIG if set, else the builtin backend; "
                        "example in docs/models.toml)")


def add_cluster_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="grow on a Ray cluster (docs/cluster.md): HOST:PORT of its head when "
                        "this machine is one of its nodes, ray://HOST:10001 (Ray Client) from "
                        "outside it, or local (a private Ray instance here); default: "
                        "$WONDERZOOM_CLUSTER if set, else the config file's [service]")


def add_generation_arguments(p: argparse.ArgumentParser, kind: str,
                             default_iterations: int) -> None:
    """`kind`: "new" or "zoom", whose default working size `--help` states."""
    from generation.sizes import CPU_NEW_LONG_SIDE, CPU_ZOOM_LONG_SIDE, DISPLAY_LONG_SIDE

    if kind == "zoom":
        size_help = (f"the long side of the view it is asked from, the size it is shown "
                     f"at; on a CPU at most {CPU_ZOOM_LONG_SIDE}")
    else:
        size_help = (f"the photo's long side, at most {DISPLAY_LONG_SIDE} (play's window); on "
                     f"a CPU at most {CPU_NEW_LONG_SIDE}")
    p.add_argument("--prompt", default="", help="what to grow (zoom) / describes the scene (new)")
    p.add_argument("--backend", default=None,
                   help="use this backend (builtin, bicubic, diffusers, transformers) for every "
                        "stage that has it (default: the config file's, else builtin: offline "
                        "on a CPU)")
    add_config_argument(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the step id)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help=f"working size: long side in pixels (default: {size_help}; "
                        "docs/benchmarks.md says why)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help=f"optimiser iterations (default {default_iterations})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any generation setting, e.g. --set aux_views_zoom=2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_argument(p)


MAX_SEED = 1 << 53  # seeds are stored in the world file, whose integers stay below 2^53


def check_generation_args(args: argparse.Namespace) -> None:
    """Refuse what would fail only after the whole generation ran: text that is not UTF-8
    (it cannot be stored), a seed the file cannot hold, an over-long prompt."""
    from engine.messages import MAX_PROMPT_CHARS

    for flag, text in (("--prompt", args.prompt), *(("--set", s) for s in args.set)):
        if not is_utf8(text):
            raise UserError(f"{flag}: not valid UTF-8 text (check the terminal's encoding)")
    if len(args.prompt) > MAX_PROMPT_CHARS:
        raise UserError(f"--prompt: at most {MAX_PROMPT_CHARS} characters")
    if args.seed is not None and not 0 <= args.seed < MAX_SEED:
        raise UserError(f"--seed {args.seed}: must be in 0..2^53-1")


def is_utf8(text: str) -> bool:
    """False for a str holding surrogate escapes (bytes from argv that were not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def config_from_args(args: argparse.Namespace, kind: str):
    """The `GenerationConfig` of a `new` or `zoom` run. The command line has no frame loop to
    keep a core for, so the pipeline uses every core."""
    from generation.cores import usable_cores
    from generation.model_config import build_config, file_settings

    return build_config(file_settings(args.config), kind, backend=args.backend,
                        long_side=args.size, iterations=args.iterations,
                        overrides=parse_sets(args.set), num_threads=usable_cores())


def overrides_from_args(args: argparse.Namespace, kind: str) -> dict:
    """The settings a `new` or `zoom` request carries to a cluster: what `--backend --size
    --iterations --set` change (checked here, in one line); the rest comes from the model
    config on the workers."""
    import dataclasses

    from generation.config import GenerationConfig
    from generation.model_config import build_config

    config = build_config({}, kind, backend=args.backend, long_side=args.size,
                          iterations=args.iterations, overrides=parse_sets(args.set))
    default = GenerationConfig()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)}


def config_from_sample(kind: str):
    """The default config of a `new` or `zoom` run on every core (the sample world's)."""
    from generation.cores import usable_cores
    from generation.model_config import build_config

    return build_config({}, kind, num_threads=usable_cores())
