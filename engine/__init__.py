"""WonderZoom engine: the world model, LoD modulation and (later) the real-time renderer.

Owns: splat data (`SplatChunk`), cameras, the history tree of steps, the ECS-like `World`
with its scene graph and deferred commands, the LoD index and the scale-aware opacity
modulation reference.

Does not own: file formats (`saves/`), model inference (`generation/`), windows and input
(`ui/`). This package imports none of them; `main.py` wires them together.
"""

from engine.camera import Camera
from engine.history import History, Step
from engine.splats import SplatChunk, SplatValidationError

__all__ = ["Camera", "History", "Step", "SplatChunk", "SplatValidationError"]
