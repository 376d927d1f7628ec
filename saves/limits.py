"""Bounds applied while reading (and, with the defaults, while writing) world files.

Owns: `LoadLimits`. Every size a hostile file declares is compared with these numbers before
anything is allocated. Writers check the same defaults so they never produce a file that the
default loader would refuse. Does not own: the checks themselves (`saves.records`,
`saves.chunks`, `saves.steps`, `saves.format`).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.splats import MAX_SPLATS_PER_CHUNK

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class LoadLimits:
    max_file_bytes: int = 8 * GiB  # the loader reads the whole file: this bounds its memory
    max_records: int = 1 << 19  # each costs ~10 us to check: bounds the time a file can take
    max_chunks: int = 1 << 16
    max_splats_total: int = 64 << 20  # over the chunks that committed steps reference
    max_splats_per_chunk: int = MAX_SPLATS_PER_CHUNK
    max_decoded_bytes: int = 16 * GiB  # array bytes after decompression, all chunks together
    # ... and at most this many per byte of the file, plus the slack: what bounds a loader's
    # memory by the file's size. Real worlds decode to ~1x (raw) or ~1.2x (shuffle-zlib); a
    # degree-3 world whose higher SH coefficients are all zero to ~4x. A file of constant
    # arrays claiming 1000x is a decompression bomb.
    max_decoded_per_file_byte: float = 8.0
    decoded_slack_bytes: int = 64 * MiB
    max_decompression_ratio: float = 1100.0  # zlib cannot exceed ~1032:1; more is a lie
    max_json_bytes: int = 4 * MiB  # one STEP/HEAD record
    max_meta_bytes: int = 64 * KiB  # one META record
    max_chunk_header_bytes: int = 64 * KiB  # one CHNK sub-header (about 1 KiB in practice)
    # STEP/HEAD/META JSON of the whole file (it stays in memory as steps: parsed JSON takes up
    # to ~25x its text size, so this also bounds that memory). A step is ~1 KiB.
    max_json_total_bytes: int = 64 * MiB
    # LINK entry tables of the whole file (96 bytes a chunk per step that makes or covers it;
    # read when a world is opened and kept, as numpy rows)
    max_link_table_bytes: int = 64 * MiB
    max_json_depth: int = 32  # nesting of objects/arrays
    max_string_chars: int = 4096  # any JSON string (prompts included)
    max_prompt_chars: int = 2000
    max_steps: int = 1 << 18  # deep histories are fine: every history query is linear
    max_chunks_per_step: int = 4096
