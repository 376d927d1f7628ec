"""`wonderzoom export --web`: a world as a static folder any web server (or phone) can show.

Owns: turning a history and its chunks (already loaded and validated by `saves.load_world`)
into the folder the browser viewer reads:
    index.html, viewer/*.js, viewer/viewer.css   the viewer (copied from `ui/web/viewer/`)
    manifest.json                                 levels, chunks, bounds, bands, cameras, prompts
    chunks/cNNNNN.wzc                             splats, 15 bytes each (`ui.web.chunkfile`)
What it computes: the LoD links at every step of the path root -> step (the timeline shows the
world as it stood at each step, so a splat's child link carries the step it appeared at),
web-sized chunks (a k-d split of each world chunk into at most `max_chunk_splats` splats, in
Morton order, each around the centre of its own box so float32 offsets stay small), and per
chunk its bounds and LoD band at each step from the *quantized* values the page will draw.
Does not own: reading world files (`saves/`, the caller passes `loaded.history` and
`loaded.chunks`), the quantization (`ui.web.chunkfile`), serving (`ui.web.serve`).
The folder is written next to its destination and swapped in at the end: an interrupted
export never leaves a half-written folder, and only a folder holding nothing, or a previous
export, is ever replaced.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from engine.camera import Camera
from engine.chunking import kd_rows
from engine.errors import UserError
from engine.history import History, HistoryError
from engine.lod import LodIndex, LodLinks, link_level
from engine.modulation import visible_band
from engine.render.camera_path import default_camera
from engine.splats import SplatChunk, SplatValidationError
from ui.web.chunkfile import LayoutTooTight, decode_chunk, encode_chunk

FORMAT = "wonderzoom-web"
FORMAT_VERSION = 1
VIEWER_DIR = Path(__file__).parent / "viewer"
VIEWER_FILES = ("index.html", "viewer.css", "main.js", "renderer.js", "sort-worker.js",
                "chunkfile.js", "manifest.js", "camera.js", "modulation.js", "controls.js")
DEFAULT_CHUNK_SPLATS = 8192
MIN_SPLIT_SPLATS = 64
NEVER = np.iinfo(np.int64).max
FOOTPRINT_SIGMAS = 3.0
START_WIDTH, START_HEIGHT = 1280, 720  # the start camera's aspect if the world has none


class WebExportError(UserError, ValueError):
    """The export cannot be made (unknown step, empty world, a destination that is not an
    earlier export). One readable line."""


@dataclass(frozen=True)
class WebExport:
    folder: Path
    step: int
    splats: int
    chunks: int
    chunk_bytes: int  # all chunk files together
    bytes_per_splat: float
    link_revisions: int  # splats whose child link changed twice (the timeline shows the last)


@dataclass
class _StepLinks:
    """LoD links of one world chunk at the last step, with the step each child appeared."""

    links: LodLinks
    child_step: np.ndarray  # [N] int64, NEVER where no child


# ---- LoD along the path ------------------------------------------------------------------
def links_along_path(levels: list[tuple[Camera | None, Mapping[int, SplatChunk]]]
                     ) -> tuple[dict[int, _StepLinks], int]:
    """What `engine.lod.build_lod_index` computes, step by step: the final links, plus for
    every splat the path step at which its child link appeared; and how many splats saw
    their child link change again later (then the timeline shows the final one early)."""
    index = LodIndex()
    older: dict[int, SplatChunk] = {}
    child_step: dict[int, np.ndarray] = {}
    revisions = 0
    for k, (camera, chunks) in enumerate(levels):
        before = {cid: index.links[cid].s_child.copy() for cid in older}
        if k == 0 or camera is None:
            for cid, chunk in chunks.items():
                index.links[cid] = LodLinks.root(len(chunk))
        else:
            link_level(index, camera, chunks, older)
        for cid, prev in before.items():
            now = index.links[cid].s_child
            appeared = (now > 0) & (prev == 0)
            child_step[cid][appeared] = k
            revisions += int(np.count_nonzero((prev > 0) & (now != prev)))
        for cid, chunk in chunks.items():
            child_step[cid] = np.full(len(chunk), NEVER, np.int64)
        older.update(chunks)
    return {cid: _StepLinks(index.links[cid], child_step[cid]) for cid in index.links}, revisions


# ---- web chunks --------------------------------------------------------------------------
def _morton(points: np.ndarray) -> np.ndarray:
    """[N, 3] -> permutation along a Z-order curve (10 bits per axis)."""
    lo = points.min(axis=0)
    span = float((points.max(axis=0) - lo).max())
    q = np.clip((points - lo) * (1023.0 / span if span > 0 else 0.0), 0, 1023).astype(np.uint64)
    code = np.zeros(len(points), np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


@dataclass
class _WebChunk:
    level: int  # path step index that appended it
    origin: np.ndarray  # [3] float64
    data: bytes
    count: int
    lo: np.ndarray  # [3] world AABB (3 sigma), from the quantized splats
    hi: np.ndarray
    bands: list[list]  # [[step, lo, hi or None], ...] where the band changes
    errors: dict


def _encode_rows(chunk: SplatChunk, links: _StepLinks, rows: np.ndarray, level: int,
                 steps: int) -> list[_WebChunk]:
    world = chunk.world_positions()[rows]
    order = _morton(world)
    rows, world = rows[order], world[order]
    origin = 0.5 * (world.min(axis=0) + world.max(axis=0))
    try:
        enc = encode_chunk(world - origin, chunk.rotations[rows], chunk.log_scales[rows],
                           chunk.opacity_logits[rows], chunk.sh_dc[rows], chunk.s_native[rows],
                           links.links.s_parent[rows], links.links.s_child[rows],
                           links.child_step[rows])
    except LayoutTooTight:
        if len(rows) <= MIN_SPLIT_SPLATS:
            raise
        halves = kd_rows(world, (len(rows) + 1) // 2)
        return [piece for half in halves
                for piece in _encode_rows(chunk, links, rows[half], level, steps)]
    dec = decode_chunk(enc.data)
    p = origin + dec.positions
    pad = FOOTPRINT_SIGMAS * np.exp(dec.log_scales.max(axis=1))
    bands: list[list] = []
    for k in range(level, steps):
        lo, hi = visible_band(dec.s_native, dec.s_parent, dec.s_child_at(k))
        band = [float(lo.min()), None if math.isinf(hi.max()) else float(hi.max())]
        if not bands or bands[-1][1:] != band:
            bands.append([k, *band])
    return [_WebChunk(level, origin, enc.data, len(rows), (p - pad[:, None]).min(axis=0),
                      (p + pad[:, None]).max(axis=0), bands, enc.errors)]


# ---- cameras -----------------------------------------------------------------------------
def _sweep(path, chunks: Mapping[int, SplatChunk], start: Camera) -> dict:
    """Where the zoom-sweep button flies: the deepest zoom's picked point (or the point on its
    camera's axis), down to that level's native scale there (`main.py render --zoom-sweep`)."""
    deepest = path[-1]
    for step in reversed(path):
        if step.kind == "zoom" and step.camera is not None:
            deepest = step
            break
    cam = deepest.camera or start
    if deepest.point is not None:
        target = np.asarray(deepest.point, np.float64)
    else:
        pts = np.concatenate([chunks[c].world_positions() for c in deepest.chunk_ids
                              if len(chunks[c])] or [np.zeros((0, 3))])
        if len(pts) == 0:
            pts = np.concatenate([c.world_positions() for c in chunks.values()])
        uv, z = cam.project(pts)
        front = z > 0
        off = np.hypot(uv[:, 0] - cam.cx, uv[:, 1] - cam.cy)
        off = np.where(front, off, np.inf)
        near_axis = off <= np.partition(off, min(32, len(off) - 1))[min(32, len(off) - 1)]
        depth = float(np.median(z[near_axis & front])) if (near_axis & front).any() else 1.0
        target = cam.unproject(np.array([[cam.cx, cam.cy]]), np.array([depth]))[0]
    s_end = float(cam.pixel_scale(target[None])[0])
    if not (math.isfinite(s_end) and s_end > 0):
        s_end = float(min(c.s_native.min() for c in chunks.values() if len(c)))
    return {"target": target.tolist(), "s_end": s_end}


def _camera_json(camera: Camera | None) -> dict | None:
    return None if camera is None else camera.to_dict()


# ---- the folder --------------------------------------------------------------------------
def export_web(
    history: History,
    chunks: Mapping[int, SplatChunk],  # every chunk the path needs, validated (load_world)
    out_dir: str | os.PathLike[str],
    step: int | None = None,  # default: the head
    *,
    title: str = "",
    max_chunk_splats: int = DEFAULT_CHUNK_SPLATS,
) -> WebExport:
    """Write the static web folder for the world at `step`. Raises `WebExportError`."""
    out_dir = Path(out_dir)
    step = history.head if step is None else step
    if step is None:
        raise WebExportError("the world has no steps yet")
    try:
        path = history.path(step)
    except HistoryError as exc:
        raise WebExportError(str(exc)) from None
    if not 1 <= max_chunk_splats <= 65536:
        raise WebExportError("max_chunk_splats must be in 1..65536")
    _check_destination(out_dir)
    for s in path:
        for cid in s.chunk_ids:
            if cid not in chunks:
                raise WebExportError(f"step {s.id} names chunk {cid}, which is missing")
            try:
                chunks[cid].validate()
            except SplatValidationError as exc:
                raise WebExportError(f"chunk {cid}: {exc}") from None
    if sum(len(chunks[c]) for s in path for c in s.chunk_ids) == 0:
        raise WebExportError("the world holds no splats")

    levels = [(s.camera if s.kind == "zoom" else None, {c: chunks[c] for c in s.chunk_ids})
              for s in path]
    links, revisions = links_along_path(levels)
    web_chunks: list[_WebChunk] = []
    for k, s in enumerate(path):
        for cid in s.chunk_ids:
            chunk = chunks[cid]
            if len(chunk) == 0:
                continue
            for rows in kd_rows(chunk.world_positions(), max_chunk_splats):
                web_chunks.extend(_encode_rows(chunk, links[cid], np.sort(rows), k, len(path)))

    start = path[0].camera
    if start is None:
        pts = np.concatenate([chunks[c].world_positions()[::max(1, len(chunks[c]) // 20000)]
                              for s in path for c in s.chunk_ids if len(chunks[c])])
        start = default_camera(pts, START_WIDTH, START_HEIGHT)
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": title,
        "step": step,
        "start": _camera_json(start),
        "sweep": _sweep(path, chunks, start),
        "steps": [{"id": s.id, "kind": s.kind, "prompt": s.prompt,
                   "camera": _camera_json(s.camera),
                   "point": None if s.point is None else [float(v) for v in s.point],
                   "splats": int(sum(len(chunks[c]) for c in s.chunk_ids))} for s in path],
        "chunks": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "chunks").mkdir()
        (tmp / "viewer").mkdir()
        total = 0
        for i, wc in enumerate(web_chunks):
            name = f"chunks/c{i:05d}.wzc"
            (tmp / name).write_bytes(wc.data)
            total += len(wc.data)
            manifest["chunks"].append({
                "file": name, "level": wc.level, "count": wc.count, "bytes": len(wc.data),
                "origin": wc.origin.tolist(), "lo": wc.lo.tolist(), "hi": wc.hi.tolist(),
                "bands": wc.bands})
        errors = {key: max(wc.errors[key] for wc in web_chunks) for key in web_chunks[0].errors}
        manifest["quantization"] = errors
        (tmp / "manifest.json").write_text(json.dumps(manifest, allow_nan=False))
        for name in VIEWER_FILES:
            target = tmp / (name if name == "index.html" else f"viewer/{name}")
            shutil.copyfile(VIEWER_DIR / name, target)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    splats = sum(wc.count for wc in web_chunks)
    return WebExport(out_dir, step, splats, len(web_chunks), total, total / splats, revisions)


def is_web_export(folder: str | os.PathLike[str]) -> bool:
    """True for a folder holding a manifest this exporter wrote."""
    manifest = Path(folder) / "manifest.json"
    try:
        if not manifest.is_file() or manifest.stat().st_size > 64 << 20:
            return False
        return json.loads(manifest.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise WebExportError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not is_web_export(out_dir):
            raise WebExportError(f"{out_dir}: not empty and not an earlier web export; "
                                 "name a new folder")
    elif not out_dir.parent.is_dir():
        raise WebExportError(f"{out_dir.parent}: no such folder")


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` (absent, empty or an earlier export) by the finished `tmp`."""
    os.chmod(tmp, 0o755)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)
