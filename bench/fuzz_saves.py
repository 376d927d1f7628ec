"""Fuzz benchmark of the `.wzs` readers: thousands of damaged and hostile files.

Run from the repo root: `python bench/fuzz_saves.py [--json] [--cases N] [--no-trace]`.
Every case goes through the three readers (`read_world_info`: info/history/checkout;
`load_world`; `open_world` with every chunk of the head's path read on demand, as a streamed
world reads them) and the history queries every command makes; each must end in a result or a
SaveFormatError: `other_exceptions` must be 0. The hand-crafted attacks of tests/fuzzcases.py
(LINK records included) run first, then seeded random mutations. Memory: the traced peak of each case against the
stated bound (peak <= MEMORY_PER_BYTE x file size + MEMORY_CONSTANT), and the worst
peak per input byte. Time: the slowest case, and every history command on a
100,000-step world (`--deep-steps`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzzcases import (crafted_cases, deep_chain, fuzz_case, linked_cases,  # noqa: E402
                             run_case)

# the stated bound on a reader's memory: the file read once (the loader), the decoded arrays
# (at most 8x the file + 64 MiB, saves.limits), and a constant for the interpreter's objects
MEMORY_PER_BYTE = 10.0
MEMORY_CONSTANT = 96 << 20
LARGE_INPUT = 64 << 10  # the per-byte figure is taken over inputs at least this big


def run(n_cases: int, trace: bool) -> dict:
    counts: Counter[str] = Counter()
    failures: list[str] = []
    mismatches: list[str] = []
    max_s, max_s_case, max_peak, max_peak_case = 0.0, "", 0, ""
    per_byte, per_byte_case, over_bound = 0.0, "", []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.wzs"
        crafted = crafted_cases() + linked_cases()
        cases = [(name, data, expect) for name, data, expect in crafted]
        for i in range(max(n_cases - len(cases), 0)):
            name, data = fuzz_case(i)
            cases.append((f"seed {i}: {name}", data, "either"))
        for name, data, expect in cases[:n_cases]:
            outcome = run_case(data, path, trace=trace)
            counts[outcome.kind] += 1
            if outcome.kind == "other":
                failures.append(f"{name}: {outcome.detail}")
            if expect != "either" and outcome.kind != expect:
                mismatches.append(f"{name}: expected {expect}, got {outcome.detail}")
            if outcome.seconds > max_s:
                max_s, max_s_case = outcome.seconds, name
            if outcome.peak_bytes > max_peak:
                max_peak, max_peak_case = outcome.peak_bytes, name
            if trace and len(data) >= LARGE_INPUT and outcome.peak_bytes / len(data) > per_byte:
                per_byte, per_byte_case = outcome.peak_bytes / len(data), name
            if trace and outcome.peak_bytes > MEMORY_PER_BYTE * len(data) + MEMORY_CONSTANT:
                over_bound.append(f"{name}: {outcome.peak_bytes >> 20} MiB for {len(data)} B")
    return {
        "cases": sum(counts.values()),
        "crafted": min(len(crafted), n_cases),
        "loaded": counts["loaded"],
        "refused": counts["refused"],
        "other_exceptions": counts["other"],
        "crafted_outcome_mismatches": len(mismatches),
        "max_s": round(max_s, 4),
        "max_s_case": max_s_case,
        "max_peak_mb": round(max_peak / 2**20, 2) if trace else None,
        "max_peak_case": max_peak_case if trace else None,
        "max_peak_per_input_byte": round(per_byte, 2) if trace else None,
        "max_peak_per_input_byte_case": per_byte_case if trace else None,
        "memory_bound": f"{MEMORY_PER_BYTE:g} x file bytes + {MEMORY_CONSTANT >> 20} MiB",
        "memory_bound_violations": len(over_bound) if trace else None,
        "total_s": round(time.perf_counter() - t_start, 2),
        "failures": failures[:10] + mismatches[:10] + over_bound[:10],
    }


# the deep worlds' step shapes: bare (id, parent, kind, a short prompt: ~200 bytes a step),
# rich (also a backend, timings and a created time, ~340 bytes: the hostile-input audit's
# chain) and camera (bare plus a camera on every step, ~620 bytes)
DEEP_SHAPES = {"": {}, "rich_": {"rich": True}, "camera_": {"camera": True}}


def deep_history(steps: int) -> dict:
    """Wall seconds of every history command (a fresh process each, as a user runs it) on
    worlds whose history is one chain of `steps` steps, one world per step shape: keys
    `deep_{shape}{command}_s`, and `deep_slowest_s` over the bare and rich shapes (the
    issue's target; the camera shape is reported beside them)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    out: dict = {"deep_steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        for shape, kw in DEEP_SHAPES.items():
            world = Path(tmp) / f"deep_{shape}.wzs"
            world.write_bytes(deep_chain(steps, **kw))
            out[f"deep_{shape}file_mb"] = round(world.stat().st_size / 1e6, 1)
            for name, args in (("info", ["info"]), ("info_json", ["info", "--json"]),
                               ("history", ["history"]), ("checkout", ["checkout"])):
                argv = [sys.executable, str(root / "main.py"), args[0], str(world), *args[1:]]
                if name == "checkout":
                    argv.append(str(steps // 2))
                t0 = time.perf_counter()
                r = subprocess.run(argv, capture_output=True, text=True)
                out[f"deep_{shape}{name}_s"] = round(time.perf_counter() - t0, 2)
                if r.returncode != 0:
                    out[f"deep_{shape}{name}_error"] = r.stderr.strip()[-300:]
    out["deep_slowest_s"] = max(v for k, v in out.items()
                                if k.endswith("_s") and not k.startswith("deep_camera_"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--no-trace", action="store_true",
                        help="skip tracemalloc (faster; no peak memory figure)")
    parser.add_argument("--deep-steps", type=int, default=100_000,
                        help="steps of the deep-history world (0: skip it)")
    args = parser.parse_args()
    result = run(args.cases, not args.no_trace)
    if args.deep_steps:
        result.update(deep_history(args.deep_steps))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['cases']} cases ({result['crafted']} hand-crafted): "
              f"{result['loaded']} loaded, {result['refused']} refused, "
              f"{result['other_exceptions']} other exceptions, "
              f"{result['crafted_outcome_mismatches']} crafted outcome mismatches")
        print(f"slowest case {result['max_s']:.3f} s ({result['max_s_case']}); peak memory "
              f"{result['max_peak_mb']} MB ({result['max_peak_case']}); total {result['total_s']} s")
        print(f"peak memory per input byte {result['max_peak_per_input_byte']} "
              f"({result['max_peak_per_input_byte_case']}); bound {result['memory_bound']}: "
              f"{result['memory_bound_violations']} over it")
        for shape in DEEP_SHAPES if args.deep_steps else ():
            print(f"{args.deep_steps}-step history, {shape[:-1] or 'bare'} steps "
                  f"({result[f'deep_{shape}file_mb']} MB): " + ", ".join(
                      f"{name} {result[f'deep_{shape}{name}_s']} s"
                      for name in ("info", "info_json", "history", "checkout")))
        for line in result["failures"]:
            print("  FAIL", line)
    sys.exit(1 if result["other_exceptions"] or result["crafted_outcome_mismatches"]
             or result["memory_bound_violations"] else 0)


if __name__ == "__main__":
    main()
