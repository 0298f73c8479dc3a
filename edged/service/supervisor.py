"""Starting inference workers: at start, and from the one supervisor thread that restarts them.

The supervisor restarts a failed lane with backoff, retries an Edge TPU in
`auto`, watches the hardware (a Coral plugged in later is tried at once, one
unplugged stops the retries) and keeps the standby CPU worker loaded while
the TPU runs. It is a part of `Inference` (edged/service/inference.py), which
owns the lanes and the lock; kept apart so each file reads as one concern.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edged.detect.backends import edgetpu_attached_under
from edged.detect.settings import DetectorSettings
from edged.detect.worker import InferenceWorker, WorkerFailed, WorkerInfo
from edged.errors import EdgedError
from edged.service.lanes import Lane, ResultSink
from edged.service.plan import LanePlan

log = logging.getLogger(__name__)

HOTPLUG_POLL_SECONDS = 2.0  # sysfs is read this often in `auto`: a few small files
STANDBY_RETRY_SECONDS = 5.0
SUPERVISOR_WAKE_SECONDS = 5.0


class Supervision:
    """Worker starts and the supervisor thread's loop; the state is Inference's."""

    settings: DetectorSettings
    mode: str
    frame_timeout: float
    cpu_standby: bool
    _slots: int
    _opener: str
    _opener_args: tuple
    _root: Path
    _plan: LanePlan
    _lock: threading.RLock
    _lanes: list[Lane]
    _standby_due: float
    _last_info: WorkerInfo | None
    _sink: ResultSink | None
    _wake: threading.Event
    _closed: threading.Event
    _on_change: Callable[[], None]
    _lane_exited: Callable[[Lane, str | None], None]

    def _worker(self, name: str) -> InferenceWorker:
        kind, _, device = name.partition(":")
        return InferenceWorker(self.settings, kind, device=device if kind == "edgetpu" else None,
                               slots=self._slots, name=name, opener=self._opener,
                               opener_args=self._opener_args)

    def _add_lane(self, worker: InferenceWorker, *, accepting: bool = True) -> Lane:
        lane = Lane(worker.name, worker.name.partition(":")[0], worker, frame_timeout=self.frame_timeout,
                    sink=lambda: self._sink, on_exit=self._lane_exited, accepting=accepting)
        with self._lock:
            self._lanes.append(lane)
            self._last_info = lane.info
            if accepting:
                self._plan.started(lane.name)
        lane.start()
        log.info("inference worker pid %s: %s, %s (%s)", lane.info.pid, lane.info.backend, lane.info.model,
                 lane.info.runtime)
        return lane

    def _start_failed(self, name: str, exc: Exception, *, quiet: bool = False) -> None:
        """Schedule the next try; `quiet` when the caller reports the failure itself (nothing started)."""
        with self._lock:
            wait = self._plan.start_failed(name, str(exc))
        if quiet:
            return
        if LanePlan.is_tpu(name) and self.mode == "auto":
            log.info("Edge TPU %s unavailable (%s); next try in %g s", name, exc, wait)
        else:
            log.error("could not start a %s worker (%s); next attempt in %.1f s", name, exc, wait)

    def _supervise(self) -> None:
        next_scan = 0.0
        while not self._closed.is_set():
            now = time.monotonic()
            if self.mode == "auto" and now >= next_scan:
                self._scan_hardware()
                next_scan = now + HOTPLUG_POLL_SECONDS
            with self._lock:
                name, due = self._plan.next_due(now, {lane.name for lane in self._lanes})
            if name is not None:
                self._try_start(name)
                continue
            if self._wants_standby(now):
                self._load_standby()
                continue
            wake = min(due, next_scan if self.mode == "auto" else float("inf"), now + SUPERVISOR_WAKE_SECONDS)
            self._wake.wait(max(0.01, wake - now))
            self._wake.clear()

    def _try_start(self, name: str) -> None:
        worker = self._worker(name)
        try:
            worker.start()
        except (WorkerFailed, EdgedError) as exc:
            worker.close(timeout=0)
            self._start_failed(name, exc)
            return
        if self._closed.is_set():
            worker.close()
            return
        lane = self._add_lane(worker)
        if lane.kind == "edgetpu" and self.mode == "auto":
            self._tpu_back(lane)
        self._on_change()
        sink = self._sink
        if sink is not None:
            sink.room()

    def _tpu_back(self, lane: Lane) -> None:
        log.warning("Edge TPU is back: worker pid %s", lane.worker.pid)
        with self._lock:
            if not self._plan.tpu_back():
                return
            cpu_lanes = [other for other in self._lanes if other.kind == "cpu"]
            for index, other in enumerate(cpu_lanes):
                if index == 0 and self.cpu_standby:
                    other.accepting = False  # parked: finishes its jobs, then waits as the standby
                else:
                    other.retire()

    def _wants_standby(self, now: float) -> bool:
        with self._lock:
            return (self.cpu_standby and self._plan.on_tpu and now >= self._standby_due
                    and not any(lane.kind == "cpu" and not lane.retiring for lane in self._lanes))

    def _load_standby(self) -> None:
        worker = self._worker(self._plan.cpu_names[0])
        try:
            worker.start()
        except (WorkerFailed, EdgedError) as exc:
            worker.close(timeout=0)
            log.warning("could not load the standby CPU worker: %s", exc)
            self._standby_due = time.monotonic() + STANDBY_RETRY_SECONDS
            return
        if self._closed.is_set():
            worker.close()
            return
        self._add_lane(worker, accepting=False)
        log.info("standby CPU worker pid %s ready", worker.pid)

    def _scan_hardware(self) -> None:
        found = edgetpu_attached_under(self._root)
        with self._lock:
            changed = self._plan.hardware(found, {lane.name for lane in self._lanes})
        if changed:
            log.warning("Edge TPU hardware %s: %s", "attached" if found else "gone",
                        ", ".join(found) or "none")
            self._on_change()
