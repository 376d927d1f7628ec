"""The `hook` backend of the auxiliary-view stage: views from a user's function.

A camera-controlled video model (Gen3C in the paper) renders the whole orbit at once from the
main view; we have no such model offline, so this backend calls a function the config names,
`hook = "package.module:function"`, with `(rgb [H, W, 3], depth [H, W], camera, cameras,
caption)` and expects one [H, W, 3] image in [0, 1] per camera. Those images replace the
warp-and-fill images; depth is still the warp's where it is known and the depth stage's
registered fill elsewhere, so the optimiser gets the same kind of targets.
Does not own: the model (the user's function loads and runs it).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from generation.backends.hf import DEVICE_OPTIONS, ModelUnavailable
from generation.stages import aux_views as aux_stage


def resolve(spec: str) -> Callable[..., Any]:
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ModelUnavailable(f"stage aux_views: hook = {spec!r} (config key "
                               "stages.aux_views.hook) must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ModelUnavailable(f"stage aux_views: hook {spec!r} (config key stages.aux_views.hook)"
                               f" cannot be imported: {exc}") from None
    if not callable(fn):
        raise ModelUnavailable(f"stage aux_views: hook {spec!r} is not a function")
    return fn


@aux_stage.REGISTRY.register("hook")
class HookViews(aux_stage.WarpInpaint):
    OPTIONS = {"hook": "", **DEVICE_OPTIONS}

    def __init__(self, **options: Any) -> None:
        self.spec = str(options.get("hook", ""))
        self.fn = resolve(self.spec)
        self._pending: dict[int, np.ndarray] = {}

    def __call__(self, inp: aux_stage.AuxViewsInput) -> aux_stage.AuxViewsOutput:
        cams = [aux_stage.orbit_camera(inp.camera, inp.target, yaw, pitch)
                for yaw, pitch in aux_stage.orbit_offsets(inp.count, inp.angle_deg)]
        images = list(self.fn(inp.rgb, inp.depth, inp.camera, cams, inp.caption))
        if len(images) != len(cams):
            raise ValueError(f"aux_views hook {self.spec!r} returned {len(images)} images for "
                             f"{len(cams)} cameras")
        views = []
        for cam, img in zip(cams, images):
            img = np.asarray(img, np.float64)
            if img.shape != (cam.height, cam.width, 3) or not np.isfinite(img).all():
                raise ValueError(f"aux_views hook {self.spec!r} returned an image of shape "
                                 f"{img.shape}; expected ({cam.height}, {cam.width}, 3), finite")
            self._pending[id(cam)] = np.clip(img, 0.0, 1.0)
            views.append(self.view(inp, cam))
        return aux_stage.AuxViewsOutput(tuple(views))

    def fill(self, inp, cam, rgb: np.ndarray, unknown: np.ndarray) -> np.ndarray:
        return self._pending.pop(id(cam))
