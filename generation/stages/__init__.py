"""The stages of one zoom, one module each, in pipeline order:

observe -> context -> super_resolve -> edit -> masks -> harmonize -> depth -> aux_views ->
splat_init -> optimize

Each module has frozen `*Input` / `*Output` dataclasses, a `REGISTRY` of backends by name
(`builtin` = the offline CPU backend; diffusers / transformers backends register themselves the
same way in their own modules) and a `run(inp, backend="builtin", **options)` entry point.
`generation.pipeline` chains them; this package does not own the chaining, progress or files.
"""

from __future__ import annotations

STAGE_MODULES = ("observe", "context", "super_resolve", "edit", "masks", "harmonize", "depth",
                 "aux_views", "splat_init", "optimize")


def load_backends() -> None:
    """Import every stage module so its backends are registered (heavy imports stay lazy)."""
    import importlib

    for name in STAGE_MODULES:
        importlib.import_module(f"generation.stages.{name}")
    from generation import backends  # the model backends register into the same registries

    backends.load()
