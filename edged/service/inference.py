"""Which inference worker runs the frames: start, crash recovery, Edge TPU → CPU failover and back.

In `auto` the daemon prefers the Edge TPU. When the TPU worker fails — at
start, or at runtime by dying (libedgetpu aborting on a USB error), hanging
past the frame timeout or reporting an error — the frames go to a CPU worker
at once (a standby loaded in advance while on the TPU, else a fresh one), the
state turns `degraded`, and a background thread tries the TPU again every
`tpu_retry_seconds`, switching back when a TPU worker loads. With an explicit
backend a failed worker is replaced by one of the same kind. Only the frame in
flight is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from edged.detect.settings import DetectorSettings
from edged.detect.worker import InferenceWorker, WorkerFailed, WorkerInfo, WorkerResult, WorkerStartError
from edged.errors import EdgedError, UnavailableError
from edged.types import Geometry

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0


def is_tpu(info: WorkerInfo | None) -> bool:
    return info is not None and info.backend.startswith("edgetpu")


class Inference:
    """Owns the workers; `infer` is called from the pipeline's inference thread only."""

    def __init__(self, settings: DetectorSettings, *, frame_timeout: float = 10.0, cpu_standby: bool = True,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.mode = settings.backend
        self.frame_timeout = frame_timeout
        self.cpu_standby = cpu_standby and self.mode == "auto"
        self._on_change = on_change
        self._lock = threading.Lock()
        self.active: InferenceWorker | None = None
        self._standby: InferenceWorker | None = None
        self._pending: InferenceWorker | None = None  # a TPU worker the retry thread loaded
        self.reason: str | None = None  # why we are degraded
        self._retry_at = float("inf")
        self._restart_at = 0.0
        self._restart_delay = 0.5
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._helper: threading.Thread | None = None
        self.failovers = 0

    # -- state -------------------------------------------------------------------------------------------
    @property
    def info(self) -> WorkerInfo | None:
        worker = self.active
        return worker.info if worker is not None else None

    @property
    def state(self) -> Literal["online", "degraded"]:
        """"online", or "degraded" while no worker runs or `auto` runs on the CPU."""
        info = self.info
        if info is None or (self.mode == "auto" and not is_tpu(info)):
            return "degraded"
        return "online"

    @property
    def backend(self) -> str:
        info = self.info
        return info.backend if info is not None else "none"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> WorkerInfo:
        """Load the model (blocking). Errors a restart cannot fix (model missing, bad file) propagate."""
        worker = InferenceWorker(self.settings, self.mode)
        try:
            info = worker.start()
        except WorkerFailed as exc:
            if self.mode != "auto":
                raise UnavailableError(f"inference worker ({self.mode}): {exc}") from None
            log.error("Edge TPU worker failed while loading the model (%s); using the CPU", exc)
            worker = InferenceWorker(self.settings, "cpu")
            try:
                info = worker.start()
            except WorkerFailed as cpu_exc:
                raise UnavailableError(f"inference worker (cpu): {cpu_exc}") from None
            self.reason = f"Edge TPU worker crashed while loading: {exc}"
        self.active = worker
        if self.mode == "auto" and not is_tpu(info):
            self.reason = self.reason or info.fallback_reason
            self._schedule_retry()
        log.info("inference worker pid %s: %s, %s (%s)", info.pid, info.backend, info.model, info.runtime)
        if self.mode == "auto":
            self._helper = threading.Thread(target=self._helper_loop, name="tpu-retry", daemon=True)
            self._helper.start()
        return info

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._helper is not None:
            self._helper.join(1.0)  # it may be loading a TPU worker; that one is closed when the load ends
        with self._lock:
            workers = [w for w in (self.active, self._standby, self._pending) if w is not None]
            self.active = self._standby = self._pending = None
        for worker in workers:
            worker.close()

    # -- frames --------------------------------------------------------------------------------------------
    def infer(self, tensor: np.ndarray, geometry: Geometry, *, seq: int) -> WorkerResult | None:
        """Detections for one tensor, or None when the frame was lost to a failing worker."""
        self._adopt_pending()
        worker = self.active
        if worker is None:
            self._restart()
            return None
        try:
            return worker.infer(tensor, geometry, seq=seq, timeout=self.frame_timeout)
        except WorkerFailed as exc:
            self._fail(worker, str(exc))
            return None

    def _fail(self, worker: InferenceWorker, why: str) -> None:
        was_tpu = is_tpu(worker.info)
        log.error("inference worker %s failed: %s", worker.info.backend if worker.info else "?", why)
        worker.close(timeout=0)
        self.failovers += 1
        with self._lock:
            self.active = None
            standby, self._standby = self._standby, None
        if was_tpu and self.mode == "auto":
            self.reason = f"Edge TPU failed at runtime: {why}"
            if standby is not None:
                self.active = standby
                log.warning("switched to the standby CPU worker pid %s", standby.pid)
            self._schedule_retry()
            if self.active is None:
                self._restart()
        else:
            self.reason = f"inference worker restarted: {why}"
            if standby is not None:
                standby.close()
            self._restart()
        self._on_change()

    def _restart(self) -> None:
        """Start a replacement (CPU in auto after a TPU failure, else the configured backend); backoff."""
        if time.monotonic() < self._restart_at:
            self._closed.wait(0.05)
            return
        backend = "cpu" if self.mode == "auto" else self.mode
        worker = InferenceWorker(self.settings, backend)
        try:
            info = worker.start()
        except (WorkerFailed, EdgedError) as exc:
            self._restart_at = time.monotonic() + self._restart_delay
            self._restart_delay = min(RESTART_BACKOFF_MAX, self._restart_delay * 2)
            log.error("could not start a %s worker (%s); next attempt in %.1f s", backend, exc,
                      self._restart_delay)
            return
        self._restart_delay = 0.5
        self.active = worker
        log.info("inference worker pid %s: %s", info.pid, info.backend)
        self._on_change()

    # -- the helper thread: CPU standby and Edge TPU retries (auto only) ---------------------------------
    def _schedule_retry(self) -> None:
        seconds = self.settings.tpu_retry_seconds
        self._retry_at = time.monotonic() + seconds if seconds > 0 else float("inf")
        self._wake.set()

    def _adopt_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return
            previous, self.active = self.active, pending
        log.warning("Edge TPU is back: worker pid %s", pending.pid)
        self.reason = None
        if previous is not None:
            with self._lock:
                keep = self.cpu_standby and self._standby is None
                if keep:
                    self._standby = previous
            if not keep:
                previous.close()
        self._on_change()

    def _helper_loop(self) -> None:
        while not self._closed.is_set():
            if is_tpu(self.info) and self.cpu_standby and self._standby is None:
                self._load_standby()
            wait = self._retry_at - time.monotonic()
            if wait <= 0 and not is_tpu(self.info) and self._pending is None:
                self._retry_tpu()
                continue
            self._wake.wait(min(max(wait, 0.05), 5.0))
            self._wake.clear()

    def _load_standby(self) -> None:
        worker = InferenceWorker(self.settings, "cpu")
        try:
            worker.start()
        except (WorkerFailed, EdgedError) as exc:
            log.warning("could not load the standby CPU worker: %s", exc)
            self._closed.wait(5.0)
            return
        with self._lock:
            if self._closed.is_set() or self._standby is not None:
                worker.close()
                return
            self._standby = worker
        log.info("standby CPU worker pid %s ready", worker.pid)

    def _retry_tpu(self) -> None:
        worker = InferenceWorker(self.settings, "edgetpu")
        try:
            info = worker.start()
        except (WorkerFailed, WorkerStartError, EdgedError) as exc:
            log.info("Edge TPU still unavailable (%s); next try in %g s", exc,
                     self.settings.tpu_retry_seconds)
            worker.close(timeout=0)
            self._schedule_retry()
            return
        with self._lock:
            if self._closed.is_set():
                worker.close()
                return
            self._pending = worker
        self._retry_at = float("inf")
        log.info("Edge TPU worker pid %s loaded (%s); switching back", info.pid, info.backend)
