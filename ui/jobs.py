"""Zooms in flight: requests sent to the generator, their progress, and what came back.

Owns: the `Generator` protocol the app talks to (the local worker process, the procedural
stand-in, a remote cluster, test fakes), the `Job` of each request (stage, fraction, elapsed
time), request ids, draining the generator once per frame without blocking, cancelling, and
the HUD's one progress line.
Does not own: building a request (`engine.zoom`), turning a result into a step
(`ui.session.WorldState.add_grown_step`) or showing it (the app's hot-load).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from engine.messages import ProgressEvent, ZoomRequest, ZoomResult


class Generator(Protocol):
    # True for generators that cannot render the old world themselves: the app then sends
    # C_i's view with each request (`ZoomRequest.observation`)
    needs_observation: bool

    def submit(self, request: ZoomRequest) -> None: ...
    def poll(self) -> list[ProgressEvent | ZoomResult]: ...  # never blocks
    def cancel(self, request_id: int) -> None: ...
    def close(self) -> None: ...


@dataclass
class Job:
    request: ZoomRequest
    stage: str = "queued"
    fraction: float = 0.0
    elapsed_s: float = 0.0
    working_size: tuple[int, int] | None = None  # the level's size, once the generator says
    size_rule: str = ""


class Jobs:
    """The requests the app has sent and not yet got back, in request order."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.active: dict[int, Job] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self.active)

    def next_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def submit(self, request: ZoomRequest) -> None:
        self.active[request.request_id] = Job(request)
        self.generator.submit(request)

    def poll(self) -> list[ZoomResult]:
        """Progress updates the jobs; finished results are returned (and their jobs end)."""
        finished = []
        for event in self.generator.poll():
            if isinstance(event, ProgressEvent):
                job = self.active.get(event.request_id)
                if job is not None:
                    job.stage, job.fraction, job.elapsed_s = event.stage, event.fraction, event.elapsed_s
                    if event.working_size is not None:
                        job.working_size, job.size_rule = event.working_size, event.size_rule
            elif isinstance(event, ZoomResult):
                job = self.active.pop(event.request_id, None)
                if event.request is None and job is not None:  # a generator that drops it
                    event = replace(event, request=job.request)
                finished.append(event)
        return finished

    def cancel_all(self) -> bool:
        """Ask the generator to cancel every job; False if there was none."""
        for rid in list(self.active):
            self.generator.cancel(rid)
        return bool(self.active)

    def progress_line(self) -> tuple[str, float | None]:
        """The HUD line for the oldest job ("" when idle) and its fraction."""
        if not self.active:
            return "", None
        job = min(self.active.values(), key=lambda j: j.request.request_id)
        size = ""
        if job.working_size is not None:
            w, h = job.working_size
            size = f" at {w}\u00d7{h}" + (f" ({job.size_rule})" if job.size_rule else "")
        text = (f"growing \"{job.request.prompt[:40]}\"{size}: {job.stage} {job.fraction:.0%} "
                f"({job.elapsed_s:.1f} s)")
        if len(self.active) > 1:
            text += f" · {len(self.active) - 1} queued"
        return text, job.fraction
