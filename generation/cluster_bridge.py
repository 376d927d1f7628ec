"""The app's Ray driver: a child process between the app and a Ray cluster.

Owns: connecting (`ray.init`: a private instance on this machine for "local", a cluster this
machine is a node of for HOST:PORT, Ray Client for ray://HOST:PORT), refusing a cluster that
runs other versions (one line, before anything of ours is created there), finding or creating
the pool's dispatcher, forwarding the app's submits and cancels, long-polling the dispatcher
for progress and results, fetching each result's chunk stream from the object store and
turning it into a checked `ZoomResult` / `NewResult` with the codec (here, so the frame
loop's process never pays for it) whose arrays reach the app through one shared-memory
block (`SharedLevel`), heartbeats while the cluster answers, and, when anything
of that fails, one `Down` line to the app, after which it exits.
Why a separate process: a Ray driver whose cluster disappears is terminated by Ray itself
(~60 s after the head stops answering), and Ray's threads, imports and deserialisation have
no place in the frame loop's process. Ray's own messages go to a log file, not the terminal.
Does not own: the protocol the app sees (`generation.cluster`), the actors
(`generation.cluster_pool`), the wire format (`generation.cluster_wire`).
Imports Ray only inside `bridge_main`.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.cluster_wire import (NAMESPACE, Finished, PoolSpec, Request, Started, Versions,
                                     WorkerInfo, error_line, failed_meta, unpack_result,
                                     version_mismatch)
from generation.service_config import CLIENT_SCHEME, LOCAL_ADDRESS

POLL_WAIT_S = 0.5  # the dispatcher answers a poll at once with events, else after this
LOOP_S = 0.05  # how often the app's commands are read (a submit waits at most this long)
BEAT_EVERY_S = 0.5
REACH_TIMEOUT_S = 5.0
CLIENT_ATTEMPTS = 3
BRIDGE_NICENESS = 10  # background work, like the local worker: the frame loop comes first
MAX_LOG_BYTES = 8 << 20
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 (binds loopback)
AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV = \
    "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


# ---- messages: app -> bridge -----------------------------------------------------------------
@dataclass(frozen=True)
class Submit:
    request: Request


@dataclass(frozen=True)
class Cancel:
    request_id: int


@dataclass(frozen=True)
class StopPool:
    """End the pool's actors on the cluster (its warm workers too), then exit."""


# ---- messages: bridge -> app -----------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    cluster: Versions
    spec: PoolSpec  # the pool as it is (its first client chose it)


@dataclass(frozen=True)
class Beat:
    pass


@dataclass(frozen=True)
class Placement:
    request_id: int
    worker: WorkerInfo
    order: int  # the pool's start order across all its clients


ARRAYS = ("positions", "rotations", "log_scales", "opacity_logits", "sh_dc", "s_native",
          "sh_rest")  # float32 arrays of a SplatChunk


@dataclass(frozen=True)
class SharedLevel:
    """A checked level in one shared-memory block: the pipe to the app carries only this
    (a 60 MB level through the pipe held the app's `poll` for ~0.5 s; a copy out of shared
    memory takes ~20 ms)."""

    name: str
    chunks: tuple  # per chunk: (level, origin (3 floats), ((array, shape, offset), ...))

    @classmethod
    def put(cls, chunks: Any) -> "SharedLevel":
        import numpy as np
        from multiprocessing import shared_memory

        layout, offset = [], 0
        for c in chunks:
            arrays = []
            for name in ARRAYS:
                a = getattr(c, name)
                arrays.append((name, tuple(a.shape), offset))
                offset += a.nbytes
            layout.append((int(c.level), tuple(float(x) for x in c.origin), tuple(arrays)))
        shm = shared_memory.SharedMemory(create=True, size=max(offset, 1))
        try:
            for c, (_, _, arrays) in zip(chunks, layout):
                for name, shape, at in arrays:
                    a = getattr(c, name)
                    np.ndarray(shape, np.float32, shm.buf, at)[...] = a
        finally:
            shm.close()
        return cls(shm.name, tuple(layout))

    def take(self) -> dict:
        """The chunks, copied out; the block is freed."""
        import numpy as np
        from multiprocessing import shared_memory

        from engine.splats import SplatChunk

        shm = shared_memory.SharedMemory(name=self.name)
        try:
            out = {}
            for i, (level, origin, arrays) in enumerate(self.chunks):
                data = {name: np.ndarray(shape, np.float32, shm.buf, at).copy()
                        for name, shape, at in arrays}
                out[i] = SplatChunk(origin=np.array(origin, np.float64), level=level, **data)
            return out
        finally:
            shm.close()
            shm.unlink()

    def free(self) -> None:
        from multiprocessing import shared_memory

        try:
            shm = shared_memory.SharedMemory(name=self.name)
        except FileNotFoundError:
            return
        shm.close()
        shm.unlink()


@dataclass(frozen=True)
class Delivered:
    result: Any  # a ZoomResult / NewResult whose chunks wait in `level`
    level: SharedLevel


@dataclass(frozen=True)
class Down:
    error: str  # one line; the bridge exits after sending it


@dataclass(frozen=True)
class BridgeArgs:
    address: str  # "local", HOST:PORT or ray://HOST:PORT
    pool: str
    spec: PoolSpec
    timeout_s: float
    cancel_grace_s: float
    log_path: str
    local_cpus: int  # "local": the private instance's CPUs


def log_path() -> Path:
    """Where the bridges of this user write Ray's messages."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"wonderzoom-ray-{uid}.log"


def is_loopback(address: str) -> bool:
    if address == LOCAL_ADDRESS:
        return True
    host = address.removeprefix(CLIENT_SCHEME).rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def bridge_main(args: BridgeArgs, inbox: Any, outbox: Any) -> None:
    """The bridge process (spawned): connect, then serve until the app says stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app, which closes us
    _redirect_output(args.log_path)
    try:
        os.nice(BRIDGE_NICENESS)
    except (AttributeError, OSError):
        pass
    if is_loopback(args.address):  # keep Ray on 127.0.0.1 (Linux otherwise picks the LAN IP)
        os.environ[LOOPBACK_ENV] = "0"
    _token_auth(args.address)
    try:
        _Bridge(args, inbox, outbox).run()
    except _Stop:
        pass
    except Exception as exc:  # never leave the app waiting: say why, in one line
        outbox.put(Down(f"the connection to the Ray cluster failed: {error_line(exc)}"))


class _Stop(Exception):
    pass


class _Bridge:
    def __init__(self, args: BridgeArgs, inbox: Any, outbox: Any) -> None:
        self.args, self.inbox, self.outbox = args, inbox, outbox
        self.client = uuid.uuid4().hex
        self.live: dict[int, tuple[Request, Any]] = {}  # request id -> (request, its ObjectRef)
        self.fetching: dict[Any, tuple[int, str]] = {}  # stream ref -> (request id, meta)
        self.acks: list[int] = []
        self.last_beat = 0.0
        self.ray: Any = None
        self.dispatcher: Any = None
        self.parent = os.getppid()
        self.seq = 0

    def down(self, error: str) -> None:
        self.outbox.put(Down(error))
        raise _Stop

    # ---- connecting ---------------------------------------------------------------------
    def run(self) -> None:
        where = f"the Ray cluster at {self.args.address}"
        try:
            import ray
        except ImportError:
            self.down("Ray is not installed: pip install 'wonderzoom[cluster]'")
        self.ray = ray
        self._reachable()
        try:
            self._init()
        except Exception as exc:
            self.down(_connect_error(self.args.address, exc))
        try:
            theirs = self._probe()
        except Exception as exc:
            self.down(f"{where} does not answer: {error_line(exc)}")
        ours = self.args.spec.versions
        if theirs is None:
            self.down(f"{where} has no wonderzoom installed: pip install "
                      f"'wonderzoom[cluster]=={ours.package}' on every node")
        mismatch = version_mismatch(ours, theirs, where)
        if mismatch:
            self.down(mismatch)
        from generation.cluster_pool import find_or_create_dispatcher

        try:
            self.dispatcher = find_or_create_dispatcher(self.args.pool, self.args.spec)
            cluster, spec = ray.get(self.dispatcher.hello.remote(self.client), timeout=60)
        except Exception as exc:
            self.down(f"{where}: the generation pool did not start: {error_line(exc)}")
        mismatch = version_mismatch(ours, cluster, f"the generation pool on {where}")
        if mismatch:
            self.down(mismatch)
        self.outbox.put(Hello(cluster, spec))
        self.serve()

    def _reachable(self) -> None:
        """Fail fast (one line) on an address nothing listens on: `ray.init` would wait."""
        address = self.args.address
        if address == LOCAL_ADDRESS:
            return
        host, _, port = address.removeprefix(CLIENT_SCHEME).rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), REACH_TIMEOUT_S).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self.down(f"cannot reach the Ray cluster at {address} ({reason}): is "
                      "`ray start --head` running there, and the port open?")

    def _init(self) -> None:
        ray, address = self.ray, self.args.address
        common = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        if address == LOCAL_ADDRESS:
            # "local": always a new instance (with no address Ray would join the last one
            # started on this machine, if any)
            ray.init(address="local", num_cpus=self.args.local_cpus, include_dashboard=False,
                     object_store_memory=1 << 30, **common)
            return
        for attempt in range(CLIENT_ATTEMPTS):
            try:
                ray.init(address=address, **common)
                return
            except ConnectionAbortedError:
                # Ray Client's server sometimes loses the process it forks for a new client
                # (ray-project/ray#63202, a gRPC race); a second try gets a fresh one
                if not address.startswith(CLIENT_SCHEME) or attempt == CLIENT_ATTEMPTS - 1:
                    raise
                ray.shutdown()
                time.sleep(1.0)

    def _probe(self) -> Versions | None:
        """The head node's versions, asked by a function shipped by value: it works even
        where our package is missing or different."""
        ray = self.ray

        def versions() -> tuple:
            import platform
            from importlib import metadata

            def version(dist: str) -> str | None:
                try:
                    return metadata.version(dist)
                except metadata.PackageNotFoundError:
                    return None
            try:
                from generation.cluster_wire import PROTOCOL_VERSION as protocol
            except Exception:
                protocol = -1
            return (version("wonderzoom"), protocol,
                    ".".join(platform.python_version_tuple()[:2]), version("ray"))

        task = ray.remote(versions).options(num_cpus=0,
                                            resources={"node:__internal_head__": 0.001})
        package, protocol, python, ray_version = ray.get(task.remote(), timeout=60)
        if package is None:
            return None
        return Versions(package, protocol, python, ray_version or "none")

    # ---- serving ------------------------------------------------------------------------
    def serve(self) -> None:
        ray = self.ray
        poll_ref = self.dispatcher.poll.remote(self.client, [], POLL_WAIT_S)
        while True:
            self._commands()
            try:
                ready, _ = ray.wait([poll_ref, *self.fetching], num_returns=1, timeout=LOOP_S,
                                    fetch_local=True)
                for ref in ready:
                    if ref == poll_ref:
                        self._events(ray.get(poll_ref))
                        poll_ref = self.dispatcher.poll.remote(self.client, self.acks,
                                                               POLL_WAIT_S)
                        self.acks = []
                    else:
                        self._deliver(ref)
            except ray.exceptions.RayError as exc:
                self.down(f"lost the Ray cluster at {self.args.address}: its generation pool "
                          f"stopped answering ({type(exc).__name__})")

    def _commands(self) -> None:
        if os.getppid() != self.parent:  # the app died without closing us
            self.ray.shutdown()
            raise _Stop
        while True:
            try:
                cmd = self.inbox.get_nowait()
            except queue.Empty:
                return
            if cmd is None:
                self.ray.shutdown()
                raise _Stop
            if isinstance(cmd, Submit):
                req = cmd.request
                ref = self.ray.put(req)
                self.live[req.request_id] = (req, ref)
                self.seq += 1
                self.dispatcher.submit.remote(self.client, self.seq, req.request_id, [ref],
                                              self.args.timeout_s, self.args.cancel_grace_s)
            elif isinstance(cmd, Cancel):
                self.dispatcher.cancel.remote(self.client, cmd.request_id)
            elif isinstance(cmd, StopPool):
                try:
                    self.ray.get(self.dispatcher.stop_workers.remote(), timeout=30)
                    self.ray.kill(self.dispatcher, no_restart=True)
                finally:
                    self.down("the generation pool was stopped")

    def _events(self, events: list) -> None:
        now = time.monotonic()
        if now - self.last_beat >= BEAT_EVERY_S:
            self.outbox.put(Beat())
            self.last_beat = now
        for ev in events:
            if isinstance(ev, Started):
                if ev.request_id in self.live:
                    self.outbox.put(Placement(ev.request_id, ev.worker, ev.order))
            elif isinstance(ev, Finished):
                self.acks.append(ev.request_id)
                if ev.stream and ev.request_id in self.live:
                    self.fetching[ev.stream[0]] = (ev.request_id, ev.meta)
                else:
                    self._result(ev.request_id, ev.meta, None)
            elif ev.request_id in self.live:  # a ProgressEvent
                self.outbox.put(ev)

    def _deliver(self, ref: Any) -> None:
        rid, meta = self.fetching.pop(ref)
        try:
            stream = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._result(rid, failed_meta(f"the result was lost on its way: {error_line(exc)}"),
                         None)
            return
        self._result(rid, meta, stream)

    def _result(self, rid: int, meta: str, stream: Any) -> None:
        entry = self.live.pop(rid, None)
        if entry is None:
            return
        result = unpack_result(entry[0], meta, stream, self.args.spec.codec)
        del stream  # the object store's copy can go
        if result.ok:
            import dataclasses

            level = SharedLevel.put(list(result.chunks.values()))
            self.outbox.put(Delivered(dataclasses.replace(result, chunks={}), level))
        else:
            self.outbox.put(result)


def token_available() -> bool:
    """A Ray authentication token is set up here (what `ray start` looks for)."""
    return bool(os.environ.get(AUTH_TOKEN_ENV) or os.environ.get(AUTH_TOKEN_PATH_ENV)
                or (Path.home() / ".ray" / "auth_token").is_file())


def _token_auth(address: str) -> None:
    """Ray's token authentication, before Ray is imported. Unless $RAY_AUTH_MODE says
    otherwise: a private instance gets a fresh token only this process knows (nothing is
    written to ~/.ray); for a cluster, a token set up here is sent, as `ray start` uses one
    (a cluster without authentication ignores it)."""
    if os.environ.get(AUTH_MODE_ENV) is not None:
        return
    if address == LOCAL_ADDRESS:
        os.environ[AUTH_MODE_ENV] = "token"
        if not token_available():
            os.environ[AUTH_TOKEN_ENV] = secrets.token_hex(32)
    elif token_available():
        os.environ[AUTH_MODE_ENV] = "token"


def _connect_error(address: str, exc: BaseException) -> str:
    text = str(exc)
    if "ersion mismatch" in text:  # Ray refuses a different Ray or Python itself
        return (f"version mismatch: the Ray cluster at {address} runs another Ray or Python "
                f"({error_line(exc)}); install the same versions on both")
    if "ray://" in address and isinstance(exc, (ImportError, ModuleNotFoundError)):
        return "ray:// needs Ray Client on this machine: pip install 'ray[client]'"
    if "node" in text.lower() and "ip address" in text.lower():
        return (f"this machine is not a node of the Ray cluster at {address}: join it with "
                f"`ray start --address {address}`, or use --cluster ray://HOST:10001 "
                "(Ray Client)")
    hint = "" if token_available() else (
        " (if it uses token authentication, put its token, from `ray get-auth-token` on the "
        "head, in ~/.ray/auth_token or $RAY_AUTH_TOKEN here)")
    return f"cannot connect to the Ray cluster at {address}: {error_line(exc)}{hint}"


def _redirect_output(path: str) -> None:
    """Send this process's stdout/stderr (Ray's C++ warnings included) to the log file."""
    try:
        p = Path(path)
        if p.exists() and p.stat().st_size > MAX_LOG_BYTES:
            p.unlink()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
