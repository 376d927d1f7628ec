"""The history tree: every step that ever grew the world, and which one is current.

Owns: `Step` (one generation step: E0 from an image, an import, or a zoom) and `History`
(a tree of steps plus a head). The world at a step is the union of the chunks on the path
root -> step. Undo moves the head to the parent; a zoom from there starts a branch; nothing is
ever deleted.
Does not own: chunk data (a step only names chunk ids) or persistence (`saves/`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from engine.camera import Camera
from engine.errors import UserError

STEP_KINDS = ("image", "import", "zoom")


def utc_timestamp() -> str:
    """The time a step is created: ISO-8601, UTC, whole seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class HistoryError(UserError, ValueError):
    """An impossible history operation: unknown step, cycle, duplicate id."""


@dataclass(frozen=True)
class Step:
    id: int
    parent: int | None  # None only for a root step
    kind: str  # one of STEP_KINDS
    chunk_ids: tuple[int, ...]  # chunks this step appended
    camera: Camera | None = None  # C_i, the camera that created the level (None for imports)
    point: tuple[float, float, float] | None = None  # picked world point the zoom looked at
    prompt: str = ""
    backend: Mapping[str, Any] = field(default_factory=dict)  # name, version, seed, settings
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per stage
    created: str = ""  # ISO-8601 UTC time

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise HistoryError(f"unknown step kind {self.kind!r}")
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in self.chunk_ids):
            raise HistoryError(f"step {self.id}: chunk ids must be integers")
        object.__setattr__(self, "chunk_ids", tuple(self.chunk_ids))


@dataclass
class History:
    steps: dict[int, Step] = field(default_factory=dict)
    head: int | None = None

    # ---- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps[k] for k in sorted(self.steps))

    def roots(self) -> list[Step]:
        return [s for s in self if s.parent is None]

    def children(self, step_id: int) -> list[Step]:
        return [s for s in self if s.parent == step_id]

    def path(self, step_id: int | None = None) -> list[Step]:
        """Steps from the root to `step_id` (default: head), root first."""
        step_id = self.head if step_id is None else step_id
        if step_id is None:
            return []
        out: list[Step] = []
        seen: set[int] = set()
        cur: int | None = step_id
        while cur is not None:
            if cur in seen:
                raise HistoryError(f"history has a cycle through step {cur}")
            if cur not in self.steps:
                raise HistoryError(f"unknown step {cur}")
            seen.add(cur)
            out.append(self.steps[cur])
            cur = self.steps[cur].parent
        return out[::-1]

    def level_of(self, step_id: int) -> int:
        """Scale level a step created: its depth in the tree (root = level 0)."""
        return len(self.path(step_id)) - 1

    def chunk_ids_at(self, step_id: int | None = None) -> list[int]:
        """Chunk ids of the world at a step: the union along root -> step, oldest first."""
        return [c for s in self.path(step_id) for c in s.chunk_ids]

    def next_id(self) -> int:
        return max(self.steps, default=-1) + 1

    # ---- changes (append-only) ----------------------------------------------------------
    def add(self, step: Step, move_head: bool = True) -> Step:
        if step.id in self.steps:
            raise HistoryError(f"step {step.id} already exists")
        if step.parent is not None and step.parent not in self.steps:
            raise HistoryError(f"step {step.id} has unknown parent {step.parent}")
        if step.parent is None and step.kind == "zoom":
            raise HistoryError("a zoom step needs a parent")
        self.steps[step.id] = step
        if move_head:
            self.head = step.id
        return step

    def checkout(self, step_id: int) -> None:
        if step_id not in self.steps:
            raise HistoryError(f"no step {step_id} (steps are {', '.join(map(str, sorted(self.steps)))})")
        self.head = step_id

    def undo(self) -> int | None:
        """Move the head to its parent; returns the new head (unchanged at a root)."""
        if self.head is not None and self.steps[self.head].parent is not None:
            self.head = self.steps[self.head].parent
        return self.head

    def render_tree(self) -> str:
        """Human-readable tree, head marked with '*'."""
        lines: list[str] = []

        def walk(step: Step, prefix: str, last: bool, top: bool) -> None:
            mark = "*" if step.id == self.head else " "
            label = step.kind if not step.prompt else f"{step.kind} \"{step.prompt}\""
            branch = "" if top else ("└─ " if last else "├─ ")
            lines.append(f"{mark} {prefix}{branch}[{step.id}] {label}  "
                         f"(level {self.level_of(step.id)}, {len(step.chunk_ids)} chunks)")
            kids = self.children(step.id)
            for i, kid in enumerate(kids):
                walk(kid, prefix + ("" if top else ("   " if last else "│  ")), i == len(kids) - 1, False)

        for root in self.roots():
            walk(root, "", True, True)
        return "\n".join(lines)
