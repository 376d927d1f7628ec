"""Saving in the background, so the frame never waits for the disk.

Owns: `Autosaver`, a writer thread that appends steps / moves the head of a world file (or
writes a new one) in the order asked, and reports each outcome as a one-line message.
Does not own: the file format (`saves.format`).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.history import History, Step
from engine.lod import StepLinks
from engine.splats import SplatChunk
from saves.format import WorldWriter, save_world


WRITER_WAIT_S = 60.0  # another program appending to the file: wait for it, do not fail


@dataclass(frozen=True)
class SaveOutcome:
    ok: bool
    message: str  # one line


class Autosaver:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._jobs: queue.Queue[Callable[[], str] | None] = queue.Queue()
        self._outcomes: queue.Queue[SaveOutcome] = queue.Queue()
        self._pending = 0  # jobs queued or running, guarded by _cond
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="autosave", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._outcomes.put(SaveOutcome(True, job()))
            except Exception as exc:  # disk full, permissions, a busy file: report, keep going
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._outcomes.put(SaveOutcome(False, f"save failed: {reason}"))
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def _put(self, job: Callable[[], str]) -> None:
        with self._cond:
            self._pending += 1
        self._jobs.put(job)

    # ---- requests (return at once) ------------------------------------------------------
    def append_step(self, step: Step, chunks: Mapping[int, SplatChunk],
                    links: StepLinks | None = None) -> None:
        """Append a grown step; `links`: its LoD links when the app decided them already
        (else the writer links it from the file). An older-version file is upgraded first."""
        path = self.path

        def job() -> str:
            if path is None:
                raise RuntimeError("no world file to save into (press Ctrl+S)")
            with WorldWriter.open(path, wait_s=WRITER_WAIT_S, upgrade=True) as writer:
                writer.append_step(step, chunks, links=links)
            return f"autosaved step {step.id} to {path.name}"

        self._put(job)

    def set_head(self, step_id: int) -> None:
        path = self.path
        if path is None:
            return

        def job() -> str:
            with WorldWriter.open(path, wait_s=WRITER_WAIT_S, upgrade=True) as writer:
                writer.set_head(step_id)
            return f"head is step {step_id}"

        self._put(job)

    def save_as(self, path: str | Path, history: History, chunks: Mapping[int, SplatChunk],
                meta: Mapping[str, Any] | None = None) -> None:
        """Write a whole new file, and autosave into it from then on."""
        self.path = Path(path)
        snapshot = History(dict(history.steps), history.head)
        chunks = dict(chunks)

        def job() -> str:
            save_world(path, snapshot, chunks, meta=dict(meta or {}))
            return f"saved {Path(path).name}"

        self._put(job)

    # ---- results ------------------------------------------------------------------------
    def poll(self) -> list[SaveOutcome]:
        out = []
        while True:
            try:
                out.append(self._outcomes.get_nowait())
            except queue.Empty:
                return out

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued write is on disk (used at exit and by tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self.flush()
        self._jobs.put(None)
        self._thread.join(timeout=5)
