"""Reading the user's input image safely and resizing it to the working size.

Owns: `load_image` (JPEG / PNG / WebP only, bounded file size and pixel count, EXIF rotation
applied, an embedded colour profile converted to sRGB, alpha composited on white, always RGB
uint8) and `resize_long_side`.
Does not own: what the pipeline does with the pixels.
Every refusal is an `ImageInputError` whose message is one line naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from engine.errors import UserError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_FILE_BYTES = 64 << 20  # 64 MiB
MAX_PIXELS = 64_000_000  # decoded width * height
MIN_SIDE = 8


class ImageInputError(UserError, ValueError):
    """The input is not an image we accept (the message is one line)."""


def load_image(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:  # [H, W, 3] uint8
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ImageInputError(f"{p}: no such file")
    if not p.is_file():
        raise ImageInputError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise ImageInputError(f"{p}: the file is empty")
    if size > max_bytes:
        raise ImageInputError(f"{p}: {size / 2**20:.0f} MiB is too large "
                              f"(limit {max_bytes / 2**20:.0f} MiB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if im.format not in ACCEPTED_FORMATS:
                    raise ImageInputError(f"{p}: {im.format} images are not supported "
                                          f"(use JPEG, PNG or WebP)")
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageInputError(f"{p}: {w}x{h} pixels is too large "
                                          f"(limit {max_pixels / 1e6:.0f} megapixels)")
                if min(w, h) < MIN_SIDE:
                    raise ImageInputError(f"{p}: {w}x{h} is too small (at least "
                                          f"{MIN_SIDE} pixels a side)")
                icc = im.info.get("icc_profile")
                im = ImageOps.exif_transpose(im)
                if im.mode.startswith("I") or im.mode == "F":  # 16-bit (or 32-bit) grey
                    im = Image.fromarray(grey_to_uint8(np.asarray(im)), "L")
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(white, rgba)
                if icc:
                    im = to_srgb(im, icc)
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"{p}: not an image we can read (use JPEG, PNG or WebP)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated / corrupt data
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageInputError(f"{p}: cannot decode the image ({first})") from None
    return np.ascontiguousarray(rgb)


def to_srgb(im, icc: bytes):
    """`im` converted from its embedded ICC profile to sRGB, the space every renderer here
    writes (a phone's Display P3 photo read as sRGB comes out duller). Modes other than RGB,
    CMYK and grey (alpha already composited, a palette) are made RGB first. An image already
    in sRGB, or a profile littlecms cannot use, is returned as it is (a broken profile is not
    worth refusing the photo)."""
    import io

    from PIL import ImageCms

    if im.mode not in ("RGB", "CMYK", "L"):
        im = im.convert("RGB")
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(source) or "").lower().replace(" ", ""):
            return im
        return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"),
                                         renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                         outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im


def grey_to_uint8(values: np.ndarray) -> np.ndarray:  # [H, W] any numeric -> [H, W] uint8
    """A high-bit-depth grey image by its real range: a 16-bit PNG spans 0..65535 (PIL's
    own conversion clips everything above 255 to white)."""
    v = np.asarray(values, np.float64)
    top = float(np.nanmax(v)) if v.size else 0.0
    full = 255.0 if top <= 255 else (65535.0 if top <= 65535 else top)
    return np.clip(np.rint(v * (255.0 / full)), 0, 255).astype(np.uint8)


def resize_long_side(rgb: np.ndarray,  # [H, W, 3] uint8
                     long_side: int) -> np.ndarray:  # [h, w, 3] uint8, aspect kept
    """Resize (Lanczos when shrinking, bicubic when growing) so max(h, w) == long_side."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    nw, nh = max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))
    if (nw, nh) == (w, h):
        return rgb
    method = Image.LANCZOS if scale < 1 else Image.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize((nw, nh), method), dtype=np.uint8)
