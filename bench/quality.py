"""Benchmark of zoom quality with the builtin backend: detail, holes and geometry.

Run from the repo root: `python bench/quality.py [--json] [--photos coffee,chelsea,astronaut]
[--window 1280x720] [--out DIR] [--set KEY=VALUE ...] [--picks RUN.json]` (generation settings
other than the defaults, e.g. `--set splat_footprint=1`, `--set zoom_long_side=1280` for the
GPU-size path; `--picks`: zoom where an earlier `--json` run zoomed, so two settings are
compared on the same views).
Everything is seen as the app shows it, in a window of the app's default size (1280x720): for
each photo (scikit-image's real photos), `new` at the default working size, its camera
reframed to the window as `play` does; then 3 successive zooms (factor 4, prompts "a red
flower", "a ladybug", "a dew drop"), each into the pixel of highest local contrast inside the
central half of the current window-sized view (the spot a user would pick; a fixed rule, not
tuned), each asked for with a window-sized C_k (as the app asks; the pipeline makes it at
the working size `generation.sizes` picks). At each zoom camera C_k, at the window's size:
- NIQE and BRISQUE (lower is better) of our render (the world with level k) and of the coarse
  world rendered at the same camera (levels < k: the blurry magnification), and the ratio
  ours / blurry (target <= 0.8). BRISQUE: per view, per-level medians over photos, ratio =
  median of the per-view ratios. NIQE fits a 36-dimensional Gaussian to an image's 96-px
  patches, and a 320x213 view has six: scored alone, the photos themselves resized to that
  size score 17-183 (5-22 at full size). So NIQE scores sets: all views of a level (per-level
  figures) and all views (the ratio), ours and blurry alike; `niqe_photos` is the same set
  score of the input photos resized to the zoom working size, a natural-image reference.
  NIQE is scored twice: on the float renders (`niqe_ratio`, the figure the target was set
  on) and on the 8-bit frames the window shows (`niqe_ratio_8bit`), since NIQE, unlike
  BRISQUE, reads a float render's sub-grey-level smoothness; `bench/niqe_reference.py`
  gives both figures for real photos made into levels of the same sizes. A probe of the
  float figure, `niqe_ratio_noise_probe`: our views plus half a grey level of per-pixel
  noise (invisible at 8 bits) against the clean blurry views; and `niqe_ratio_8bit_dithered`:
  both views as 8-bit frames of a display that dithers (+-1 grey level of TPDF noise, the
  same on both), a question about the renderer, not the levels;
- `seam_255` and `seam_bias_255` (issue 21): our render minus the coarse world's, low-passed
  at 4 px, on a band along the view's edge (1/12 of each side), as the mean absolute value
  and the per-channel mean in 1/255 (`generation.tone.seam_stats`; target <= 1.5 with
  |bias| <= 1), where the coarse world is solid;
- `screen_px_per_splat`: the median spacing of the new level's main-view splats on the
  screen at the level's native scale (its own camera, window-sized): s_native / s_render
  there (target <= 1.25 on the GPU-size path, where a level is made at the window's size);
- hole fraction: pixels with alpha < 0.5 in views orbiting the zoom target by +-15 degrees
  (yaw and pitch), rendering the whole world (target <= 2%);
- median relative depth error of the new level's main-view splats against the coarse
  geometry (the observed median depth), where the coarse world is opaque and no structure
  was inserted (target <= 2%).
With --out, writes the worlds and PNG frames (ours / blurry per level) there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # for iqa; after the repo root

import numpy as np  # noqa: E402

PROMPTS = ("a red flower", "a ladybug", "a dew drop")
ORBIT_DEG = 15.0


def _pick(rgb: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """Pixel of highest local luminance contrast inside the central half of the view, among
    pixels where the world is opaque (a user does not click a hole)."""
    from generation.imaging import blur, luma

    y = luma(rgb)
    contrast = blur((y - blur(y, 1.5)) ** 2, 4.0)
    H, W = y.shape
    mask = np.zeros_like(contrast, bool)
    mask[H // 4: 3 * H // 4, W // 4: 3 * W // 4] = True
    mask &= alpha >= 0.9
    i, j = np.unravel_index(np.argmax(np.where(mask, contrast, -1)), y.shape)
    return j + 0.5, i + 0.5


def _render(camera, levels):
    from engine.lod import build_lod_index
    from generation.stages.observe import render_view

    index = build_lod_index(levels)
    scene = tuple((c, index.links[cid]) for _, chunks in levels for cid, c in chunks.items())
    rgb, alpha, _, _ = render_view(camera, scene)
    return np.clip(rgb, 0, 1), alpha


def _save(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    import iqa

    Image.fromarray(iqa.as_displayed(rgb)).save(path)


def screen_px_per_splat(chunk, camera) -> float:
    """Median on-screen spacing of `chunk`'s splats at `camera`: s_native / s_render."""
    z = camera.points_to_camera(chunk.world_positions())[:, 2]
    ok = z > 0
    return float(np.median(chunk.s_native[ok] / (z[ok] / camera.focal)))


def run_photo(name: str, image: np.ndarray, out: Path | None, config,
              window: tuple[int, int], picks: dict | None = None) -> list[dict]:
    """The photo's new world and its three zooms, scored. `picks` {(photo, level): (u, v)}:
    zoom there instead of at the view's point of highest contrast (`--picks`)."""
    import iqa

    from engine.history import History, Step
    from generation.pipeline import request_at_pixel, run_new, run_zoom
    from generation.stages.aux_views import orbit_camera
    from generation.tone import seam_stats

    nw = run_new(image, name, 0, config)
    history = History()
    chunks: dict[int, object] = dict(enumerate(nw.chunks))
    history.add(Step(0, None, "image", tuple(chunks), camera=nw.camera, prompt=name))
    levels = [(None, dict(chunks))]
    view = nw.camera.reframed(*window, keep="fov_x")  # what `play` opens on
    if out is not None:
        _save(out / f"{name}_level0.png", _render(view, levels)[0])
    rows = []
    for k, prompt in enumerate(PROMPTS, start=1):
        current, current_alpha = _render(view, levels)
        u, v = (picks or {}).get((name, k)) or _pick(current, current_alpha)
        req = request_at_pixel(history, chunks, view, (u, v), prompt, seed=k)
        t0 = time.perf_counter()
        run = run_zoom(req, config)
        seconds = time.perf_counter() - t0
        base = max(chunks) + 1
        new = {base + i: c for i, c in enumerate(run.chunks)}
        chunks.update(new)
        history.add(Step(k, k - 1, "zoom", tuple(new), camera=run.camera, point=req.point,
                         prompt=prompt))
        cam = run.camera  # the working C_k (the level's own camera)
        shown = req.camera.resampled(*window)  # C_k as the window shows it
        blurry, blurry_alpha = _render(shown, levels)
        levels.append((cam, new))
        ours, _ = _render(shown, levels)
        seam = seam_stats(ours, blurry, valid=blurry_alpha >= 0.5)
        feats_ours, feats_blurry = iqa.niqe_features(ours), iqa.niqe_features(blurry)
        feats_8bit = (iqa.niqe_features(iqa.as_displayed(ours)),
                      iqa.niqe_features(iqa.as_displayed(blurry)))
        feats_probe = (iqa.niqe_features(iqa.with_subgrey_noise(ours, seed=k)), feats_blurry)
        feats_dither = (iqa.niqe_features(iqa.as_displayed_dithered(ours, seed=k)),
                        iqa.niqe_features(iqa.as_displayed_dithered(blurry, seed=k)))
        holes = []
        for yaw, pitch in ((ORBIT_DEG, 0), (-ORBIT_DEG, 0), (0, ORBIT_DEG), (0, -ORBIT_DEG)):
            _, a = _render(orbit_camera(cam, np.asarray(req.point), yaw, pitch), levels)
            holes.append(float((a < 0.5).mean()))
        main = run.optimized.chunks[0]
        px_per_splat = screen_px_per_splat(main, shown)
        uv, z = cam.project(main.world_positions())
        iu = np.clip(np.floor(uv[:, 0]).astype(int), 0, cam.width - 1)
        iv = np.clip(np.floor(uv[:, 1]).astype(int), 0, cam.height - 1)
        coarse = run.observed.depth[iv, iu]
        ok = np.isfinite(coarse) & (run.edited.mask[iv, iu] < 0.05)
        depth_err = float(np.median(np.abs(z[ok] - coarse[ok]) / coarse[ok])) if ok.any() else None
        row = {"_niqe_features": (feats_ours, feats_blurry), "_niqe_features_8bit": feats_8bit,
               "_niqe_features_probe": feats_probe, "_niqe_features_dither": feats_dither,
               "photo": name, "level": k, "prompt": prompt, "at": [round(u, 1), round(v, 1)],
               "niqe_patches": len(feats_ours),
               "brisque_ours": iqa.brisque(ours), "brisque_blurry": iqa.brisque(blurry),
               "seam_255": round(seam.mean_abs_255, 3),
               "seam_bias_255": [round(b, 3) for b in seam.bias_255],
               "screen_px_per_splat": round(px_per_splat, 3),
               "working_size": run.backend.get("working_size"),
               "size_rule": run.backend.get("size_rule"),
               "tone_shift_255": run.backend.get("tone_shift_255"),
               "hole_fraction_max": max(holes), "hole_fraction_mean": float(np.mean(holes)),
               "depth_rel_err": depth_err, "zoom_s": round(seconds, 2),
               "edit": run.edited.label, "factor": round(run.factor, 3)}
        rows.append(row)
        print(json.dumps(public(row)), file=sys.stderr)
        if out is not None:
            _save(out / f"{name}_level{k}.png", ours)
            _save(out / f"{name}_level{k}_blurry.png", blurry)
        view = shown
    if out is not None:
        from saves import save_world

        save_world(out / f"{name}.wzs", history, chunks)
    return rows


def parse_window(text: str) -> tuple[int, int] | None:
    """'WIDTHxHEIGHT' -> (width, height), both over 192 (NIQE's 96-px patches at two
    scales), or None."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return (w, h) if min(w, h) > 2 * 96 else None


def public(row: dict) -> dict:
    """The row without its private (non-JSON) fields."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def niqe_sets(rows: list[dict], frames: str = "float") -> tuple[float, float]:
    """(NIQE of our views, NIQE of the blurry views), each scored as one set of patches, of
    the float renders (`frames="float"`), of the 8-bit frames the window shows ("8bit"), or
    of our float renders plus half a grey level of noise against the clean blurry ones
    ("probe", `iqa.with_subgrey_noise`), or of both as a dithering display would show them
    ("dither", `iqa.as_displayed_dithered`)."""
    import iqa

    key = {"float": "_niqe_features", "8bit": "_niqe_features_8bit",
           "probe": "_niqe_features_probe", "dither": "_niqe_features_dither"}[frames]
    ours = np.vstack([r[key][0] for r in rows])
    blurry = np.vstack([r[key][1] for r in rows])
    return iqa.niqe_of_features(ours), iqa.niqe_of_features(blurry)


def photos_niqe(photos: dict[str, np.ndarray], long_side: int) -> float:
    """NIQE of the input photos resized to `long_side`, scored as one set: what natural
    images of the views' size score."""
    import iqa

    from generation.imaging import resize

    small = []
    for image in photos.values():
        h, w = image.shape[:2]
        k = long_side / max(h, w)
        small.append(resize(image / 255.0, round(w * k), round(h * k)))
    return iqa.niqe_pooled(small)


def summarise(rows: list[dict], niqe_photos: float | None = None) -> dict:
    def med(key, level=None):
        vals = [r[key] for r in rows if (level is None or r["level"] == level)
                and r[key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    levels = sorted({r["level"] for r in rows})
    per_level = {}
    for k in levels:
        d = {m: med(m, k) for m in ("brisque_ours", "brisque_blurry", "hole_fraction_max",
                                     "depth_rel_err", "seam_255", "screen_px_per_splat")}
        at_k = [r for r in rows if r["level"] == k]
        d["seam_255_worst"] = round(max(r["seam_255"] for r in at_k), 3)
        d["seam_bias_255_worst"] = round(max(abs(b) for r in at_k for b in r["seam_bias_255"]), 3)
        ours, blurry = niqe_sets(at_k)
        ours8, blurry8 = niqe_sets(at_k, "8bit")
        probe, _ = niqe_sets(at_k, "probe")
        ours_d, blurry_d = niqe_sets(at_k, "dither")
        d.update(niqe_ours=round(ours, 3), niqe_blurry=round(blurry, 3),
                 niqe_ratio=round(ours / blurry, 3), niqe_ratio_8bit=round(ours8 / blurry8, 3),
                 niqe_ratio_noise_probe=round(probe / blurry, 3),
                 niqe_ratio_8bit_dithered=round(ours_d / blurry_d, 3),
                 brisque_ratio=round(d["brisque_ours"] / d["brisque_blurry"], 3))
        per_level[str(k)] = d
    ours, blurry = niqe_sets(rows)
    ours8, blurry8 = niqe_sets(rows, "8bit")
    brisque_ratio = statistics.median(r["brisque_ours"] / r["brisque_blurry"] for r in rows)
    return {
        "per_level": per_level,
        "niqe_ours": round(ours, 3), "niqe_blurry": round(blurry, 3),
        "niqe_ratio": round(ours / blurry, 3), "brisque_ratio": round(brisque_ratio, 3),
        "niqe_ours_8bit": round(ours8, 3), "niqe_blurry_8bit": round(blurry8, 3),
        "niqe_ratio_8bit": round(ours8 / blurry8, 3),
        "niqe_photos": None if niqe_photos is None else round(niqe_photos, 3),
        "niqe_patches": int(sum(r["niqe_patches"] for r in rows)),
        "seam_255_median": med("seam_255"),
        "seam_255_worst": round(max(r["seam_255"] for r in rows), 3),
        "seam_bias_255_worst": round(max(abs(b) for r in rows for b in r["seam_bias_255"]), 3),
        "screen_px_per_splat_median": med("screen_px_per_splat"),
        "hole_fraction_median": med("hole_fraction_max"),
        "hole_fraction_worst": round(max(r["hole_fraction_max"] for r in rows), 4),
        "depth_rel_err_median": med("depth_rel_err"),
        "zoom_s_median": med("zoom_s"),
        "targets": {"ratio": 0.8, "hole_fraction": 0.02, "depth_rel_err": 0.02,
                    "seam_255": 1.5, "seam_bias_255": 1.0, "screen_px_per_splat_gpu": 1.25},
        "photos": sorted({r["photo"] for r in rows}), "orbit_deg": ORBIT_DEG,
        "rows": [public(r) for r in rows],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--photos", default="coffee,chelsea,astronaut")
    ap.add_argument("--out", default=None, help="folder for worlds and PNG frames")
    ap.add_argument("--window", default="1280x720",
                    help="the window the views are seen in (default: the app's, 1280x720)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a generation setting other than the default (repeatable)")
    ap.add_argument("--picks", default=None, metavar="RUN.json",
                    help="zoom at the points an earlier --json run zoomed at (its rows' "
                         "\"at\"), not at each view's point of highest contrast: a setting "
                         "that changes a level changes the next pick, and so the views compared")
    args = ap.parse_args()
    missing = [m for m in ("skvideo", "brisque", "cv2", "skimage")
               if importlib.util.find_spec(m) is None]
    if missing:  # say so before minutes of zooms, not after
        ap.error(f"missing {', '.join(missing)}: run `make bench` or "
                 "`.venv/bin/pip install -e '.[dev,bench]'` first")
    import skimage.data

    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    from generation.config import GenerationConfig
    from generation.cores import usable_cores

    bad = [item for item in args.set if "=" not in item]
    if bad:
        ap.error(f"--set takes KEY=VALUE, got {bad[0]!r}")
    settings = dict(item.split("=", 1) for item in args.set)
    try:
        config = GenerationConfig.from_settings(settings,
                                                GenerationConfig(num_threads=usable_cores()))
    except ValueError as exc:  # ConfigError: an unknown key or a value out of range
        ap.error(str(exc))
    window = parse_window(args.window)
    if window is None:
        ap.error(f"--window takes WIDTHxHEIGHT, both over 192, got {args.window!r}")
    picks = None
    if args.picks:
        try:
            earlier = json.loads(Path(args.picks).read_text())
            picks = {(r["photo"], int(r["level"])): tuple(map(float, r["at"]))
                     for r in earlier["rows"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            ap.error(f"--picks: {args.picks} is not a --json run of this bench ({exc})")
    rows = []
    photos = {name: getattr(skimage.data, name)() for name in args.photos.split(",")}
    for name, image in photos.items():
        rows += run_photo(name, image, out, config, window, picks)
    summary = summarise(rows, photos_niqe(photos, max(window)))
    summary["settings"] = settings
    summary["picks_from"] = args.picks
    summary["window"] = list(window)
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
