"""Benchmark of the differentiable rasterizer and the per-scale splat optimisation.

Run from the repo root: `python bench/optimize.py [--json] [--iterations N]`.
Prints (with --json, as one line): `step_s` (median forward + backward, 256x256, 50k splats,
CPU), `step_s_cuda` (the same on CUDA through gsplat, null without a GPU), `fit_psnr` (dB,
optimised splats re-rendered vs the target: skimage's coffee photo resized to 256^2, splats
initialised pixel-aligned on a smooth synthetic depth, the default iteration count) and
`fit_s` (seconds the fit took; `optimize_splats` leaves one core free, so on a 2-core machine it
runs on one thread: `step_s_1thread` is the step time there). Targets: step_s <= 0.5,
fit_psnr >= 30.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.camera import Camera  # noqa: E402
from generation.raster import SplatTensors, rasterize  # noqa: E402
from generation.splat_opt import (OptimizeConfig, View, init_pixel_aligned,  # noqa: E402
                                  optimize_splats, psnr)

SIZE = 256
STEP_SPLATS = 50_000


def _camera() -> Camera:
    return Camera.look_at([0.0, 0.0, -3.0], [0.0, 0.0, 0.0], fov_y_deg=50.0, width=SIZE,
                          height=SIZE)


def _depth() -> np.ndarray:
    """[S, S] a slanted, gently curved surface: 2.5 (top) .. 3.4 (bottom), small waves."""
    v, u = (np.mgrid[0:SIZE, 0:SIZE] + 0.5) / SIZE
    return 2.5 + 0.6 * v + 0.2 * u + 0.05 * np.sin(2 * np.pi * 2 * u) * np.cos(2 * np.pi * v)


def _coffee() -> np.ndarray:
    """[S, S, 3] float in [0, 1]: skimage.data.coffee() resized (Lanczos)."""
    from PIL import Image
    from skimage.data import coffee

    return np.asarray(Image.fromarray(coffee()).resize((SIZE, SIZE), Image.LANCZOS),
                      np.float64) / 255.0


def step_time(device: str, repeats: int = 7) -> float:
    """Median seconds of one forward + backward (L1 loss) with 50k splats at 256x256."""
    cam = _camera()
    rng = np.random.default_rng(0)
    chunk = init_pixel_aligned(cam, _depth(), _coffee())
    chunk = chunk.take(np.sort(rng.choice(len(chunk), STEP_SPLATS, replace=False)))
    st = SplatTensors.from_chunks([chunk], origin=cam.position, device=device)
    quats = st.quats.clone().requires_grad_(True)
    log_scales = st.log_scales.clone().requires_grad_(True)
    # opacities spread like a half-optimised level (0.1 .. 0.9)
    logits = torch.as_tensor(rng.uniform(-2.2, 2.2, len(chunk)), dtype=torch.float32,
                             device=device).requires_grad_(True)
    target = torch.as_tensor(rng.uniform(0, 1, (SIZE, SIZE, 3)), dtype=torch.float32,
                             device=device)
    backend = "gsplat" if device == "cuda" else "torch"

    def step() -> None:
        out = rasterize(st.means, quats, log_scales.exp(), logits.sigmoid(), st.colors, cam,
                        origin=st.origin, backend=backend, median_depth=False)
        (out.rgb - target).abs().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fit(iterations: int | None) -> tuple[float, float, int]:
    """(psnr dB, seconds, splats) of init + optimise on the coffee photo."""
    cam = _camera()
    target = _coffee()
    config = OptimizeConfig() if iterations is None else OptimizeConfig(iterations=iterations)
    t = time.perf_counter()
    chunk = init_pixel_aligned(cam, _depth(), target)
    result = optimize_splats(chunk, View(cam, target), config=config)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        st = SplatTensors.from_chunks(list(result.chunks), origin=cam.position)
        image = st.render(cam).rgb.clamp(0, 1)
    return psnr(image, torch.as_tensor(target, dtype=torch.float32)), seconds, len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--iterations", type=int, default=None,
                        help="fit iterations (default: OptimizeConfig's)")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    step_s = step_time("cpu")
    torch.set_num_threads(1)  # what optimize_splats uses on a 2-core machine (one core left)
    step_s_1t = step_time("cpu")
    torch.set_num_threads(threads)
    step_s_cuda = step_time("cuda") if torch.cuda.is_available() else None
    fit_psnr, fit_s, n = fit(args.iterations)
    report = {
        "step_s": round(step_s, 4),
        "step_s_cuda": None if step_s_cuda is None else round(step_s_cuda, 5),
        "fit_psnr": round(fit_psnr, 2) if math.isfinite(fit_psnr) else fit_psnr,
        "fit_s": round(fit_s, 2),
        "step_threads": threads,
        "step_s_1thread": round(step_s_1t, 4),
        "fit_splats": n,
        "fit_iterations": args.iterations or OptimizeConfig().iterations,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:>16}: {v}")
        print("targets: step_s <= 0.5, fit_psnr >= 30")


if __name__ == "__main__":
    main()
