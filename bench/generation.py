"""Benchmark of generation speed with the builtin backend on this machine's CPU.

Run from the repo root: `python bench/generation.py [--json] [--repeats N]`.
Prints (one JSON line with --json): `new_s` (median seconds of `wonderzoom new` on a 512-px
photo: decode + the pipeline at its default working size + writing the world file),
`zoom_s` (median seconds of one `wonderzoom zoom` step with a prompt: building the request
from the loaded world, the pipeline, appending the step), per-stage medians, splat counts,
threads and `peak_rss_mib` (this process). Targets: new_s <= 45, zoom_s <= 30.
Runs in-process like the CLI (all cores); the service's worker uses all cores but one.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def _photo(path: Path) -> None:
    from PIL import Image
    from skimage.data import coffee

    Image.fromarray(coffee()).resize((512, 384), Image.LANCZOS).save(path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from engine.history import History, Step
    from generation.config import GenerationConfig
    from generation.cores import usable_cores
    from generation.image_input import load_image
    from generation.pipeline import request_at_pixel, run_new, run_zoom
    from saves import WorldWriter, load_world, save_world

    threads = usable_cores()
    config = GenerationConfig(num_threads=threads)
    tmp = Path(tempfile.mkdtemp(prefix="wz-bench-"))
    img = tmp / "coffee512.png"
    _photo(img)
    new_s, zoom_s, new_stages, zoom_stages = [], [], [], []
    world = tmp / "w.wzs"
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        nw = run_new(load_image(img), "a coffee cup", 0, config)
        h = History()
        ids = tuple(range(len(nw.chunks)))
        h.add(Step(0, None, "image", ids, camera=nw.camera, prompt="a coffee cup",
                   backend=nw.backend, timings=nw.timings))
        save_world(world, h, dict(zip(ids, nw.chunks)))
        new_s.append(time.perf_counter() - t0)
        new_stages.append(nw.timings)
    n_new = sum(len(c) for c in nw.chunks)
    n_zoom = 0
    for i in range(args.repeats):
        w = tmp / f"z{i}.wzs"
        shutil.copy(world, w)
        t0 = time.perf_counter()
        loaded = load_world(w)
        view = loaded.history.steps[0].camera
        req = request_at_pixel(loaded.history, loaded.chunks, view,
                               (view.width * 0.45, view.height * 0.4), "a ladybug", seed=i)
        run = run_zoom(req, config)
        with WorldWriter.open(w) as writer:
            base = max(writer.chunk_ids) + 1
            ids = tuple(range(base, base + len(run.chunks)))
            writer.append_step(Step(1, 0, "zoom", ids, camera=run.camera, point=req.point,
                                    prompt=req.prompt, backend=dict(run.backend),
                                    timings=dict(run.timings)), dict(zip(ids, run.chunks)))
        zoom_s.append(time.perf_counter() - t0)
        zoom_stages.append(run.timings)
        n_zoom = sum(len(c) for c in run.chunks)
    shutil.rmtree(tmp, ignore_errors=True)

    def med(rows):
        return {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}

    out = {
        "new_s": round(statistics.median(new_s), 2), "zoom_s": round(statistics.median(zoom_s), 2),
        "new_runs_s": [round(x, 2) for x in new_s], "zoom_runs_s": [round(x, 2) for x in zoom_s],
        "targets": {"new_s": 45, "zoom_s": 30},
        "new_stages_s": med(new_stages), "zoom_stages_s": med(zoom_stages),
        "new_splats": n_new, "zoom_splats": n_zoom, "threads": threads,
        "working_size": {"new": config.new_long_side, "zoom": config.zoom_long_side},
        "iterations": {"new": config.new_iterations, "zoom": config.zoom_iterations},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
