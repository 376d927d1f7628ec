"""WonderZoom engine: the world model, LoD modulation, the zoom maths and the renderer.

Owns: splat data (`SplatChunk`), cameras and the fly/zoom controller, the history tree of
steps, the ECS-like `World` with its scene graph and deferred commands, the frame loop, the
LoD index and the scale-aware opacity modulation reference, where a zoom happens
(`engine.zoom`), the user-error base class (`engine.errors`) and the real-time renderer
(`engine.render`).

Does not own: file formats (`saves/`), model inference (`generation/`), windows and input
(`ui/`). This package imports none of them; the `cli` package wires them together.
"""

from engine.camera import Camera
from engine.history import History, Step
from engine.splats import SplatChunk, SplatValidationError

__all__ = ["Camera", "History", "Step", "SplatChunk", "SplatValidationError"]
