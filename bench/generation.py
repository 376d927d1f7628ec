"""Benchmark of generation speed with the builtin backend on this machine's CPU.

Run from the repo root: `python bench/generation.py [--json] [--repeats N] [--baseline]`.
Prints (one JSON line with --json): `new_s` (median seconds of `wonderzoom new` on a 512-px
photo: decode + the pipeline at its default working size + writing the world file),
`zoom_s` (median seconds of one `wonderzoom zoom` step with a prompt: building the request
from the loaded world, the pipeline, appending the step), per-stage medians, splat counts,
the working sizes the defaults chose (`generation.sizes`), threads, `peak_rss_mib` (this
process), the CPU seconds of each run (`*_cpu_s`: less sensitive than wall time to other
work on a shared machine) and the 1-minute load average before and after.
`--baseline` also runs the sizes the defaults were before issue 21 (new 384, zoom 320 px),
interleaved with the defaults, and reports the ratios default / baseline of the same run.
Targets: new_s <= 45, zoom_s <= 30 (2 cores). Runs in-process like the CLI (all cores); the
service's worker uses all cores too, at nice 10.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASELINE = {"new_long_side": 384, "zoom_long_side": 320}  # the defaults before issue 21


def _photo(path: Path) -> None:
    from PIL import Image
    from skimage.data import coffee

    Image.fromarray(coffee()).resize((512, 384), Image.LANCZOS).save(path)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _new(img: Path, config, world: Path) -> dict:
    from engine.history import History, Step
    from generation.image_input import load_image
    from generation.pipeline import run_new
    from saves import save_world

    t0, c0 = time.perf_counter(), _cpu()
    nw = run_new(load_image(img), "a coffee cup", 0, config)
    h = History()
    ids = tuple(range(len(nw.chunks)))
    h.add(Step(0, None, "image", ids, camera=nw.camera, prompt="a coffee cup",
               backend=nw.backend, timings=nw.timings))
    save_world(world, h, dict(zip(ids, nw.chunks)))
    return {"s": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "stages": dict(nw.timings),
            "splats": sum(len(c) for c in nw.chunks), "size": nw.backend["working_size"]}


def _zoom(world: Path, copy: Path, config, seed: int) -> dict:
    from engine.history import Step
    from generation.pipeline import request_at_pixel, run_zoom
    from saves import WorldWriter, load_world

    shutil.copy(world, copy)
    t0, c0 = time.perf_counter(), _cpu()
    loaded = load_world(copy)
    view = loaded.history.steps[0].camera
    req = request_at_pixel(loaded.history, loaded.chunks, view,
                           (view.width * 0.45, view.height * 0.4), "a ladybug", seed=seed)
    run = run_zoom(req, config)
    with WorldWriter.open(copy) as writer:
        base = max(writer.chunk_ids) + 1
        ids = tuple(range(base, base + len(run.chunks)))
        writer.append_step(Step(1, 0, "zoom", ids, camera=run.camera, point=req.point,
                                prompt=req.prompt, backend=dict(run.backend),
                                timings=dict(run.timings)), dict(zip(ids, run.chunks)))
    return {"s": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "stages": dict(run.timings),
            "splats": sum(len(c) for c in run.chunks), "size": run.backend["working_size"]}


def _summary(runs: list[dict]) -> dict:
    def med(key):
        return round(statistics.median(r[key] for r in runs), 2)

    stages = {k: round(statistics.median(r["stages"][k] for r in runs), 2)
              for k in runs[0]["stages"]}
    return {"s": med("s"), "cpu_s": med("cpu_s"), "runs_s": [round(r["s"], 2) for r in runs],
            "stages_s": stages, "splats": runs[-1]["splats"], "working_size": runs[-1]["size"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", action="store_true",
                    help="also run the pre-issue-21 sizes (new 384, zoom 320), interleaved")
    args = ap.parse_args()

    from generation.config import GenerationConfig
    from generation.cores import usable_cores

    threads = usable_cores()
    configs = {"default": GenerationConfig(num_threads=threads)}
    if args.baseline:
        configs["baseline"] = GenerationConfig.from_settings(BASELINE, configs["default"])
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="wz-bench-"))
    img = tmp / "coffee512.png"
    _photo(img)
    runs: dict[str, dict[str, list[dict]]] = {k: {"new": [], "zoom": []} for k in configs}
    try:
        for i in range(args.repeats):
            for name, config in configs.items():  # interleaved: a load drift hits both
                world = tmp / f"{name}.wzs"
                runs[name]["new"].append(_new(img, config, world))
                runs[name]["zoom"].append(_zoom(world, tmp / f"{name}-z.wzs", config, seed=i))
                print(json.dumps({"config": name, "repeat": i,
                                  "new_s": round(runs[name]["new"][-1]["s"], 1),
                                  "zoom_s": round(runs[name]["zoom"][-1]["s"], 1)}),
                      file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    new, zoom = _summary(runs["default"]["new"]), _summary(runs["default"]["zoom"])
    out = {
        "new_s": new["s"], "zoom_s": zoom["s"], "new_cpu_s": new["cpu_s"],
        "zoom_cpu_s": zoom["cpu_s"], "new_runs_s": new["runs_s"], "zoom_runs_s": zoom["runs_s"],
        "targets": {"new_s": 45, "zoom_s": 30},
        "new_stages_s": new["stages_s"], "zoom_stages_s": zoom["stages_s"],
        "new_splats": new["splats"], "zoom_splats": zoom["splats"], "threads": threads,
        "working_size": {"new": new["working_size"], "zoom": zoom["working_size"]},
        "iterations": {"new": configs["default"].new_iterations,
                       "zoom": configs["default"].zoom_iterations},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.baseline:
        bn, bz = _summary(runs["baseline"]["new"]), _summary(runs["baseline"]["zoom"])
        out["baseline"] = {"new_s": bn["s"], "zoom_s": bz["s"], "new_cpu_s": bn["cpu_s"],
                           "zoom_cpu_s": bz["cpu_s"],
                           "working_size": {"new": bn["working_size"],
                                            "zoom": bz["working_size"]}}
        out["ratio_to_baseline"] = {"new": round(new["s"] / bn["s"], 2),
                                    "zoom": round(zoom["s"] / bz["s"], 2),
                                    "new_cpu": round(new["cpu_s"] / bn["cpu_s"], 2),
                                    "zoom_cpu": round(zoom["cpu_s"] / bz["cpu_s"], 2)}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
