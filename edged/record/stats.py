"""What the Recorder reports: how many frames it kept, dropped and rotated, and why it stopped if it did."""

from __future__ import annotations

import msgspec


class RecordStats(msgspec.Struct, kw_only=True):
    """Recording since the Recorder started (counters), and the dataset on disk now; `stopped` says why
    recording stopped (a read-only or full disk), null while it runs."""

    offered: int = 0  # frames offered while recording
    queued: int = 0  # frames a policy kept and the queue took
    saved: int = 0  # frames written
    dropped_busy: int = 0  # kept but the queue was full: the writer fell behind
    dropped_too_big: int = 0  # a frame larger than the whole quota
    dropped_stopped: int = 0  # kept after recording stopped
    rotated: int = 0  # old frames deleted to stay under the quota
    superseded: int = 0  # best-so-far frames replaced by a better one of the same tracks
    write_errors: int = 0
    stopped: str | None = None  # why recording stopped (None: it runs)
    frames_on_disk: int = 0
    bytes_used: int = 0
    limit_bytes: int = 0
    write_ms_mean: float = 0.0  # encode + quota + atomic write, per saved frame
