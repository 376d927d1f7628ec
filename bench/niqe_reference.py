"""What NIQE says of natural photos magnified as a zoom's levels are: the reference for
`bench/quality.py`'s NIQE ratio (issue 21).

Run from the repo root: `python bench/niqe_reference.py [--json] [--level 480] [--window 1280x720]
[--photos coffee,astronaut,rocket,stereo_motorcycle]`.
`bench/quality.py` scores a level (made at `--level` pixels across, 480 on the CPU path) shown
in the window, against its parent magnified at the same camera (a level 4x coarser, so
`--level`/4 pixels across the same view). Here the level's content is a real photo instead
of generated content: scikit-image's photos (coffee, astronaut, rocket, motorcycle; each
at least `--level` pixels wide, centre-cropped to the window's shape), resized to `--level`
and to `--level`/4 pixels across, each made into scene E0 by the pipeline of `wonderzoom new`
(`generation.pipeline.run_new`, at that working size) and rendered in the window by the same
renderer as the benchmark; and, as a second reconstruction, the two sizes magnified bicubically.
Printed for each: NIQE of the fine and of the coarse set (each set scored as one, as
`bench/quality.py` does) and their ratio, on the float frames and on the 8-bit frames the
window shows (`iqa.as_displayed`). A ratio above 0.8 here is a ratio that a level of
natural content at that size does not reach. And a probe of the float figure: the fine set
with half a grey level of per-pixel noise added (`iqa.with_subgrey_noise`, invisible on an
8-bit screen), scored against the clean coarse set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # for iqa and quality; after the root

import numpy as np  # noqa: E402

PHOTOS = ("coffee", "astronaut", "rocket", "stereo_motorcycle")
# RGB photos that ship with scikit-image (no download)
BUNDLED = (*PHOTOS, "chelsea", "retina", "hubble_deep_field", "immunohistochemistry")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)


def crop_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The largest centred crop of `image` with the aspect `width`:`height`."""
    h, w = image.shape[:2]
    if w * height >= h * width:
        cw = round(h * width / height)
        x = (w - cw) // 2
        return image[:, x:x + cw]
    ch = round(w * height / width)
    y = (h - ch) // 2
    return image[y:y + ch]


def rendered(image: np.ndarray, long_side: int, window: tuple[int, int], config):
    """`image` made into scene E0 at `long_side` pixels across and rendered in `window`,
    framed as `play` opens it."""
    from dataclasses import replace

    from generation.pipeline import run_new
    from quality import _render

    nw = run_new(image, "", 0, replace(config, new_long_side=long_side))
    view = nw.camera.reframed(*window, keep="fov_x")
    return _render(view, [(None, dict(enumerate(nw.chunks)))])[0]


def bicubic(image: np.ndarray, long_side: int, window: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    k = long_side / max(h, w)
    small = cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, window, interpolation=cv2.INTER_CUBIC).astype(np.float64) / 255.0


def scores(fine: list[np.ndarray], coarse: list[np.ndarray]) -> dict:
    import iqa

    out = {}
    for frames, convert in (("float", lambda x: x), ("8bit", iqa.as_displayed)):
        a = iqa.niqe_pooled([convert(x) for x in fine])
        b = iqa.niqe_pooled([convert(x) for x in coarse])
        out[frames] = {"niqe_fine": round(a, 3), "niqe_coarse": round(b, 3),
                       "ratio": round(a / b, 3)}
    # the probe: the fine set with half a grey level of noise, against the clean coarse set
    a = iqa.niqe_pooled([iqa.with_subgrey_noise(x, seed) for seed, x in enumerate(fine)])
    out["float_fine_plus_subgrey_noise"] = {"niqe_fine": round(a, 3),
                                            "ratio": round(a / out["float"]["niqe_coarse"], 3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--level", type=int, default=480,
                    help="the level's working size, pixels across (default 480, the CPU path)")
    ap.add_argument("--window", default="1280x720", help="the window (default 1280x720)")
    ap.add_argument("--photos", default=",".join(PHOTOS),
                    help="scikit-image photos to use (default: %(default)s; `retina` is the "
                         "one bundled photo at least 1280 pixels wide)")
    args = ap.parse_args()
    missing = [m for m in ("skvideo", "cv2", "skimage") if importlib.util.find_spec(m) is None]
    if missing:
        ap.error(f"missing {', '.join(missing)}: run `make bench` or "
                 "`.venv/bin/pip install -e '.[dev,bench]'` first")
    if args.level < 64:
        ap.error("--level must be at least 64 pixels (its parent is a quarter of it)")
    from generation.config import GenerationConfig
    from generation.cores import usable_cores

    from quality import parse_window

    window = parse_window(args.window)
    if window is None:
        ap.error(f"--window takes WIDTHxHEIGHT, both over 192, got {args.window!r}")
    config = GenerationConfig(num_threads=usable_cores())
    names = [n for n in args.photos.split(",") if n]
    unknown = [n for n in names if n not in BUNDLED]
    if unknown or not names:
        ap.error(f"--photos takes names from {', '.join(BUNDLED)}, got {args.photos!r}")
    crops = {}
    for name in names:
        crop = crop_to(_photo(name), *window)
        if max(crop.shape[:2]) >= args.level:  # the fine level is never a magnified photo
            crops[name] = crop
    if not crops:
        ap.error(f"no photo is {args.level} pixels wide")
    coarse_side = max(16, args.level // 4)
    result = {"level": args.level, "parent": coarse_side, "window": list(window),
              "photos": sorted(crops)}
    for how, make in (("renderer", lambda im, s: rendered(im, s, window, config)),
                      ("bicubic", lambda im, s: bicubic(im, s, window))):
        fine = [make(im, args.level) for im in crops.values()]
        coarse = [make(im, coarse_side) for im in crops.values()]
        result[how] = scores(fine, coarse)
        print(json.dumps({how: result[how]}), file=sys.stderr)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
