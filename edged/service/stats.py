"""Counters the daemon reports: fps, inference times, drops, source states, how busy each worker is.

The pipeline threads record into one thread-safe PipelineStats; the service
takes snapshots of the last `window` seconds for the MQTT stats message and
systemd's STATUS= line. A worker's busy fraction is the time it spent inside
invoke() over the window's wall time: near 1 the accelerator is kept busy,
well below it the host side is the bottleneck. (Temperatures are added by the
publisher, which reads them from sysfs: edged/publish/thermal.py.)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CameraCounters:
    fps: float = 0.0
    frames: int = 0
    frames_dropped: int = 0
    source_state: str = "starting"


@dataclass
class WorkerCounters:
    backend: str = ""
    fps: float = 0.0
    busy: float = 0.0  # time inside invoke() / wall time, over the window


@dataclass
class StatsSnapshot:
    uptime_s: float
    fps: float
    inference_p50_ms: float
    inference_p95_ms: float
    frames_processed: int
    frames_dropped: int
    cameras: dict[str, CameraCounters] = field(default_factory=dict)
    workers: dict[str, WorkerCounters] = field(default_factory=dict)  # those that ran frames in the window


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


class PipelineStats:
    """Thread-safe counters over a sliding time window."""

    def __init__(self, window_seconds: float = 30.0) -> None:
        self.window_ns = int(window_seconds * 1e9)
        self.started_ns = time.monotonic_ns()
        self._lock = threading.Lock()
        # (published ns, camera, inference ms, worker, ns inside invoke)
        self._samples: deque[tuple[int, str, float, str, int]] = deque()
        self._backends: dict[str, str] = {}  # worker → the backend it last reported
        self._cameras: dict[str, CameraCounters] = {}
        self._processed = 0
        self._dropped = 0

    def camera(self, name: str) -> CameraCounters:
        with self._lock:
            return self._cameras.setdefault(name, CameraCounters())

    def set_state(self, camera: str, state: str) -> None:
        self.camera(camera).source_state = state

    def add_dropped(self, camera: str, count: int = 1) -> None:
        cam = self.camera(camera)
        with self._lock:
            cam.frames_dropped += count
            self._dropped += count

    def record(self, camera: str, inference_ms: float, now_ns: int | None = None, *, worker: str = "",
               backend: str = "", busy_ns: int | None = None) -> None:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        cam = self.camera(camera)
        busy = int(inference_ms * 1e6) if busy_ns is None else busy_ns
        with self._lock:
            cam.frames += 1
            self._processed += 1
            self._samples.append((now_ns, camera, inference_ms, worker, busy))
            if worker:
                self._backends[worker] = backend
            self._trim(now_ns)

    def _trim(self, now_ns: int) -> None:
        while self._samples and self._samples[0][0] < now_ns - self.window_ns:
            self._samples.popleft()

    def snapshot(self) -> StatsSnapshot:
        now_ns = time.monotonic_ns()
        with self._lock:
            self._trim(now_ns)
            span = min(self.window_ns, now_ns - self.started_ns) / 1e9 or 1.0
            times = [sample[2] for sample in self._samples]
            per_camera: dict[str, int] = {}
            per_worker: dict[str, tuple[int, int]] = {}
            for _, name, _, worker, busy in self._samples:
                per_camera[name] = per_camera.get(name, 0) + 1
                if worker:
                    count, total = per_worker.get(worker, (0, 0))
                    per_worker[worker] = (count + 1, total + busy)
            workers = {worker: WorkerCounters(self._backends.get(worker, ""), round(count / span, 2),
                                              round(min(1.0, total / 1e9 / span), 3))
                       for worker, (count, total) in sorted(per_worker.items())}
            cameras = {name: CameraCounters(fps=round(per_camera.get(name, 0) / span, 2), frames=cam.frames,
                                         frames_dropped=cam.frames_dropped, source_state=cam.source_state)
                       for name, cam in self._cameras.items()}
            processed, dropped = self._processed, self._dropped
        return StatsSnapshot(
            uptime_s=round((now_ns - self.started_ns) / 1e9, 1),
            fps=round(len(times) / span, 2),
            inference_p50_ms=round(percentile(times, 50), 2),
            inference_p95_ms=round(percentile(times, 95), 2),
            frames_processed=processed,
            frames_dropped=dropped,
            cameras=cameras,
            workers=workers,
        )
