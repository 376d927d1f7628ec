"""Where the command line grows a level: the local worker process or a Ray cluster.

Owns: `choose(config_arg, cluster_arg)` (`--cluster` > `$WONDERZOOM_CLUSTER` > the config
file's `[service]`), `make_service` — the one place that wires a `RayGenerationService` to
saves' checks (`saves.wire.LevelCodec`: chunks from the cluster are checked exactly as the
loader checks a stranger's file before anything is appended or hot-loaded) — and
`run_on_service`: submit one request, draw the same per-stage progress bars as the
in-process pipeline from the `ProgressEvent`s, and return the successful result; a failed
result is a `GenerationFailed` (one line, exit status 2) and Ctrl-C cancels the request
before it propagates.
Does not own: the services (`generation.service`, `generation.cluster`), the commands
(`cli.new`, `cli.zoom`, `cli.play`) or writing the world (they do, after success only).
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from engine.errors import UserError

POLL_S = 0.05


class GenerationFailed(UserError):
    """The service returned a failed result (its one line is the message)."""


def choose(config_arg: str | None, cluster_arg: str | None):
    """The `ServiceConfig` of this run."""
    from generation.model_config import file_service
    from generation.service_config import choose_service

    return choose_service(file_service(config_arg), cluster_arg)


def make_service(choice, config_arg: str | None,
                 overrides: Mapping[str, Any] | None = None):
    """The generation service `choice` names: a pool on a Ray cluster (its results checked by
    saves' loader functions) or the local worker process with the config file's settings."""
    if choice.is_ray:
        from generation.cluster import RayGenerationService
        from saves.wire import LevelCodec

        return RayGenerationService.from_config(choice, codec=LevelCodec(), overrides=overrides)
    from generation.model_config import file_settings
    from generation.service import GenerationService

    return GenerationService({**file_settings(config_arg), **(overrides or {})},
                             timeout_s=choice.timeout_s)


def stage_fraction(stages: Sequence[str], stage: str, overall: float) -> float:
    """How far `stage` is when the whole request is `overall` done (the inverse of
    `generation.pipeline.overall_fraction`): what a stage's bar shows."""
    from generation.pipeline import STAGE_WEIGHTS

    if stage not in stages:
        return overall
    total = sum(STAGE_WEIGHTS[s] for s in stages)
    before = sum(STAGE_WEIGHTS[s] for s in stages[:list(stages).index(stage)])
    # rounded: a stage's end comes back as 0.9999999999999994 for some weights, and a bar
    # short of 1 is never finished (its clock ran on to the end of the request)
    return min(1.0, max(0.0, round((overall * total - before) / STAGE_WEIGHTS[stage], 9)))


def run_on_service(service, request, stages: Sequence[str], quiet: bool = False,
                   title: str = ""):
    """Submit `request`, show its progress, and return its successful result."""
    from cli.progress import StageBars

    with StageBars(stages, not quiet, title) as bars:
        service.submit(request)
        try:
            result = _wait(service, request.request_id, bars, stages)
        except KeyboardInterrupt:
            service.cancel(request.request_id)
            _wait(service, request.request_id, None, stages, limit_s=10.0)
            raise
    if result is None or not result.ok:
        raise GenerationFailed(f"generation failed: {result.error if result else 'no result'}")
    return result


def _wait(service, request_id: int, bars, stages: Sequence[str], limit_s: float | None = None):
    from engine.messages import ProgressEvent, ZoomResult
    from generation.new_request import NewResult

    end = None if limit_s is None else time.monotonic() + limit_s
    while end is None or time.monotonic() < end:
        for event in service.poll():
            if isinstance(event, (ZoomResult, NewResult)) and event.request_id == request_id:
                return event
            if isinstance(event, ProgressEvent) and event.request_id == request_id \
                    and bars is not None:
                bars(event.stage, stage_fraction(stages, event.stage, event.fraction))
        time.sleep(POLL_S)
    return None
