"""The Recorder: the daemon offers every frame, the policies pick a few, a background thread stores them.

`offer()` is what the pipeline calls: it decides by policy (cheap) and hands a
kept frame to a bounded queue; when the queue is full the frame is dropped and
counted, never waited for. The writer thread (at a lower CPU priority) encodes
the JPEG, makes room under the quota, and writes picture and sidecar
atomically. When the disk refuses (read-only, full, gone) recording stops with
one log line and a counter; the caller never sees an exception and goes on.

A frame kept only as the best so far of some tracks is replaced when a better
one of the same tracks arrives, so each object ends with its first and its
best frame, not every improvement on the way.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from PIL import Image

from edged import paths
from edged.dataset.layout import (
    SIDECAR_SUFFIX,
    Annotation,
    FrameRecord,
    extend_label_map,
    frame_name,
    iso_utc,
    remove_frame,
    safe_name,
    unused_name,
    write_frame,
)
from edged.record.best import BestFrames
from edged.record.policy import CameraPolicy, Decision, TrackUpdate
from edged.record.quota import DiskQuota
from edged.record.settings import RecordOverride, RecordSettings
from edged.record.stats import RecordStats
from edged.types import Detection, Frame

log = logging.getLogger(__name__)

UNUSED_LABELS = frozenset({"", "n/a", "???"})


@dataclass(frozen=True, slots=True)
class _Job:
    camera: str
    seq: int
    captured_at: float
    picture: np.ndarray
    detections: tuple[Detection, ...]
    track_ids: dict[int, str]
    decision: Decision
    quality: int


class Recorder:
    def __init__(self, settings: RecordSettings, *, model: str, labels: Sequence[str],
                 cameras: Mapping[str, RecordOverride] | None = None, directory: Path | None = None) -> None:
        self.settings = settings
        self.root = directory or (Path(settings.directory) if settings.directory else paths.dataset_dir())
        self.model = model
        self._labels = {i: name for i, name in enumerate(labels) if name.strip().lower() not in UNUSED_LABELS}
        self._overrides = dict(cameras or {})
        self._policies: dict[str, CameraPolicy | None] = {}
        self._stats = RecordStats()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._queue: queue.Queue[_Job | None] = queue.Queue(settings.queue_size)
        self._quota = DiskQuota(self.root, int(settings.quota_mb * 1e6), settings.quota_percent)
        self._best = BestFrames()
        self._write_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    @staticmethod
    def wanted(settings: RecordSettings, cameras: Mapping[str, RecordOverride] | None = None) -> bool:
        """Whether any camera records: the daemon creates a Recorder only then."""
        overrides = [o.enabled for o in (cameras or {}).values() if o.enabled is not None]
        return settings.enabled or any(overrides)

    def _policy(self, camera: str) -> CameraPolicy | None:
        if camera not in self._policies:
            override = self._overrides.get(camera)
            effective = override.apply(self.settings) if override else self.settings
            self._policies[camera] = CameraPolicy(effective) if effective.enabled else None
        return self._policies[camera]

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    # ---- caller side: cheap, never blocks, never raises for the disk ----------------------------------

    def offer(self, frame: Frame, detections: Sequence[Detection], tracks: Sequence[TrackUpdate] | None = None
              ) -> None:
        """Keep the frame if a policy wants it; returns at once (the picture must not change afterwards)."""
        policy = self._policy(frame.source)
        if policy is None:
            return
        self._count("offered")
        if self._stopped.is_set():
            self._count("dropped_stopped")
            return
        decision = policy.decide(frame.captured_at, detections, tracks)
        if decision is None:
            return
        picture = _picture(frame)
        if picture is None:
            return
        job = _Job(safe_name(frame.source), frame.seq, frame.captured_at, picture, tuple(detections),
                   {t.detection: t.track_id for t in tracks or ()}, decision, policy.settings.jpeg_quality)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._count("dropped_busy")
            return
        policy.commit(decision, frame.captured_at)
        self._count("queued")

    def stats(self) -> RecordStats:
        with self._lock:
            snapshot = msgspec.structs.replace(self._stats)
        snapshot.frames_on_disk, snapshot.bytes_used = self._quota.frames, self._quota.used
        if snapshot.saved:
            snapshot.write_ms_mean = round(1000.0 * self._write_seconds / snapshot.saved, 3)
        return snapshot

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout` seconds), then stop the writer thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    # ---- writer thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 10))
        except (OSError, AttributeError):
            pass  # best effort: only this thread is made nicer, never the pipeline
        try:
            self._start_directory()
        except Exception as exc:  # noqa: BLE001 - whatever the disk says, the daemon goes on
            self._stop(exc)
        while (job := self._queue.get()) is not None:
            if self._stopped.is_set():
                self._count("dropped_stopped")  # queued before the disk refused
                continue
            started = time.perf_counter()
            try:
                self._write(job)
            except Exception as exc:  # noqa: BLE001
                self._stop(exc)
                continue
            self._write_seconds += time.perf_counter() - started

    def _start_directory(self) -> None:
        extend_label_map(self.root, self._labels, self.model)
        swept = self._quota.scan()
        if swept:
            log.info("recording: removed %d incomplete file(s) an interrupted write left in %s", swept,
                     self.root)
        with self._lock:
            self._stats.limit_bytes = self._quota.limit()

    def _stop(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            reason = f"{exc.strerror or exc} ({exc.filename or self.root})"
        else:  # a refused directory (ValueError) says itself what is wrong; anything else is a bug
            reason = str(exc) if isinstance(exc, ValueError) else \
                f"internal error: {type(exc).__name__}: {exc}"
        with self._lock:
            self._stats.write_errors += 1
            self._stats.stopped = reason
        self._stopped.set()
        log.error("recording stopped: %s; detection and publishing go on", reason)

    def _write(self, job: _Job) -> None:
        annotations = [a for i, d in enumerate(job.detections)
                       if (a := Annotation.from_detection(d, job.track_ids.get(i))) is not None]
        buffer = io.BytesIO()
        Image.fromarray(job.picture).save(buffer, format="JPEG", quality=job.quality)
        jpeg = buffer.getvalue()
        directory = self.root / job.camera
        name = unused_name(directory, frame_name(job.captured_at, job.seq))
        height, width = job.picture.shape[:2]
        record = FrameRecord(image=name + ".jpg", width=width, height=height, camera=job.camera,
                             captured_at=iso_utc(job.captured_at), model=self.model,
                             reasons=list(job.decision.reasons), detections=annotations)
        sidecar_size = len(msgspec.json.encode(record)) + 1
        needed = self._quota.allocated(len(jpeg)) + self._quota.allocated(sidecar_size)
        deleted = self._quota.make_room(needed)
        with self._lock:
            self._stats.limit_bytes = self._quota.limit()
        if deleted is None:
            self._count("dropped_too_big")
            return
        for key in deleted:
            self._best.forget(key)
        if deleted:
            with self._lock:
                self._stats.rotated += len(deleted)
        try:
            stored = write_frame(self.root, record, name, jpeg)
        except OSError:
            try:
                remove_frame(directory / record.image, directory / (name + SIDECAR_SUFFIX))
            except OSError:
                pass  # swept at the next start
            raise
        self._quota.added(stored.image_path, stored.sidecar_path, needed)
        self._count("saved")
        self._supersede(job, stored.key)

    def _supersede(self, job: _Job, key: str) -> None:
        for redundant in self._best.saved(job.camera, key, job.decision):
            if self._quota.remove(redundant):
                self._count("superseded")


def _picture(frame: Frame) -> np.ndarray | None:
    """The full picture, else the model-sized one (only its content: letterbox padding cut off)."""
    if frame.image is not None:
        return frame.image
    if frame.tensor is None:
        return None
    tensor = frame.tensor[0] if frame.tensor.ndim == 4 else frame.tensor
    h, w = tensor.shape[:2]
    geometry = frame.geometry
    return tensor[: max(1, round(h * geometry.content_height)), : max(1, round(w * geometry.content_width))]
