"""Finding and loading Hugging Face models offline, and the device / dtype policy.

Owns: `ModelUnavailable` (one line naming the stage, the model and its config key, and the
command that fetches it), `is_path` / `status` (is a model id or folder on this machine?),
`load` (`cls.from_pretrained` with `local_files_only=True`, errors turned into one line),
`Runtime` (torch device and dtype from the config; diffusers memory options),
`accepted_kwargs` (calling library functions whose keywords differ between versions) and the
image conversions every backend needs.
Does not own: which model a stage uses (the TOML config) or what a model computes.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.errors import UserError
from generation.config import DEVICE_SETTINGS, GenerationConfig, missing_device

# every model backend accepts these (GenerationConfig.options_for adds them), same defaults
DEVICE_OPTIONS = {k: getattr(GenerationConfig, k) for k in DEVICE_SETTINGS}


class ModelUnavailable(UserError, ValueError):
    """A configured model cannot be loaded (the message is one line)."""


def is_path(model: str) -> bool:
    """A folder (absolute, relative with ./ or ../, ~, or an existing path) rather than a hub id."""
    return (model.startswith(("/", "./", "../", "~")) or model.strip("/").count("/") > 1
            or Path(model).expanduser().exists())


def fetch_command(model: str) -> str:
    return f"hf download {model}"


def status(model: str) -> tuple[bool, str]:
    """(present, where or why not) for a model id or folder, without loading it."""
    if not model:
        return False, "no model configured"
    if is_path(model):
        p = Path(model).expanduser()
        if not p.is_dir():
            return False, f"no such folder: {p}"
        if not any((p / f).exists() for f in ("config.json", "model_index.json",
                                               "preprocessor_config.json")):
            return False, f"{p} holds no config.json or model_index.json"
        return True, str(p)
    try:
        from huggingface_hub import snapshot_download

        return True, snapshot_download(model, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        if type(exc).__name__ == "HFValidationError":
            return False, "not a model id (namespace/name) or an existing folder"
        return False, "not in the Hugging Face cache"


def missing_message(stage: str, key: str, model: str, why: str) -> str:
    fetch = "" if is_path(model) else f"; fetch it with: {fetch_command(model)}"
    return f"stage {stage}: model {model!r} (config key stages.{stage}.{key}) is unavailable: {why}{fetch}"


def quiet_libraries() -> None:
    """No loader progress bars or advice on stderr: the CLI and the HUD show stage progress.
    Call before importing diffusers / transformers (their import-time notices read the env)."""
    import importlib

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

    for name in ("transformers", "diffusers"):
        try:
            logging = importlib.import_module(f"{name}.utils.logging")
        except ImportError:
            continue
        logging.set_verbosity_error()
        logging.disable_progress_bar()


def load(cls: Any, model: str, stage: str, key: str = "model", **kwargs: Any) -> Any:
    """`cls.from_pretrained(model, local_files_only=True, **kwargs)`, or ModelUnavailable."""
    quiet_libraries()
    present, where = status(model)
    if not present:
        raise ModelUnavailable(missing_message(stage, key, model, where))
    try:
        return cls.from_pretrained(where, local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a hub/loader stack trace is not for users
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelUnavailable(f"stage {stage}: model {model!r} (config key stages.{stage}.{key}) "
                               f"could not be loaded as {getattr(cls, '__name__', cls)}: {first}"
                               ) from None


@dataclass(frozen=True)
class Runtime:
    """Where and in which precision a backend runs."""

    device: str = "auto"
    dtype: str = "auto"
    attention_slicing: bool = False
    cpu_offload: bool = False

    @property
    def torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        available = torch.cuda.is_available()
        problem = missing_device(self.device, available,
                                 torch.cuda.device_count() if available else 0)
        if problem:
            raise ModelUnavailable(problem)
        return torch.device(self.device)

    @property
    def torch_dtype(self):
        import torch

        if self.dtype == "auto":
            return torch.float16 if self.torch_device.type == "cuda" else torch.float32
        return getattr(torch, self.dtype)

    def prepare_pipeline(self, pipe: Any) -> Any:
        """Move a diffusers pipeline to the device, with the memory options."""
        if self.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        if self.cpu_offload and self.torch_device.type == "cuda":
            try:
                pipe.enable_model_cpu_offload()
            except ImportError:
                raise ModelUnavailable("cpu_offload = true needs the 'accelerate' package "
                                       "(pip install accelerate)") from None
        else:
            pipe.to(self.torch_device)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        return pipe

    def generator(self, seed: int):
        import torch

        return torch.Generator("cpu").manual_seed(int(seed))


def runtime_from(options: dict[str, Any]) -> Runtime:
    return Runtime(**{k: options[k] for k in DEVICE_OPTIONS if k in options})


def accepted_kwargs(fn: Callable[..., Any], **candidates: Any) -> dict[str, Any]:
    """The `candidates` that `fn` takes as keywords and that are not None (library functions
    rename or drop keywords between versions: pass every spelling, keep what fits)."""
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in candidates.items() if k in accepted and v is not None}


# ---- images -----------------------------------------------------------------------------
def to_pil(rgb: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def from_pil_or_array(image: Any) -> np.ndarray:
    """[H, W, 3] float64 in [0, 1] from a PIL image or an array in [0, 1] / [0, 255]."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float64) / 255.0
    arr = np.asarray(arr, np.float64)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def multiple_of(n: int, m: int) -> int:
    """`n` rounded to the nearest positive multiple of `m`."""
    return max(m, int(round(n / m)) * m)
