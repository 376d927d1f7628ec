"""The Ray side of a pool: one dispatcher actor and its warm generation worker actors.

Owns:
- `GenerationWorker`, a Ray actor that loads once (reads the model config *where it runs*:
  `$WONDERZOOM_CONFIG` in the environment of `ray start` on that machine, else the builtin
  defaults; builds the stage backends; refuses to start when its versions differ from the
  client's) and then serves request after request: runs the pipeline runner with progress
  pushed to the dispatcher (at most ~10 events a second) and cancellation checked between
  stages and optimiser iterations, and returns (JSON text, chunk stream) — plain data.
- `PoolDispatcher`, a named, detached, async actor pinned to the head node: every client of
  the pool finds it by name, so several apps share one pool. It keeps the workers (starting
  them, killing and replacing one that died, timed out or ignored a cancel past its grace
  period), one FIFO queue of requests in arrival order across clients, the per-request
  timeout (from the moment a worker starts it), a bound on how long a queue may wait for a
  worker Ray cannot place, and per-client outboxes that clients long-poll. A client that
  stops polling for `CLIENT_GONE_S` loses its queued requests and its running ones are
  cancelled. Results stay in the object store: the dispatcher hands the client a reference
  and never touches the bytes.
Does not own: connecting to Ray or talking to the app (`generation.cluster_bridge`),
checking results (the client's codec), the pipeline (`generation.pipeline`).
Imported only where Ray runs: the bridge process and the cluster's worker processes.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
from ray.exceptions import RayError

from engine.errors import UserError
from engine.messages import ProgressEvent, ZoomRequest
from generation.cluster_wire import (NAMESPACE, Finished, PoolSpec, Started, WorkerInfo,
                                     clean_line, error_line, failed_meta, local_versions,
                                     pack_result, pool_actor_name, version_mismatch)
from generation.new_request import NewRequest

CLIENT_GONE_S = 60.0  # a client that has not polled for this long has gone away
PLACEMENT_S = 120.0  # a queue that waited this long with no worker placeable fails
MONITOR_S = 0.1
PROGRESS_EVERY_S = 0.1  # a worker sends at most ~10 progress events a second
HEAD_RESOURCE = {"node:__internal_head__": 0.001}  # Ray's own way to pin to the head node


def _load_runner(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"runner must be 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def warm_backends(config: Any) -> None:
    """Build every stage backend the config names, with the options the pipeline passes, so
    the first request finds them in the per-process registries (models load here, once)."""
    from generation.config import STAGES
    from generation.model_config import registry

    for stage in STAGES:
        backend = config.backend_for(stage)
        if stage == "optimize":
            options: dict[str, Any] = {}
        elif stage == "super_resolve" and backend == "builtin":
            options = {"model": config.sr_model, "threads": config.threads()}
        else:
            options = config.options_for(stage)
        registry(stage).get(backend, **options)


def _renice(niceness: int, app_session: int = 0) -> None:
    """Every thread of this process at `niceness` (> 0 when the pool shares the machine with
    the app: the frame loop then wins contended time slices). Linux keeps a nice value per
    thread, and a Ray actor runs its methods on several threads. With autogroup scheduling a
    nice value only weighs inside its session: when Ray runs in another session than the app
    (`ray start` in another terminal), a zoom took a whole core from the app, so that
    session's scheduling group is niced too (never the app's own: `--cluster local`)."""
    if niceness <= 0:
        return
    if app_session and hasattr(os, "getsid") and os.getsid(0) != app_session:
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(niceness))
        except OSError:  # no autogroup scheduling here
            pass
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the calling thread only
        tids = [0]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except (AttributeError, OSError):
            pass


class VersionMismatchError(UserError, RuntimeError):
    """A worker whose package, protocol, Python or Ray differs from the client's."""


class GenerationWorker:
    """One warm worker: `load()` once, then `run()` request after request (threaded actor:
    `cancel` arrives while `run` works)."""

    def __init__(self, spec: PoolSpec, pool: str, name: str) -> None:
        self.spec, self.pool, self.name = spec, pool, name
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._config: Any = None
        self._runners: dict[type, Callable[..., Any]] = {}
        self._dispatcher: Any = None
        self._info: WorkerInfo | None = None

    def hello(self) -> int:
        return os.getpid()

    def load(self) -> WorkerInfo:
        start = time.monotonic()
        spec = self.spec
        mismatch = version_mismatch(spec.versions, local_versions(),
                                    f"the worker on {socket.gethostname()}")
        if mismatch:
            raise VersionMismatchError(mismatch)
        threads = spec.threads
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        _renice(spec.niceness, spec.app_session)
        import generation.pipeline  # noqa: F401  (torch & co: imported once, here)

        self._runners = {ZoomRequest: _load_runner(spec.runner),
                         NewRequest: _load_runner(spec.new_runner)}
        from generation.config import GenerationConfig
        from generation.model_config import config_path, file_settings

        path = config_path(None)  # the worker side's model config
        self._config = GenerationConfig.from_settings({**file_settings(None),
                                                       "num_threads": threads})
        if spec.warm:
            warm_backends(self._config)
        _renice(spec.niceness, spec.app_session)  # the threads the backends started too
        self._dispatcher = ray.get_actor(pool_actor_name(self.pool), namespace=NAMESPACE)
        self._info = WorkerInfo(self.name, os.getpid(), ray.get_runtime_context().get_node_id(),
                                socket.gethostname(), time.monotonic() - start,
                                str(path) if path else "")
        return self._info

    def cancel(self, key: str) -> None:
        with self._lock:
            self._cancelled.add(key)

    def run(self, key: str, request: Any) -> tuple[str, Any]:
        """(JSON text, chunk stream or None) for `request`; never raises for the request's
        own failures (they are failed results)."""
        from generation.pipeline import NEW_STAGES, ZOOM_STAGES, overall_fraction

        start = time.monotonic()
        stages = NEW_STAGES if isinstance(request, NewRequest) else ZOOM_STAGES
        last = {"stage": None, "at": 0.0, "seq": 0}

        def progress(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if stage == last["stage"] and 0.0 < fraction < 1.0 and \
                    now - last["at"] < PROGRESS_EVERY_S:
                return
            last["stage"], last["at"], last["seq"] = stage, now, last["seq"] + 1
            overall = overall_fraction(stages, stage, fraction) if stage in stages else fraction
            self._dispatcher.progress.remote(key, last["seq"], stage, float(overall),
                                             now - start)

        def cancel() -> bool:
            with self._lock:
                return key in self._cancelled

        _renice(self.spec.niceness, self.spec.app_session)  # methods run on a thread pool
        try:
            runner = self._runners.get(type(request))
            if runner is None:
                raise TypeError(f"not a request: {type(request).__name__}")
            result = runner(request, self._config, progress, cancel)
            return pack_result(result, self.spec.codec)
        except MemoryError:
            return failed_meta("out of memory"), None
        except Exception as exc:  # a failed stage or a result that cannot be packed
            return failed_meta(error_line(exc)), None
        finally:
            with self._lock:
                self._cancelled.discard(key)


@dataclass
class _Job:
    client: str
    request_id: int
    request_ref: list  # [ObjectRef]: the client owns the request object
    timeout_s: float
    grace_s: float
    started: float = 0.0
    cancel_at: float | None = None
    done: bool = False
    progress_seq: int = 0  # the last progress event passed on
    progress_held: dict = field(default_factory=dict)  # seq -> event that came early
    retried: bool = False  # queued again once: its worker died before the job began

    @property
    def key(self) -> str:
        return f"{self.client}:{self.request_id}"


@dataclass
class _Slot:
    index: int
    actor: Any = None
    state: str = "empty"  # empty -> placing -> loading -> ready <-> busy; failed
    since: float = 0.0
    info: WorkerInfo | None = None
    job: _Job | None = None


@dataclass
class _Client:
    last_seen: float
    events: list = field(default_factory=list)
    undelivered: dict = field(default_factory=dict)  # request id -> result ref, until acked
    held: dict = field(default_factory=dict)  # seq -> job that arrived before an earlier one
    next_seq: int = 1
    early_cancels: set = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class PoolDispatcher:
    """The pool's queue and workers (an async actor: its methods never run concurrently
    between two awaits, so its state needs no locks)."""

    def __init__(self, pool: str, spec: PoolSpec) -> None:
        self.pool, self.spec = pool, spec
        self.queue: collections.deque[_Job] = collections.deque()
        self.slots = [_Slot(i) for i in range(spec.workers)]
        self.clients: dict[str, _Client] = {}
        self.jobs: dict[str, _Job] = {}
        self.serial = 0  # workers started
        self.started = 0  # requests started
        self.start_error = ""
        self._monitor: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # ---- the client's calls ---------------------------------------------------------------
    async def hello(self, client: str) -> tuple[Any, PoolSpec]:
        self._client(client)
        self._ensure_started()
        return local_versions(), self.spec

    async def submit(self, client: str, seq: int, request_id: int, request_ref: list,
                     timeout_s: float, grace_s: float) -> None:
        """Queue a request. `seq` (1, 2, ... per client) restores the client's order: an
        async actor may start two calls of one caller out of order."""
        c = self._client(client)
        self._ensure_started()
        job = _Job(client, request_id, request_ref, float(timeout_s), float(grace_s))
        self.jobs[job.key] = job
        c.held[seq] = job
        if request_id in c.early_cancels:  # its cancel overtook it
            c.early_cancels.discard(request_id)
            self._finish(job, failed_meta("cancelled"))
        while c.next_seq in c.held:  # queue the client's requests in its own order
            held = c.held.pop(c.next_seq)
            c.next_seq += 1
            if not held.done:
                self.queue.append(held)
        self._dispatch()

    async def cancel(self, client: str, request_id: int) -> None:
        c = self._client(client)
        job = self.jobs.get(f"{client}:{request_id}")
        if job is None:
            c.early_cancels.add(request_id)
            return
        if job.done:
            return
        slot = self._slot_of(job)
        if slot is None:  # queued, or held until an earlier request of its client arrives
            if job in self.queue:
                self.queue.remove(job)
            self._finish(job, failed_meta("cancelled"))
        elif job.cancel_at is None:
            job.cancel_at = time.monotonic()
            slot.actor.cancel.remote(job.key)

    async def poll(self, client: str, acks: list, wait_s: float) -> list:
        """The client's events (progress, starts, results), waiting up to `wait_s` for one."""
        c = self._client(client)
        for rid in acks:
            c.undelivered.pop(rid, None)
        if not c.events:
            c.wake.clear()
            try:
                await asyncio.wait_for(c.wake.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        c.last_seen = time.monotonic()
        out, c.events = c.events, []
        return out

    async def progress(self, key: str, seq: int, stage: str, fraction: float,
                       elapsed_s: float) -> None:
        """A worker's progress (`seq` = 1, 2, ... per request). Calls to an async actor may
        start out of order: an early one waits until those before it arrived."""
        job = self.jobs.get(key)
        if job is None or job.done or not job.started:
            return
        job.progress_held[seq] = ProgressEvent(job.request_id, stage, fraction, elapsed_s)
        while job.progress_seq + 1 in job.progress_held:
            job.progress_seq += 1
            self._post(job.client, job.progress_held.pop(job.progress_seq))

    async def workers(self) -> list:
        return [(s.state, s.info) for s in self.slots]

    async def stop_workers(self) -> None:
        """Kill every worker (before the pool itself is killed)."""
        for slot in self.slots:
            self._kill(slot)
        for job in list(self.jobs.values()):
            if not job.done:
                self._finish(job, failed_meta("the generation pool was stopped"))

    # ---- internals ------------------------------------------------------------------------
    def _client(self, client: str) -> _Client:
        c = self.clients.get(client)
        if c is None:
            c = self.clients[client] = _Client(time.monotonic())
        c.last_seen = time.monotonic()
        return c

    def _post(self, client: str, event: Any) -> None:
        c = self.clients.get(client)
        if c is not None:
            c.events.append(event)
            c.wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_started(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(self._watch())
        for slot in self.slots:
            if slot.state in ("empty", "failed"):
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        self.serial += 1
        name = f"worker-{self.serial}"
        slot.actor = _WORKER.options(
            num_cpus=self.spec.num_cpus, num_gpus=self.spec.num_gpus, max_concurrency=4,
            max_restarts=0, namespace=NAMESPACE,
        ).remote(self.spec, self.pool, name)
        slot.state, slot.since, slot.info, slot.job = "placing", time.monotonic(), None, None
        self._spawn(self._bring_up(slot, slot.actor))

    async def _bring_up(self, slot: _Slot, actor: Any) -> None:
        try:
            await actor.hello.remote()  # placed and its process is up
            if slot.actor is not actor:
                return
            slot.state, slot.since = "loading", time.monotonic()
            info = await actor.load.remote()
        except RayError as exc:
            if slot.actor is actor:
                self._kill(slot)
                slot.state = "failed"
                self.start_error = f"a generation worker could not start: {_cause(exc)}"
                if not any(s.state in ("placing", "loading", "ready", "busy")
                           for s in self.slots):
                    self._fail_queue(self.start_error)
            return
        if slot.actor is actor:
            slot.info, slot.state, self.start_error = info, "ready", ""
            self._dispatch()

    def _dispatch(self) -> None:
        for slot in self.slots:
            if not self.queue:
                return
            if slot.state != "ready":
                continue
            job = self.queue.popleft()
            slot.state, slot.job = "busy", job
            job.started = time.monotonic()
            self.started += 1
            self._post(job.client, Started(job.request_id, slot.info, self.started))
            self._spawn(self._serve(slot, slot.actor, job))

    async def _serve(self, slot: _Slot, actor: Any, job: _Job) -> None:
        meta_ref, stream_ref = actor.run.options(num_returns=2).remote(job.key, job.request_ref[0])
        try:
            meta = await meta_ref
        except RayError as exc:
            if slot.actor is actor:
                self._replace(slot)
            if job.done:
                return
            if self._never_began(job):
                job.retried, job.started = True, 0.0
                self.queue.appendleft(job)
                self._dispatch()
            else:
                self._finish(job, failed_meta(f"the generation worker died: {_cause(exc)}"))
            return
        if not job.done:
            self._finish(job, meta, stream_ref)
        if slot.actor is actor and slot.job is job:
            slot.job, slot.state = None, "ready"
            self._dispatch()

    def _finish(self, job: _Job, meta: str, stream_ref: Any = None) -> None:
        job.done = True
        self.jobs.pop(job.key, None)
        c = self.clients.get(job.client)
        if c is None:
            return
        if stream_ref is not None:
            c.undelivered[job.request_id] = stream_ref
        self._post(job.client, Finished(job.request_id, meta,
                                        None if stream_ref is None else [stream_ref]))

    @staticmethod
    def _never_began(job: _Job) -> bool:
        """A job whose worker died before it reported any progress, not cancelled, and not yet
        queued again: its worker was most likely dead before the job reached it (an idle
        worker on a node that just went away is still "ready" here until a call to it fails),
        so it gets one more worker. Once only, so that a request which itself kills its
        worker costs two workers, not all of them."""
        return (not job.retried and job.cancel_at is None and job.progress_seq == 0
                and not job.progress_held)

    def _fail_queue(self, error: str) -> None:
        while self.queue:
            self._finish(self.queue.popleft(), failed_meta(error))

    def _slot_of(self, job: _Job) -> _Slot | None:
        return next((s for s in self.slots if s.job is job), None)

    def _kill(self, slot: _Slot) -> None:
        if slot.actor is not None:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass
        slot.actor, slot.job, slot.info, slot.state = None, None, None, "empty"

    def _replace(self, slot: _Slot) -> None:
        """Kill the slot's worker and start a fresh one (it loads again)."""
        self._kill(slot)
        self._start(slot)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_S)
            try:
                self._check(time.monotonic())
            except Exception:  # never let the monitor die
                pass

    def _check(self, now: float) -> None:
        for slot in self.slots:
            job = slot.job
            if slot.state != "busy" or job is None:
                continue
            if job.cancel_at is not None and now - job.cancel_at > job.grace_s:
                self._finish(job, failed_meta("cancelled"))
                self._replace(slot)
            elif now - job.started > job.timeout_s:
                self._finish(job, failed_meta(f"timed out after {job.timeout_s:g} s"))
                self._replace(slot)
        for client, c in list(self.clients.items()):
            if now - c.last_seen > CLIENT_GONE_S:
                self._forget(client)
        if self.queue and not any(s.state in ("loading", "ready", "busy") for s in self.slots):
            placing = [s for s in self.slots if s.state == "placing"]
            if placing and min(now - s.since for s in placing) > PLACEMENT_S:
                self._fail_queue(
                    f"no node of the Ray cluster has room for a generation worker (it needs "
                    f"{self.spec.num_cpus:g} CPU and {self.spec.num_gpus:g} GPU); waited "
                    f"{PLACEMENT_S:g} s")
        self._dispatch()

    def _forget(self, client: str) -> None:
        """A client that went away: drop its queued requests, cancel its running ones."""
        self.clients.pop(client, None)
        for job in list(self.queue):
            if job.client == client:
                self.queue.remove(job)
                self._finish(job, failed_meta("the client went away"))
        for slot in self.slots:
            if slot.job is not None and slot.job.client == client and slot.job.cancel_at is None:
                slot.job.cancel_at = time.monotonic()
                slot.actor.cancel.remote(slot.job.key)


def _cause(exc: BaseException) -> str:
    """One line for a Ray failure: what died, without Ray's pages of text."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

    if isinstance(exc, RayTaskError):  # an exception inside load(): the worker says why
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return error_line(cause)
    if isinstance(exc, ActorUnavailableError):
        return "its node or process became unreachable (ActorUnavailableError)"
    if isinstance(exc, ActorDiedError):
        text = str(exc)
        if "creation task" in text:  # __init__ / load failed: find the worker's own words
            for line in text.splitlines():
                if "Error:" in line and "ActorDiedError" not in line:
                    return clean_line(line.strip())
        return "its process or node died (ActorDiedError)"
    return error_line(exc)


_WORKER = ray.remote(GenerationWorker)


def find_or_create_dispatcher(pool: str, spec: PoolSpec) -> Any:
    """The pool's dispatcher: the existing one of that name, else a new one with `spec`."""
    return ray.remote(PoolDispatcher).options(
        name=pool_actor_name(pool), namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, num_cpus=0, resources=dict(HEAD_RESOURCE), max_restarts=0,
        max_concurrency=1000,
    ).remote(pool, spec)
