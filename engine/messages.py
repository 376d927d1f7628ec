"""Messages that cross threads and processes: zoom requests, progress and results.

Owns: the frozen dataclasses the frame loop and a generator exchange through queues, and the
limits every sender checks the same way (`MAX_PROMPT_CHARS`).
Does not own: how a generator produces a result (`generation/`), how a request is built
(`engine.zoom`) or how the frame loop applies a result (`engine.scene.append_level`). They
are plain data so they pickle across processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from engine.camera import Camera
from engine.splats import SplatChunk

MAX_PROMPT_CHARS = 2000  # the app's prompt box, `wonderzoom zoom --prompt` and the pipeline


@dataclass(frozen=True, eq=False)
class Observation:
    """The old world rendered at C_i, for generators that have no renderer of their own."""

    rgb: np.ndarray  # [H, W, 3] float in [0, 1] at C_i's size
    depth: np.ndarray  # [H, W] camera depth; nan where nothing solid is seen


@dataclass(frozen=True)
class ZoomRequest:
    request_id: int
    parent_step: int  # the step the zoom refines (the head when it was asked)
    camera: Camera  # C_i: looks at the picked point with a narrower frustum
    point: tuple[float, float, float]  # picked world point
    prompt: str
    seed: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)  # GenerationConfig overrides
    # the existing world C_i can see: (chunk, its LoD links) pairs, frustum-culled by the sender
    scene: tuple = ()
    level: int = 1  # the scale level the result will be (parent level + 1)
    # prompts of the steps on the path to the parent, root first (the context stage's history)
    context: tuple[str, ...] = ()
    observation: Observation | None = None  # only for generators that ask for it


@dataclass(frozen=True)
class ProgressEvent:
    request_id: int
    stage: str  # e.g. "observe", "super-resolve", "optimize"
    fraction: float  # progress of the whole request in [0, 1]
    elapsed_s: float = 0.0
    working_size: tuple[int, int] | None = None  # the level's size in pixels, once known
    size_rule: str = ""  # why that size, e.g. "CPU limit" (`generation.sizes`)


@dataclass(frozen=True)
class ZoomResult:
    request_id: int
    ok: bool
    chunks: Mapping[int, SplatChunk] = field(default_factory=dict)  # the new level, in order
    backend: Mapping[str, Any] = field(default_factory=dict)  # name, version, seed, settings
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage
    error: str = ""  # one line when not ok
    request: ZoomRequest | None = None
