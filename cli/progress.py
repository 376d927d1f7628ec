"""Progress bars and timing tables for the long commands (`new`, `zoom`, the sample world).

Owns: `StageBars` (one rich progress bar per pipeline stage, on stderr, so stdout stays
clean) and `print_timings` (seconds and share per stage, on stdout).
Does not own: the stages or their progress callbacks (`generation.pipeline`).
"""

from __future__ import annotations

from typing import Any, Sequence


class StageBars:
    """A `progress(stage, fraction)` callback that draws a bar per stage."""

    def __init__(self, stages: Sequence[str], enabled: bool, title: str = "") -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(),
                                 console=self.console, disable=not enabled)
        self.tasks: dict[str, Any] = {}
        self.stages = stages
        self.title = title

    def __enter__(self) -> "StageBars":
        if self.title and not self.progress.disable:
            self.console.print(self.title)
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, stage: str, fraction: float) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=1.0)
        self.progress.update(self.tasks[stage], completed=min(max(fraction, 0.0), 1.0))


def print_timings(title: str, timings: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    total = timings.get("total", sum(timings.values())) or 1e-9
    for stage, secs in timings.items():
        if stage == "total":
            continue
        table.add_row(stage, f"{secs:.2f}", f"{100 * secs / total:.0f}%")
    table.add_row("total", f"{total:.2f}", "100%", style="bold")
    Console().print(table)
