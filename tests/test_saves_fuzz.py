"""Hostile and damaged world files: every one ends in a LoadedWorld or a SaveFormatError, fast,
with bounded memory, and never any other exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saves import LoadLimits, SaveFormatError, load_world
from saves.records import encode_file_header
from tests.fuzzcases import base_worlds, crafted_cases, fuzz_case, linked_cases, run_case

MAX_SECONDS = 10.0  # a hang guard per case (under tracemalloc, which slows allocations), not a speed target
MAX_PEAK_BYTES = 48 << 20  # crafted files are small; nothing may inflate them much
N_RANDOM = 480
BATCH = 40


def _check(name: str, outcome, expect: str = "either") -> None:
    assert outcome.kind != "other", f"{name}: {outcome.detail}"
    assert outcome.seconds < MAX_SECONDS, f"{name}: took {outcome.seconds:.2f} s"
    assert outcome.peak_bytes < MAX_PEAK_BYTES, f"{name}: peak {outcome.peak_bytes / 1e6:.1f} MB"
    if outcome.kind == "refused":
        assert "\n" not in outcome.detail and len(outcome.detail) <= 300
    if expect != "either":
        assert outcome.kind == expect, f"{name}: expected {expect}, got {outcome.detail}"


@pytest.mark.parametrize("case", crafted_cases(), ids=lambda c: c[0])
def test_crafted_hostile_file(case, tmp_path: Path) -> None:
    name, data, expect = case
    _check(name, run_case(data, tmp_path / "hostile.wzs"), expect)


@pytest.mark.parametrize("case", linked_cases(), ids=lambda c: c[0])
def test_hostile_link_records(case, tmp_path: Path) -> None:
    """Version-2 LINK records (a step's LoD links): tables, arrays and their places."""
    name, data, expect = case
    _check(name, run_case(data, tmp_path / "linked.wzs"), expect)


@pytest.mark.parametrize("first", range(0, N_RANDOM, BATCH))
def test_random_mutations(first: int, tmp_path: Path) -> None:
    kinds = set()
    for seed in range(first, first + BATCH):
        name, data = fuzz_case(seed)
        outcome = run_case(data, tmp_path / "fuzz.wzs")
        _check(f"seed {seed} ({name})", outcome)
        kinds.add(outcome.kind)
    assert "refused" in kinds  # the mutations really damage files


def test_base_worlds_load(tmp_path: Path) -> None:
    for i, data in enumerate(base_worlds()):
        outcome = run_case(data, tmp_path / "base.wzs")
        assert outcome.kind == "loaded", outcome.detail
        assert outcome.detail == "3 steps, 5 chunks"


def test_small_limits_refuse_before_allocating(tmp_path: Path) -> None:
    """A world bigger than the limits is refused from its headers: the peak stays tiny."""
    data = base_worlds()[0]
    for limits in [LoadLimits(max_splats_total=10), LoadLimits(max_decoded_bytes=1000),
                   LoadLimits(max_splats_per_chunk=8), LoadLimits(max_chunks=2)]:
        outcome = run_case(data, tmp_path / "w.wzs", limits)
        assert outcome.kind == "refused", limits
        assert outcome.peak_bytes < 4 * len(data) + (256 << 10)


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=600), keep=st.integers(0, 4000))
def test_arbitrary_bytes_after_a_valid_prefix(tail: bytes, keep: int, tmp_path: Path) -> None:
    data = base_worlds()[2]
    path = tmp_path / "h.wzs"
    path.write_bytes(data[:keep] + tail if keep else encode_file_header() + tail)
    try:
        load_world(path)
    except SaveFormatError as exc:
        assert "\n" not in str(exc)
