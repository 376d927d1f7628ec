"""`wonderzoom models [--config TOML] [--json]`: each stage's backend and model, which are
on this machine, and how to fetch the missing ones (exit 1 when one is missing)."""

from __future__ import annotations

import argparse
import json

from cli.genargs import add_config_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the backend and model each generation stage uses, "
                                      "which are on this machine, and how to fetch the missing ones",
                       description="List the backend and model each generation stage uses, "
                                   "which are on this machine, and how to fetch the missing ones.")
    add_config_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def run(args: argparse.Namespace) -> int:
    from generation.config import GenerationConfig
    from generation.model_config import config_path, file_settings, model_rows

    path = config_path(args.config)
    config = GenerationConfig.from_settings(file_settings(args.config))
    rows = model_rows(config)
    if args.json:
        print(json.dumps({"config": str(path) if path else None, "device": config.device,
                          "dtype": config.dtype, "stages": [
                              {"stage": r.stage, "backend": r.backend, "model": r.model or None,
                               "config_key": r.config_key or None, "present": r.present,
                               "where": r.where} for r in rows]}))
        return 1 if any(not r.present for r in rows) else 0
    print(f"config: {path}" if path else
          "config: none (builtin backends; pass --config TOML or set $WONDERZOOM_CONFIG)")
    print(f"device: {config.device}, dtype: {config.dtype}")
    w_stage = max(len(r.stage) for r in rows)
    w_backend = max(len(r.backend) for r in rows)
    for r in rows:
        state = "ok     " if r.present else "MISSING"
        print(f"  {r.stage:<{w_stage}}  {r.backend:<{w_backend}}  {state}  {r.model or r.where}"
              + (f"  ({r.where})" if not r.present or r.model else ""))
    missing = [r for r in rows if not r.present]
    if missing:
        from generation.backends.hf import fetch_command, is_path

        print("\nmissing models; on a machine with internet (pip install huggingface_hub):")
        for r in missing:
            if r.backend == "hook" or is_path(r.model):
                print(f"  {r.config_key}: {r.where}")
            else:
                print(f"  {fetch_command(r.model)}    # {r.config_key}")
        print("then copy the Hugging Face cache (~/.cache/huggingface) here, or point the "
              "config keys at local folders")
    return 1 if missing else 0
