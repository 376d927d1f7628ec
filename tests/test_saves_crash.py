"""Crash safety: a writer process appending steps is killed (SIGKILL at random moments, or
`os._exit` in the middle of a record, a LINK record included); the file must always load to
the state before or after some step of the intended sequence — its chunks and the LoD links
each step stored — and appending must work again afterwards."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import derive_links
from engine.history import History, Step
from saves import LoadedWorld, WorldWriter, load_world, save_world
from saves.chunks import encode_chunk
from saves.records import RECORD_HEADER, encode_record, record_nbytes
from tests.factories import random_camera, random_chunk
from tests.procs import child_env

REPO = Path(__file__).resolve().parent.parent
CRASH_ENV = "WZS_TEST_CRASH_AFTER_BYTES"  # read by the child script below, not by saves/
CRASH_EXIT = 7


def intended_step(i: int) -> tuple[Step, dict]:
    """Step i of the sequence every writer appends: a chain image -> zoom -> zoom ..."""
    rng = np.random.default_rng(1000 + i)
    ids = (2 * i, 2 * i + 1)
    chunks = {ids[0]: random_chunk(rng, 5_000 + (i * 7919) % 5_000, level=i % 1024),
              ids[1]: random_chunk(rng, 50 + i, level=i % 1024, sh_degree=i % 4)}
    step = Step(i, None if i == 0 else i - 1, "image" if i == 0 else "zoom", ids,
                random_camera(rng), point=None if i == 0 else (float(i), 0.5, -1.0),
                prompt=f"step {i}", backend={"name": "crash-test", "seed": i},
                timings={"total": i / 10}, created="2026-01-01T00:00:00Z")
    return step, chunks


def child_main(path: str) -> None:
    """Entry point of the writer subprocess: append intended steps forever."""
    crash_after = os.environ.get(CRASH_ENV)
    cls = WorldWriter if crash_after is None else _crashing_writer(int(crash_after))
    writer = cls.open(path)
    print("ready", flush=True)
    i = writer.history.next_id()
    while True:
        step, chunks = intended_step(i)
        writer.append_step(step, chunks)
        print(f"committed {i}", flush=True)
        i += 1


def _crashing_writer(budget: int) -> type[WorldWriter]:
    class CrashingWriter(WorldWriter):
        """Dies (no cleanup, like a power cut to the process) after `budget` record bytes."""

        written = 0

        def _write(self, parts) -> None:
            for part in parts:
                view = part.cast("B") if part.format != "B" else part
                room = budget - type(self).written
                if view.nbytes >= room:
                    os.write(self.fd, view[:max(room, 0)])
                    os._exit(CRASH_EXIT)
                os.write(self.fd, view)  # short writes do not happen on regular files here
                type(self).written += view.nbytes

    return CrashingWriter


# ---- the parent side -------------------------------------------------------------------
def spawn(path: Path, crash_after: int | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_after is not None:
        env[CRASH_ENV] = str(crash_after)
    env = child_env(env)
    code = f"from tests.test_saves_crash import child_main; child_main({str(path)!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"writer did not start: {line!r} {proc.stderr.read()[-2000:]}")


def wait_committed(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """Block until the child reports its next commit (a wall-clock deadline, not a guess of
    how long a commit takes on this host); its step id."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("committed"):
        proc.kill()
        raise AssertionError(f"no commit within {timeout:g} s: {line!r} {proc.stderr.read()[-2000:]}")
    return int(line.split()[1])


def reported(proc: subprocess.Popen, seen: int = -1) -> int:
    """Highest step id the child said was committed (`seen`: one already read; -1 if none)."""
    out, err = proc.communicate(timeout=30)
    ids = [int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")]
    assert "Traceback" not in err, err[-2000:]
    return max(ids, default=seen)


def check_state(world: LoadedWorld, at_least: int, known: int = -1) -> int:
    """The world holds exactly steps 0..k of the intended sequence, k >= at_least; returns k.
    Steps up to `known` were verified before and are only counted."""
    ids = sorted(world.history.steps)
    k = len(ids) - 1
    assert ids == list(range(k + 1)), f"committed steps are not a prefix: {ids}"
    assert k >= at_least, f"step {at_least} was reported committed but is missing (have {k})"
    assert world.history.head == (k if k >= 0 else None)
    assert sorted(world.chunks) == list(range(2 * k + 2))
    check_links(world, k, known)
    for i in range(max(known + 1, 0), k + 1):
        step, chunks = intended_step(i)
        got = world.history.steps[i]
        assert (got.parent, got.kind, got.chunk_ids, got.prompt, dict(got.backend)) == \
            (step.parent, step.kind, step.chunk_ids, step.prompt, dict(step.backend))
        assert got.camera.to_dict() == step.camera.to_dict()
        for cid, chunk in chunks.items():
            for name in ("origin", "positions", "rotations", "log_scales", "opacity_logits",
                         "sh_dc", "s_native", "sh_rest"):
                assert getattr(world.chunks[cid], name).tobytes() == \
                    getattr(chunk, name).tobytes(), (cid, name)
    return k


def check_links(world: LoadedWorld, k: int, known: int = -1) -> None:
    """Every committed step stored its links, and they are the links the intended sequence
    derives (each step linked from the older chunks its camera sees on its path)."""
    assert world.links is not None and sorted(world.links) == list(range(k + 1))
    if k <= known:
        return
    history, chunks = History(), {}
    for i in range(k + 1):
        step, made = intended_step(i)
        history.add(step)
        chunks.update(made)
    expected = derive_links(history, chunks.__getitem__)
    for i in range(max(known + 1, 0), k + 1):
        got, want = world.links[i], expected[i]
        assert got.bands == want.bands and set(got.children) == set(want.children)
        for cid, s_parent in want.parents.items():
            if s_parent is None:
                assert got.parents[cid] is None
            else:
                np.testing.assert_array_equal(got.parents[cid], s_parent)
        for cid, s_child in want.children.items():
            np.testing.assert_array_equal(got.children[cid], s_child)


@pytest.fixture
def world_path(tmp_path: Path) -> Path:
    path = tmp_path / "crash.wzs"
    save_world(path, History(), {}, {"app": "crash-test"})
    return path


def test_sigkill_at_random_moments(world_path: Path) -> None:
    """Odd trials kill at a random moment after the writer starts (often before its first
    commit, on a slow host always); even trials first wait for a commit, then kill at a
    random moment of the next ones, so commits are always among the states checked."""
    rng = np.random.default_rng(42)
    k = -1
    for trial in range(7):
        proc = spawn(world_path)
        wait_ready(proc)
        seen = -1
        if trial % 2 == 0:
            seen = wait_committed(proc)
        time.sleep(float(rng.uniform(0.0, 0.35)))
        proc.send_signal(signal.SIGKILL)
        last = reported(proc, seen)
        assert proc.returncode == -signal.SIGKILL
        world = load_world(world_path)
        new_k = check_state(world, max(last, k), k)
        # (a slow append may commit nothing before the kill: k is then the bound)
        assert new_k <= max(last, k) + 1, "a step committed that the writer never finished"
        k = new_k
    with WorldWriter.open(world_path) as writer:  # truncates a torn tail, appends again
        step, chunks = intended_step(k + 1)
        writer.append_step(step, chunks)
    check_state(load_world(world_path), k + 1, k)


def test_exit_in_the_middle_of_a_record(world_path: Path) -> None:
    step_bytes = sum(c.nbytes() for c in intended_step(0)[1].values())
    rng = np.random.default_rng(7)
    k = -1
    for trial in range(6):
        # die somewhere in the first 1-3 steps this child writes, header bytes included
        crash_after = int(rng.integers(0, 3 * step_bytes)) if trial else 10
        proc = spawn(world_path, crash_after)
        wait_ready(proc)
        last = reported(proc)
        assert proc.returncode == CRASH_EXIT
        world = load_world(world_path)
        new_k = check_state(world, max(last, k), k)
        assert new_k == max(last, k)  # os._exit came inside a record: that step did not commit
        size = world_path.stat().st_size
        with WorldWriter.open(world_path) as writer:
            assert world_path.stat().st_size <= size
            assert len(writer.history) == new_k + 1
        assert load_world(world_path).ignored_tail_bytes == 0
        k = new_k
    with WorldWriter.open(world_path) as writer:
        step, chunks = intended_step(k + 1)
        writer.append_step(step, chunks)
    check_state(load_world(world_path), k + 1, k)


def test_exit_inside_the_link_record(world_path: Path) -> None:
    """The writer dies after a step's chunks, part way into its LINK record (the new link
    data): the file loads as the state before that step; appending then works."""
    with WorldWriter.open(world_path) as writer:  # steps 0 and 1 committed
        for i in range(2):
            writer.append_step(*intended_step(i))
    step, chunks = intended_step(2)
    chunk_bytes = sum(record_nbytes(encode_record("CHNK", encode_chunk(cid, chunk)))
                      for cid, chunk in chunks.items())
    for into_link in (0, RECORD_HEADER.size + 20, RECORD_HEADER.size + 300):
        proc = spawn(world_path, chunk_bytes + into_link)
        wait_ready(proc)
        assert reported(proc) == -1  # nothing committed by this child
        assert proc.returncode == CRASH_EXIT
        world = load_world(world_path)
        check_state(world, 1, 1)
        assert world.history.head == 1
    with WorldWriter.open(world_path) as writer:  # the torn step is cut away
        writer.append_step(step, chunks)
    check_state(load_world(world_path), 2, 1)
