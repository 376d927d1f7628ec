"""Growing scene E0 (`wonderzoom new`) as a request a service runs, like a zoom.

Owns: `NewRequest` and `NewResult` (frozen, plain data: they cross processes and machines
like `engine.messages.ZoomRequest` / `ZoomResult`) and `grow`, the runner a service's worker
calls for a `NewRequest`: `generation.pipeline.run_new` with the request's settings over the
worker's config, as a `NewResult` (a cancellation or a failed stage is a failed result with
one line).
Does not own: the pipeline (`generation.pipeline`), services (`generation.service`,
`generation.cluster`) or writing the world file (`cli.new`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from engine.camera import Camera
from engine.splats import SplatChunk


@dataclass(frozen=True, eq=False)
class NewRequest:
    request_id: int
    image: np.ndarray  # [H, W, 3] uint8, the photo at any size
    prompt: str = ""
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)  # GenerationConfig overrides
    level: int = 0  # the scale level of the result (a new world starts at 0)


@dataclass(frozen=True, eq=False)
class NewResult:
    request_id: int
    ok: bool
    camera: Camera | None = None  # C_0
    chunks: Mapping[int, SplatChunk] = field(default_factory=dict)  # level 0, in order
    working_size: tuple[int, int] = (0, 0)  # (W, H) of the working image
    backend: Mapping[str, Any] = field(default_factory=dict)  # name, version, seed, settings
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage
    error: str = ""  # one line when not ok
    request: NewRequest | None = None


def grow(request: NewRequest, config: Any, progress: Callable[[str, float], None] | None,
         cancel: Callable[[], bool] | None) -> NewResult:
    """`run_new` for `request` on the worker's `config` (a `GenerationConfig` or None)."""
    from generation.config import GenerationConfig
    from generation.pipeline import Cancelled, one_line, run_new

    try:
        cfg = GenerationConfig.from_settings(request.settings, base=config)
        world = run_new(request.image, request.prompt, int(request.seed), cfg, progress, cancel)
    except Cancelled:
        return NewResult(request.request_id, False, error="cancelled")
    except MemoryError:
        return NewResult(request.request_id, False, error="out of memory")
    except Exception as exc:  # a failed stage is a failed result with one line
        return NewResult(request.request_id, False, error=one_line(exc))
    h, w = world.rgb.shape[:2]
    return NewResult(request.request_id, True, camera=world.camera,
                     chunks=dict(enumerate(world.chunks)), working_size=(int(w), int(h)),
                     backend=dict(world.backend), timings=dict(world.timings))
