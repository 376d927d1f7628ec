"""What crosses between the app's Ray bridge and the cluster: names, versions, messages and
results as plain data.

Owns: the protocol version and the names of a pool's actors, `Versions` (package, protocol,
Python, Ray) and the one line that refuses a mismatch, `PoolSpec` (what a pool's workers
run and need), the messages the pool's dispatcher sends a client (`Started`, `Finished`; the
progress is `engine.messages.ProgressEvent`), `ResultCodec` (the protocol of the injected
codec that turns a level into bytes on the worker and checks the bytes on the client; the
command line wires `saves.wire.LevelCodec`, which checks them as the file loader checks a
stranger's file), and packing / unpacking a result: a worker sends a small JSON text (ok,
error, backend, timings, camera) and one byte stream for the chunks, never pickled objects
of ours, and the client rebuilds `ZoomResult` / `NewResult` only from what the codec accepted.
Does not own: Ray actors (`generation.cluster_pool`), the bridge process
(`generation.cluster_bridge`) or the app-side service (`generation.cluster`).
Imports no Ray, so the app process never loads it.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from engine.camera import Camera, CameraError
from engine.errors import UserError, first_line
from engine.messages import ZoomRequest, ZoomResult
from engine.splats import SplatChunk
from generation.new_request import NewRequest, NewResult

PROTOCOL_VERSION = 1  # bump when any message or the result layout changes
NAMESPACE = "wonderzoom"  # the Ray namespace of every pool
DEFAULT_POOL = "default"
MAX_META_CHARS = 4 << 20  # a result's JSON text (a step record's limit)
MAX_LINE_CHARS = 300

Request = ZoomRequest | NewRequest
Result = ZoomResult | NewResult


def pool_actor_name(pool: str) -> str:
    """The Ray name of a pool's dispatcher (named, detached: every client finds it)."""
    return f"wonderzoom-pool-{pool}"


def clean_line(text: Any, limit: int = MAX_LINE_CHARS) -> str:
    """`text` (from another machine) as one printable line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    flat = "".join(c if c.isprintable() else "?" for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_line(exc: BaseException) -> str:
    """One line for an exception: a `UserError` is already a sentence; others get their class
    name first (Ray's errors carry pages of text: only the first line is kept)."""
    if isinstance(exc, UserError):
        return clean_line(first_line(exc))
    return clean_line(f"{type(exc).__name__}: {first_line(exc)}")


# ---- versions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Versions:
    package: str  # wonderzoom
    protocol: int
    python: str  # major.minor
    ray: str

    def describe(self) -> str:
        return (f"wonderzoom {self.package} (protocol {self.protocol}, Python {self.python}, "
                f"Ray {self.ray})")


def local_versions() -> Versions:
    from importlib import metadata

    try:
        package = metadata.version("wonderzoom")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        package = "unknown"
    try:
        ray_version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        ray_version = "none"
    py = ".".join(platform.python_version_tuple()[:2])
    return Versions(package, PROTOCOL_VERSION, py, ray_version)


def version_mismatch(ours: Versions, theirs: Versions, where: str) -> str | None:
    """The one line that refuses talking to `theirs`, or None when they match."""
    if (ours.package, ours.protocol, ours.python, ours.ray) == \
            (theirs.package, theirs.protocol, theirs.python, theirs.ray):
        return None
    return (f"version mismatch: {where} runs {theirs.describe()}, this app runs "
            f"{ours.describe()}; install the same version on both (pip install "
            f"'wonderzoom[cluster]=={ours.package}')")


# ---- the pool -----------------------------------------------------------------------------
class ResultCodec(Protocol):
    """Chunks <-> one byte stream. `encode_level` runs on a worker; `decode_level` and
    `check_step` run on the client, on data from another machine, and raise `UserError`
    (one line) for anything a world file would not be allowed to hold."""

    def encode_level(self, chunks: Sequence[SplatChunk]) -> np.ndarray: ...  # [bytes] uint8

    def decode_level(self, stream: Any, level: int) -> tuple[SplatChunk, ...]: ...

    def check_step(self, camera: Camera | None, backend: Mapping[str, Any],
                   timings: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class PoolSpec:
    """What the first client of a pool asks for; later clients join the pool as it is."""

    workers: int
    num_cpus: float  # per worker; also its torch / OpenCV / ncnn threads
    num_gpus: float  # per worker
    runner: str  # "module:function" for a ZoomRequest
    new_runner: str  # "module:function" for a NewRequest
    codec: ResultCodec
    versions: Versions  # the creating client's: a worker that differs refuses to start
    warm: bool = True  # build the stage backends of the worker's model config at start
    niceness: int = 0  # >0 when the pool shares a machine with the app (a loopback address)
    app_session: int = 0  # then the app's session id (its scheduling group is left alone)

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs (the HUD, tests and benchmarks read it)."""

    name: str  # "worker-3": the pool's serial number of the actor
    pid: int
    node_id: str
    host: str
    loaded_s: float  # seconds its load() took (reading the config, building backends)
    config: str  # the model config file it read ("" = the builtin defaults)


@dataclass(frozen=True)
class Started:
    request_id: int
    worker: WorkerInfo
    order: int  # the pool's count of requests started so far: its queue order, all clients


@dataclass(frozen=True)
class Finished:
    request_id: int
    meta: str  # the result's JSON text (see pack_meta)
    stream: list | None = None  # [ObjectRef of the chunk stream] when ok (wrapped: not resolved)


# ---- results as plain data ------------------------------------------------------------------
def failed_meta(error: str) -> str:
    return json.dumps({"ok": False, "error": clean_line(error)})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def pack_result(result: Result, codec: ResultCodec) -> tuple[str, np.ndarray | None]:
    """A runner's result as (JSON text, chunk stream): what a worker sends back."""
    if not result.ok:
        return failed_meta(result.error or "failed"), None
    meta: dict[str, Any] = {"ok": True, "backend": dict(result.backend),
                            "timings": dict(result.timings)}
    if isinstance(result, NewResult):
        meta["camera"] = None if result.camera is None else result.camera.to_dict()
        meta["working_size"] = [int(v) for v in result.working_size]
    stream = codec.encode_level(list(result.chunks.values()))
    return json.dumps(meta, default=_plain, allow_nan=False), stream


def _meta(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        raise UserError("the result's description is missing or too large")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise UserError("the result's description is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("ok"), bool):
        raise UserError("the result's description is malformed")
    return meta


def _mapping(meta: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"the result's {key} is not an object")
    return value


def unpack_result(request: Request, meta_text: Any, stream: Any, codec: ResultCodec) -> Result:
    """The result of `request` from what a worker sent; anything the codec refuses (or a
    malformed description) is a failed result with one line, and no chunk of it survives."""
    rid = request.request_id
    is_new = isinstance(request, NewRequest)
    fail = (lambda e: NewResult(rid, False, error=e)) if is_new else \
        (lambda e: ZoomResult(rid, False, error=e))
    try:
        meta = _meta(meta_text)
        if not meta["ok"]:
            return fail(clean_line(meta.get("error", "failed")) or "failed")
        backend, timings = _mapping(meta, "backend"), _mapping(meta, "timings")
        camera = None
        if is_new:
            camera = Camera.from_dict(meta.get("camera"))
            size = meta.get("working_size")
            if not (isinstance(size, list) and len(size) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 16
                            for v in size)):
                raise UserError("the result's working_size is not two pixel counts")
        codec.check_step(camera, backend, timings)
        chunks = codec.decode_level(stream, request.level)
        if not chunks:
            raise UserError("the result holds no chunks")
    except (UserError, CameraError) as exc:
        return fail(f"refused the cluster's result: {error_line(exc)}")
    timings = {str(k): float(v) for k, v in timings.items()}
    if is_new:
        return NewResult(rid, True, camera=camera, chunks=dict(enumerate(chunks)),
                         working_size=(size[0], size[1]), backend=backend, timings=timings)
    return ZoomResult(rid, True, chunks=dict(enumerate(chunks)), backend=backend,
                      timings=timings)

