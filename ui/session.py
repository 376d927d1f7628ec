"""The open world of the app: its history and chunks, the one home of both.

Owns: `WorldState` — the full history tree (every step ever grown, and the head), every chunk
of it, the file it lives in and its title — and the only changes the app makes to them:
adding a grown step (`add_grown_step`, which takes the step id and adds the step in one go,
so two results that arrive in one frame never share an id), undo and redo. The scene the
renderer draws (`engine.scene`) is built from this state and mirrors the path to the head.
Does not own: drawing, the file format (the app's `Saver` writes what changed) or generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.history import History, Step, utc_timestamp
from engine.messages import ZoomResult
from engine.splats import SplatChunk


@dataclass
class WorldState:
    """Everything the app knows of the open world: its full history and all its chunks."""

    history: History
    chunks: dict[int, SplatChunk]
    path: Path | None = None
    title: str = "untitled"
    redo_stack: list[int] = field(default_factory=list)  # steps undone, latest last

    def add_grown_step(self, result: ZoomResult, created: str | None = None
                       ) -> tuple[Step, dict[int, SplatChunk]]:
        """The step of a successful zoom result, added to the history now (the head moves to
        it), with its chunks under fresh ids. Its parent is the step the zoom was asked on."""
        req = result.request
        if req is None or not result.ok:
            raise ValueError("only a successful result with its request becomes a step")
        base = max(self.chunks, default=-1) + 1
        chunks = {base + i: c for i, c in enumerate(result.chunks.values())}
        step = Step(self.history.next_id(), req.parent_step, "zoom", tuple(chunks),
                    camera=req.camera, point=req.point, prompt=req.prompt,
                    backend=dict(result.backend), timings=dict(result.timings),
                    created=created or utc_timestamp())
        self.history.add(step)
        self.chunks.update(chunks)
        self.redo_stack.clear()
        return step, chunks

    def undo(self) -> int | None:
        """Move the head to its parent; the new head, or None at a root (nothing changed)."""
        head = self.history.head
        if head is None or self.history.steps[head].parent is None:
            return None
        self.redo_stack.append(head)
        return self.history.undo()

    def redo(self) -> int | None:
        """Step forward to what was undone, else to the newest child; None if there is none."""
        if self.redo_stack:
            target = self.redo_stack.pop()
        else:
            kids = self.history.children(self.history.head) if self.history.head is not None else []
            if not kids:
                return None
            target = kids[-1].id
        self.history.checkout(target)
        return target
