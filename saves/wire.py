"""A level that arrives from another machine (a Ray worker's result), checked exactly as the
loader checks a stranger's world file.

Owns: `LevelCodec`, the codec the command line gives `generation.cluster`. A level travels in
the world file format itself: the file header, then one checksummed CHNK record per chunk
(ids 0, 1, ... in order; `saves.records` framing, `saves.chunks` payloads). The receiver runs
the loader's own functions on those bytes, no second validator:
- `scan_records`: framing, checksums, record count and sub-header sizes;
- `parse_chunk_header` and `saves.format.Budget`: declared shapes, splat counts and decoded
  sizes under the same `LoadLimits`;
- `decode_chunk`: fresh arrays (nothing keeps pointing into the transport's buffers) that pass
  `SplatChunk.validate` (dtypes, finite values, unit quaternions, sane scales);
- the step fields that come along (camera, backend, timings) go through `step_to_json` /
  `step_from_json` as a STEP record would.
Every refusal is a `SaveFormatError` (one line).
Does not own: the Ray transport (`generation.cluster*`) or what a refused result means to the
caller (a failed result; the world is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from engine.camera import Camera
from engine.history import Step
from engine.splats import SplatChunk
from saves.chunks import decode_chunk, encode_chunk, parse_chunk_header
from saves.errors import SaveFormatError
from saves.format import Budget
from saves.limits import LoadLimits
from saves.records import (FORMAT_VERSION, TAG_CHNK, BufferSource, dump_json, encode_file_header,
                           encode_record, parse_json, scan_records)
from saves.steps import step_from_json, step_to_json


@dataclass(frozen=True)
class LevelCodec:
    limits: LoadLimits = LoadLimits()

    # ---- sender (a worker) ------------------------------------------------------------
    def encode_level(self, chunks: Sequence[SplatChunk]) -> np.ndarray:
        """The chunks as one record stream.  # [bytes] uint8"""
        parts: list[Any] = [encode_file_header()]
        for i, chunk in enumerate(chunks):
            parts.extend(encode_record(TAG_CHNK, encode_chunk(i, chunk, "raw")))
        views = [memoryview(p).cast("B") for p in parts]
        out = np.empty(sum(v.nbytes for v in views), np.uint8)
        at = 0
        for v in views:
            out[at:at + v.nbytes] = np.frombuffer(v, np.uint8)
            at += v.nbytes
        return out

    # ---- receiver (the app's side) ------------------------------------------------------
    def decode_level(self, stream: Any, level: int) -> tuple[SplatChunk, ...]:
        """The chunks of a received stream, each of scale level `level`, or SaveFormatError."""
        limits = self.limits
        if not (isinstance(stream, np.ndarray) and stream.dtype == np.uint8 and stream.ndim == 1):
            raise SaveFormatError("the level is not a byte stream")
        if stream.nbytes > limits.max_file_bytes:
            raise SaveFormatError(f"the level is {stream.nbytes} bytes (limit "
                                  f"{limits.max_file_bytes})")
        scan = scan_records(BufferSource(stream), limits)
        if scan.version != FORMAT_VERSION:
            raise SaveFormatError(f"the level is in format version {scan.version}, not "
                                  f"{FORMAT_VERSION}")
        if scan.end_complete != scan.size:
            raise SaveFormatError("the level stream is cut short")
        if len(scan.records) > limits.max_chunks_per_step:
            raise SaveFormatError(f"the level holds more than {limits.max_chunks_per_step} chunks")
        budget = Budget(limits)
        out: list[SplatChunk] = []
        for rec in scan.records:
            if rec.tag != TAG_CHNK:
                raise SaveFormatError(f"a {rec.tag} record in a level stream")
            desc = parse_chunk_header(rec.body, rec.length, rec.data_start, limits)
            if desc.id != len(out):
                raise SaveFormatError(f"chunk {desc.id} is out of order")
            budget.add_chunk()
            budget.claim(desc)
            chunk = decode_chunk(desc, stream[rec.payload_offset:rec.end])
            if chunk.level != level:
                raise SaveFormatError(f"chunk {desc.id} is level {chunk.level}, expected {level}")
            out.append(chunk)
        return tuple(out)

    def check_step(self, camera: Camera | None, backend: Mapping[str, Any],
                   timings: Mapping[str, Any]) -> None:
        """The fields a result adds to a step, checked as a STEP record of a file would be."""
        try:
            step = Step(0, None, "zoom", (), camera=camera, backend=dict(backend),
                        timings=dict(timings))
            body = parse_json(dump_json(step_to_json(step, True)), self.limits, "the result")
        except (ValueError, TypeError) as exc:
            raise SaveFormatError(f"the result's step fields: {exc}") from None
        step_from_json(body, self.limits)
