"""Fuzz benchmark of the `.wzs` loader: thousands of damaged and hostile files.

Run from the repo root: `python bench/fuzz_saves.py [--json] [--cases N] [--no-trace]`.
Every case must end in a LoadedWorld or a SaveFormatError: `other_exceptions` must be 0.
The hand-crafted attacks of tests/fuzzcases.py run first, then seeded random mutations.
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

from tests.fuzzcases import crafted_cases, fuzz_case, run_case  # noqa: E402


def run(n_cases: int, trace: bool) -> dict:
    counts: Counter[str] = Counter()
    failures: list[str] = []
    mismatches: list[str] = []
    max_s, max_s_case, max_peak, max_peak_case = 0.0, "", 0, ""
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.wzs"
        crafted = crafted_cases()
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
        "total_s": round(time.perf_counter() - t_start, 2),
        "failures": failures[:10] + mismatches[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--no-trace", action="store_true",
                        help="skip tracemalloc (faster; no peak memory figure)")
    args = parser.parse_args()
    result = run(args.cases, not args.no_trace)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['cases']} cases ({result['crafted']} hand-crafted): "
              f"{result['loaded']} loaded, {result['refused']} refused, "
              f"{result['other_exceptions']} other exceptions, "
              f"{result['crafted_outcome_mismatches']} crafted outcome mismatches")
        print(f"slowest case {result['max_s']:.3f} s ({result['max_s_case']}); peak memory "
              f"{result['max_peak_mb']} MB ({result['max_peak_case']}); total {result['total_s']} s")
        for line in result["failures"]:
            print("  FAIL", line)
    sys.exit(1 if result["other_exceptions"] or result["crafted_outcome_mismatches"] else 0)


if __name__ == "__main__":
    main()
