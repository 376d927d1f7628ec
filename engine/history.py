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

    @classmethod
    def checked(cls, id: int, parent: int | None, kind: str, chunk_ids: tuple[int, ...],
                camera: Camera | None, point: tuple[float, float, float] | None, prompt: str,
                backend: Mapping[str, Any], timings: Mapping[str, float],
                created: str) -> "Step":
        """A Step from fields the caller has already checked as `__post_init__` does (`kind`
        one of STEP_KINDS, `chunk_ids` a tuple of ints): the loader's path
        (`saves.steps.step_from_json`; a long history makes one per record), a third of the
        frozen dataclass constructor's cost. Equal to `Step(...)` with the same fields."""
        step = object.__new__(cls)
        object.__setattr__(step, "__dict__", {
            "id": id, "parent": parent, "kind": kind, "chunk_ids": chunk_ids, "camera": camera,
            "point": point, "prompt": prompt, "backend": backend, "timings": timings,
            "created": created})
        return step


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters (escape sequences, carriage
    returns, newlines) and unpaired surrogates are shown escaped, as `\\x1b`, `\\n`, ..."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


@dataclass
class _Tree:
    """Derived from `steps` in one pass: children per step and each step's depth."""

    size: int  # len(steps) it was built for (steps are only ever added)
    children: dict[int | None, list[int]]  # parent (None: roots) -> child ids, ascending
    depth: dict[int, int]


@dataclass
class History:
    steps: dict[int, Step] = field(default_factory=dict)
    head: int | None = None
    _tree: _Tree | None = field(default=None, init=False, repr=False, compare=False)

    # ---- queries: each linear in the number of steps, none recursive ----------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps[k] for k in sorted(self.steps))

    def _index(self) -> _Tree:
        """The children and depths of every step, rebuilt only when steps were added."""
        tree = self._tree
        if tree is not None and tree.size == len(self.steps):
            return tree
        steps = self.steps
        children: dict[int | None, list[int]] = {}
        for sid in sorted(steps):  # (plain loops: a long history makes this a hot path)
            parent = steps[sid].parent
            kids = children.get(parent)
            if kids is None:
                children[parent] = [sid]
            else:
                kids.append(sid)
        depth: dict[int, int] = {}
        stack = [(sid, 0) for sid in reversed(children.get(None, []))]
        while stack:
            sid, d = stack.pop()
            depth[sid] = d
            kids = children.get(sid)
            if kids:
                for kid in reversed(kids):
                    stack.append((kid, d + 1))
        self._tree = _Tree(len(self.steps), children, depth)
        return self._tree

    def roots(self) -> list[Step]:
        return [self.steps[s] for s in self._index().children.get(None, [])]

    def children(self, step_id: int) -> list[Step]:
        return [self.steps[s] for s in self._index().children.get(step_id, [])]

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

    def depths(self) -> Mapping[int, int]:
        """Every step's level (its depth in the tree), computed once for the whole history."""
        return self._index().depth

    def level_of(self, step_id: int) -> int:
        """Scale level a step created: its depth in the tree (root = level 0)."""
        depth = self._index().depth.get(step_id)
        if depth is None:  # unknown, or not reachable from a root (a cycle): path() says which
            return len(self.path(step_id)) - 1
        return depth

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

    def render_tree(self, max_indent: int = 64) -> str:
        """Human-readable tree, head marked with '*' (prompts escaped for a terminal). A
        chain of only children stays at one indent, as `git log --graph` draws it; branches
        indent, up to `max_indent` columns (deeper ones are drawn at that indent)."""
        tree = self._index()
        lines: list[str] = []
        # (step id, prefix, last among its siblings, top-level, in a chain of only children)
        stack = [(sid, "", True, True, False) for sid in reversed(tree.children.get(None, []))]
        while stack:
            sid, prefix, last, top, chained = stack.pop()
            step = self.steps[sid]
            mark = "*" if sid == self.head else " "
            label = step.kind if not step.prompt else f"{step.kind} \"{printable(step.prompt)}\""
            branch = "" if top or chained else ("└─ " if last else "├─ ")
            lines.append(f"{mark} {prefix}{branch}[{sid}] {label}  "
                         f"(level {tree.depth[sid]}, {len(step.chunk_ids)} chunks)")
            kids = tree.children.get(sid, [])
            if len(kids) == 1:  # one child: continue the chain below, same column
                below = prefix if (top or chained) else prefix + ("   " if last else "│  ")
                stack.append((kids[0], below, True, False, True))
                continue
            deeper = prefix if top else prefix + ("   " if last or chained else "│  ")
            if len(deeper) > max_indent:
                deeper = deeper[:max_indent]
            for i, kid in reversed(list(enumerate(kids))):
                stack.append((kid, deeper, i == len(kids) - 1, False, False))
        return "\n".join(lines)
