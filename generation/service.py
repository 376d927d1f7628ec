"""The asynchronous generation service: zoom requests run in a worker *process*.

Owns: `GenerationService`, which speaks the app's generator protocol (`submit`, `poll`,
`cancel`, `close`, like `generation.procedural.ProceduralGenerator`):
- one worker process (multiprocessing, spawn context: no forked torch or GL state), started
  lazily and restarted after it dies; it runs one request at a time from a queue, at nice 10
  with torch / OpenCV / ncnn threads on every usable core: a core the app wants is the app's
  (the scheduler weighs nice 10 at a tenth), and while the user waits on a still view the
  app draws nothing, so the worker gets the whole machine (issue 21: with all cores but one,
  a zoom asked for in the app took 1.65x the CLI's time on 2 cores; with all, 1.14x, and
  the p99 frame time while flying stayed 1.24x idle: docs/benchmarks.md);
- `ProgressEvent`s per stage (the fraction of the whole request) and one `ZoomResult` per
  request, in order;
- cancellation (between stages and optimiser iterations; a worker that does not stop within
  `cancel_grace_s` is killed), a per-request timeout (the worker is killed), and any crash, OOM
  kill or exit of the worker: all come back as `ZoomResult(ok=False, error="one line")`, and the
  next request gets a fresh worker. The caller's world is never touched by the service: a
  result is data the frame loop may append.
`poll` never blocks: it drains a queue and checks the worker's health.
Does not own: the pipeline (`generation.pipeline`, imported only inside the worker), hot-loading
results (the app) or writing files.

The runner is named as "module:function" so the spawned worker can import it; it is called as
`runner(request, config, progress, cancel) -> ZoomResult` (tests pass gated fakes).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import multiprocessing as mp
import os
import queue
import signal
import time
from typing import Any, Callable

from engine.messages import ProgressEvent, ZoomRequest, ZoomResult
from generation.cores import usable_cores

DEFAULT_RUNNER = "generation.pipeline:zoom"
DEFAULT_TIMEOUT_S = 600.0


WORKER_NICENESS = 10
PARENT_CHECK_S = 1.0  # how often an idle worker checks that the app is still there


def _load_runner(path: str) -> Callable[..., ZoomResult]:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"runner must be 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def _worker_main(runner_path: str, settings: dict[str, Any], threads: int,
                 requests: "mp.Queue", events: "mp.Queue", cancels: "mp.Queue") -> None:
    """The worker process: run requests one by one until a None arrives, or until the app
    is gone: an app killed outright (SIGKILL, SIGTERM, a crash) cannot send the None, and
    its worker, holding the old world and the models (GBs), would wait for requests forever.
    An idle worker checks every PARENT_CHECK_S; a running job sees it as a cancel."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app, which closes us
    try:  # background work: the frame loop wins every contended time slice
        os.nice(WORKER_NICENESS)
    except (AttributeError, OSError):  # no nice() on this platform, or not allowed
        pass
    runner = _load_runner(runner_path)
    config = None
    if runner_path == DEFAULT_RUNNER or settings:
        from generation.config import GenerationConfig

        config = GenerationConfig.from_settings({**settings, "num_threads": threads})
    cancelled: set[int] = set()
    parent = mp.parent_process()

    def orphaned() -> bool:
        return parent is not None and not parent.is_alive()

    def drain_cancels() -> None:
        while True:
            try:
                cancelled.add(cancels.get_nowait())
            except queue.Empty:
                return

    while True:
        try:
            req = requests.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if orphaned():
                events.cancel_join_thread()  # nobody reads them now: do not wait to flush
                return
            continue
        if req is None:
            return
        start = time.monotonic()
        drain_cancels()
        size, rule = _working_size(req, config)

        def progress(stage: str, fraction: float, _req: ZoomRequest = req) -> None:
            from generation.pipeline import ZOOM_STAGES, overall_fraction

            overall = overall_fraction(ZOOM_STAGES, stage, fraction) if stage in ZOOM_STAGES \
                else fraction
            events.put(ProgressEvent(_req.request_id, stage, overall, time.monotonic() - start,
                                     size, rule))

        def cancel(_rid: int = req.request_id) -> bool:
            drain_cancels()
            return _rid in cancelled or orphaned()

        try:
            result = runner(req, config, progress, cancel)
        except MemoryError:
            result = ZoomResult(req.request_id, False, error="out of memory")
        except Exception as exc:  # a stage that fails is a failed result, never a dead worker
            text = str(exc).strip().splitlines()
            result = ZoomResult(req.request_id, False,
                                error=f"{type(exc).__name__}: {text[0] if text else ''}"[:300])
        # the parent re-attaches its own request (no need to ship the old world back)
        events.put(dataclasses.replace(result, request=None))


def _working_size(request: ZoomRequest, config: Any) -> tuple[tuple[int, int] | None, str]:
    """The size the pipeline will make the request's level at, and why (the HUD says it)."""
    if config is None:  # a custom runner without settings: its own business
        return None, ""
    try:
        from generation.pipeline import working_camera

        cam, size = working_camera(request, config)
    except Exception:  # a malformed request: the pipeline will say what is wrong with it
        return None, ""
    return (cam.width, cam.height), size.rule


class GenerationService:
    name = "generation"
    version = "1"
    needs_observation = False  # the pipeline observes the old world itself (stage 1)

    def __init__(self, settings: dict[str, Any] | None = None, *,
                 runner: str = DEFAULT_RUNNER, timeout_s: float = DEFAULT_TIMEOUT_S,
                 threads: int | None = None, cancel_grace_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if settings:  # refuse bad settings here, in the caller, with one line
            from generation.config import GenerationConfig

            GenerationConfig.from_settings(settings)
        self.settings = dict(settings or {})
        self.runner = runner
        self.timeout_s = float(timeout_s)
        self.threads = threads or usable_cores()
        self.cancel_grace_s = float(cancel_grace_s)
        self.clock = clock
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._requests: Any = None
        self._events: Any = None
        self._cancels: Any = None
        self._pending: collections.deque[ZoomRequest] = collections.deque()
        self._current: ZoomRequest | None = None
        self._started_at = 0.0
        self._cancel_at: float | None = None
        self._out: list[ProgressEvent | ZoomResult] = []
        self.restarts = 0  # workers started after the first (tests and the HUD read it)
        self._closed = False

    # ---- protocol -----------------------------------------------------------------------
    def submit(self, request: ZoomRequest) -> None:
        if self._closed:
            raise RuntimeError("the generation service is closed")
        self._pending.append(request)
        self._dispatch()

    def cancel(self, request_id: int) -> None:
        for req in list(self._pending):
            if req.request_id == request_id:
                self._pending.remove(req)
                self._out.append(ZoomResult(request_id, False, error="cancelled", request=req))
        if self._current is not None and self._current.request_id == request_id \
                and self._cancel_at is None:
            self._cancels.put(request_id)
            self._cancel_at = self.clock()

    def poll(self) -> list[ProgressEvent | ZoomResult]:
        self._drain()
        if self._current is not None:
            now = self.clock()
            if self._proc is None or not self._proc.is_alive():
                self._drain()  # a result may have arrived just before the exit
                if self._current is not None:
                    self._fail(self._death_reason())
                self._kill()  # closes the dead worker's queues; the next request starts anew
            elif now - self._started_at > self.timeout_s:
                self._kill()
                self._fail(f"timed out after {self.timeout_s:g} s")
            elif self._cancel_at is not None and now - self._cancel_at > self.cancel_grace_s:
                self._kill()
                self._fail("cancelled")
        self._dispatch()
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        if self._proc is not None:
            if self._proc.is_alive():
                try:
                    self._requests.put(None)
                except (OSError, ValueError):
                    pass
                if self._current is not None:
                    self._cancels.put(self._current.request_id)
                self._proc.join(timeout=3.0)
            self._kill()

    # ---- introspection ------------------------------------------------------------------
    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    # ---- internals ----------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self._proc is not None:
            self.restarts += 1
        self._requests = self._ctx.Queue()
        self._events = self._ctx.Queue()
        self._cancels = self._ctx.Queue()
        self._proc = self._ctx.Process(
            target=_worker_main, name="wonderzoom-generation", daemon=True,
            args=(self.runner, self.settings, self.threads, self._requests, self._events,
                  self._cancels))
        self._proc.start()

    def _dispatch(self) -> None:
        if self._closed or self._current is not None or not self._pending:
            return
        if self._proc is None or not self._proc.is_alive():
            self._start_worker()
        req = self._pending.popleft()
        self._current = req
        self._started_at = self.clock()
        self._cancel_at = None
        self._requests.put(req)

    def _drain(self) -> None:
        if self._events is None:
            return
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return
            except Exception:  # a message cut short by a dying worker
                return
            if isinstance(item, ProgressEvent):
                if self._current is not None and item.request_id == self._current.request_id:
                    self._out.append(item)
            elif isinstance(item, ZoomResult):
                cur = self._current
                if cur is not None and item.request_id == cur.request_id:
                    self._out.append(dataclasses.replace(item, request=cur))
                    self._current = None
                    self._cancel_at = None

    def _fail(self, error: str) -> None:
        req = self._current
        self._current = None
        self._cancel_at = None
        if req is not None:
            self._out.append(ZoomResult(req.request_id, False, error=error, request=req))

    def _death_reason(self) -> str:
        code = None if self._proc is None else self._proc.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"the generation worker was killed by {name}{hint}"
        return f"the generation worker exited unexpectedly (exit code {code})"

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)
        for q in (self._requests, self._events, self._cancels):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self._requests = self._events = self._cancels = None
