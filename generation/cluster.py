"""`RayGenerationService`: the app's generator protocol over a pool of warm workers on a Ray
cluster (docs/cluster.md).

Owns: exactly the protocol of `generation.service.GenerationService` — `submit`, `poll`
(never blocks), `cancel`, `close`, `needs_observation = False`, `ProgressEvent`s per stage
while a request runs and one result per request (a `ZoomResult`; a `NewResult` for a
`generation.new_request.NewRequest`) with its request re-attached — over a bridge process
(`generation.cluster_bridge`, the Ray driver) started lazily and again after it ends. The
guarantees kept on the app's side: every request gets exactly one result; when the bridge
reports the cluster down, exits, does not connect within `connect_timeout_s`, or stops
hearing from the cluster for `lost_after_s` while requests are in flight, each of them fails
with one line and the next submit connects afresh (the app keeps flying: nothing here
blocks). `overrides` are added under every request's settings (per-run flags such as the
working size); the model config itself is read on the workers, where the models are.
The pool's own guarantees (warm workers, queue order across clients, cancel, timeout,
replacing dead workers) live on the cluster (`generation.cluster_pool`); results are checked
with the injected `codec` (the command line gives `saves.wire.LevelCodec`: the file loader's
checks) before they reach `poll`.
Does not own: Ray itself (never imported in this process), the wire format
(`generation.cluster_wire`) or the command line's choice of service (`cli.cluster`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import multiprocessing as mp
import os
import queue
import time
from typing import Any, Callable, Mapping

from engine.errors import UserError
from engine.messages import ProgressEvent, ZoomResult
from generation.cluster_bridge import (Beat, BridgeArgs, Cancel, Delivered, Down, Hello,
                                       Placement, StopPool, Submit, bridge_main, is_loopback,
                                       log_path)
from generation.cluster_wire import (DEFAULT_POOL, PoolSpec, Request, Result, ResultCodec,
                                     Versions, WorkerInfo, clean_line, local_versions)
from generation.new_request import NewRequest, NewResult
from generation.service import DEFAULT_RUNNER, DEFAULT_TIMEOUT_S
from generation.service_config import ServiceConfig, check_address

DEFAULT_NEW_RUNNER = "generation.new_request:grow"
SHARED_MACHINE_NICENESS = 10  # workers of a pool on the app's own machine yield to the frame


class ClusterUnavailableError(UserError):
    """`--cluster` was asked for but Ray is not installed here."""


class RayGenerationService:
    name = "ray"
    version = "1"
    needs_observation = False  # the workers observe the old world themselves (stage 1)

    def __init__(self, address: str, *, codec: ResultCodec,
                 overrides: Mapping[str, Any] | None = None, workers: int = 1,
                 num_cpus: float = 1.0, num_gpus: float = 0.0,
                 timeout_s: float = DEFAULT_TIMEOUT_S, cancel_grace_s: float = 5.0,
                 pool: str = DEFAULT_POOL, runner: str = DEFAULT_RUNNER,
                 new_runner: str = DEFAULT_NEW_RUNNER, warm: bool | None = None,
                 lost_after_s: float = 10.0, connect_timeout_s: float = 120.0,
                 versions: Versions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = check_address(address, "--cluster")
        if importlib.util.find_spec("ray") is None:
            raise ClusterUnavailableError(
                f"--cluster {self.address}: Ray is not installed here (pip install "
                "'wonderzoom[cluster]')")
        if overrides:  # refuse bad settings here, in the caller, with one line
            from generation.config import GenerationConfig

            GenerationConfig.from_settings(overrides)
        self.overrides = dict(overrides or {})
        self.pool = pool
        self.timeout_s = float(timeout_s)
        self.cancel_grace_s = float(cancel_grace_s)
        self.lost_after_s = float(lost_after_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.clock = clock
        self.spec = PoolSpec(
            workers=int(workers), num_cpus=float(num_cpus), num_gpus=float(num_gpus),
            runner=runner, new_runner=new_runner, codec=codec,
            versions=versions or local_versions(),
            warm=(runner == DEFAULT_RUNNER) if warm is None else bool(warm),
            niceness=SHARED_MACHINE_NICENESS if is_loopback(self.address) else 0,
            app_session=os.getsid(0) if is_loopback(self.address) and hasattr(os, "getsid")
            else 0)
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._inbox: Any = None
        self._outbox: Any = None
        self._started_at = 0.0
        self._last_beat = 0.0
        self._hello: Hello | None = None
        self._active: dict[int, Request] = {}  # in submit order
        self._out: list[ProgressEvent | Result] = []
        self.placements: dict[int, WorkerInfo] = {}  # where each request ran (tests, HUD)
        self.start_order: dict[int, int] = {}  # when, in the pool's order over all clients
        self._closed = False

    @classmethod
    def from_config(cls, config: ServiceConfig, *, codec: ResultCodec,
                    overrides: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> "RayGenerationService":
        return cls(config.address, codec=codec, overrides=overrides, workers=config.workers,
                   num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                   timeout_s=config.timeout_s, **kwargs)

    # ---- protocol -----------------------------------------------------------------------
    def submit(self, request: Request) -> None:
        if self._closed:
            raise RuntimeError("the generation service is closed")
        if self.overrides:
            request = dataclasses.replace(request,
                                          settings={**self.overrides, **request.settings})
        self._active[request.request_id] = request
        self._ensure_bridge()
        self._inbox.put(Submit(request))

    def cancel(self, request_id: int) -> None:
        if request_id in self._active and self._bridge_alive():
            self._inbox.put(Cancel(request_id))

    def poll(self) -> list[ProgressEvent | Result]:
        self._drain()
        if self._proc is not None:
            now = self.clock()
            if not self._proc.is_alive():
                self._drain()  # a Down or a result may have arrived just before the exit
                if self._proc is not None:
                    self._lost(f"lost the Ray cluster at {self.address} (its driver process "
                               f"exited with code {self._proc.exitcode})")
            elif self._active and self._hello is None and \
                    now - self._started_at > self.connect_timeout_s:
                self._lost(f"could not connect to the Ray cluster at {self.address} within "
                           f"{self.connect_timeout_s:g} s")
            elif self._active and self._hello is not None and \
                    now - self._last_beat > self.lost_after_s:
                self._lost(f"lost contact with the Ray cluster at {self.address} (no answer for "
                           f"{self.lost_after_s:g} s)")
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._active.clear()
        self._stop_bridge(graceful=True)

    def stop_pool(self, timeout_s: float = 60.0) -> None:
        """End the pool on the cluster (its warm workers too). Pools outlive their clients so
        the next app finds the models loaded; tests and `--cluster local` end them."""
        if self._closed:
            return
        self._ensure_bridge()
        self._inbox.put(StopPool())
        self._proc.join(timeout_s)
        self._drain()
        self._stop_bridge(graceful=False)

    # ---- introspection ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self._active)

    @property
    def cluster_versions(self) -> Versions | None:
        return None if self._hello is None else self._hello.cluster

    @property
    def bridge_pid(self) -> int | None:
        return self._proc.pid if self._bridge_alive() else None

    # ---- internals ----------------------------------------------------------------------
    def _bridge_alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def _ensure_bridge(self) -> None:
        if self._bridge_alive():
            return
        self._stop_bridge(graceful=False)
        self._inbox, self._outbox = self._ctx.Queue(), self._ctx.Queue()
        local_cpus = max(1, math.ceil(self.spec.workers * self.spec.num_cpus))
        args = BridgeArgs(self.address, self.pool, self.spec, self.timeout_s,
                          self.cancel_grace_s, str(log_path()), local_cpus)
        self._proc = self._ctx.Process(target=bridge_main, name="wonderzoom-ray-bridge",
                                       daemon=True, args=(args, self._inbox, self._outbox))
        self._proc.start()
        self._started_at = self.clock()
        self._hello = None

    def _drain(self) -> None:
        while self._outbox is not None:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            except Exception:  # a message cut short by a dying bridge
                return
            if isinstance(item, Beat):
                self._last_beat = self.clock()
            elif isinstance(item, ProgressEvent):
                if item.request_id in self._active:
                    self._out.append(item)
            elif isinstance(item, Delivered):
                req = self._active.pop(item.result.request_id, None)
                if req is None:
                    item.level.free()
                else:
                    self._out.append(dataclasses.replace(item.result, chunks=item.level.take(),
                                                         request=req))
            elif isinstance(item, (ZoomResult, NewResult)):
                req = self._active.pop(item.request_id, None)
                if req is not None:
                    self._out.append(dataclasses.replace(item, request=req))
            elif isinstance(item, Placement):
                if item.request_id in self._active:
                    self.placements[item.request_id] = item.worker
                    self.start_order[item.request_id] = item.order
            elif isinstance(item, Hello):
                self._hello = item
                self._last_beat = self.clock()
            elif isinstance(item, Down):
                self._lost(clean_line(item.error))
                return

    def _drain_unread(self) -> None:
        """Free the shared memory of results nobody will read (the bridge is going away)."""
        while self._outbox is not None:
            try:
                item = self._outbox.get(timeout=0.05)
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            except Exception:
                return
            if isinstance(item, Delivered):
                item.level.free()

    def _lost(self, error: str) -> None:
        """Every request in flight fails with `error`; the next submit connects afresh."""
        for rid, req in list(self._active.items()):
            kind = NewResult if isinstance(req, NewRequest) else ZoomResult
            self._out.append(kind(rid, False, error=error, request=req))
        self._active.clear()
        self._stop_bridge(graceful=False)

    def _stop_bridge(self, graceful: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive() and graceful:
            try:
                self._inbox.put(None)
            except (OSError, ValueError):
                pass
            proc.join(timeout=15.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=3.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=3.0)
        self._drain_unread()
        for q in (self._inbox, self._outbox):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self._proc = self._inbox = self._outbox = None
        self._hello = None
