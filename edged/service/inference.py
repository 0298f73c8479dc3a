"""Which workers run the frames: start, crash recovery, several accelerators, Edge TPU ⇄ CPU, hotplug.

`cpu` and `edgetpu` run their lanes (edged/service/plan.py) and restart a
failed one with backoff while the others take its share. `auto` looks at the
hardware first: with no Edge TPU attached it runs the CPU lanes and is
`online`; with one it runs the TPU lanes, and falls back to the CPU only when
no TPU lane is left (a standby CPU worker, loaded in advance, takes over at
once), `degraded` and retrying the TPU every `tpu_retry_seconds`. The hardware
is watched, so a Coral plugged in later is tried at once and one unplugged
stops the retries. TPU and CPU lanes never take frames together: a camera's
results are published in capture order, and a slow CPU frame would hold back
every TPU frame after it. A failing lane loses only its jobs in flight; all
starting and retrying happens in one supervisor thread (edged/service/supervisor.py), never in
the pipeline's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from edged.detect.backends import edgetpu_attached_under
from edged.detect.settings import DetectorSettings
from edged.detect.worker import DEFAULT_OPENER, WorkerFailed, WorkerInfo
from edged.errors import EdgedError, UnavailableError
from edged.service.lanes import Lane, Placement, ResultSink, has_room, place
from edged.service.plan import LanePlan
from edged.service.supervisor import STANDBY_RETRY_SECONDS, Supervision
from edged.types import Geometry

log = logging.getLogger(__name__)



class Inference(Supervision):
    """Owns the lanes; `place`/`has_room` are called from the pipeline's dispatcher thread."""

    def __init__(self, settings: DetectorSettings, *, frame_timeout: float = 10.0, cpu_standby: bool = True,
                 on_change: Callable[[], None] = lambda: None, slots: int = 2,
                 opener: str = DEFAULT_OPENER, opener_args: tuple = ()) -> None:
        """`opener`, `opener_args`: what the workers host (see edged/detect/worker.py)."""
        self.settings = settings
        self.mode = settings.backend
        self.frame_timeout = frame_timeout
        self.cpu_standby = cpu_standby and self.mode == "auto"
        self._on_change = on_change
        self._slots = slots
        self._opener = opener
        self._opener_args = tuple(opener_args)
        self._root = Path(settings.hardware_root)
        self._plan = LanePlan(settings)
        self._lock = threading.RLock()
        self._lanes: list[Lane] = []
        self._standby_due = 0.0
        self._last_info: WorkerInfo | None = None
        self._sink: ResultSink | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._helper: threading.Thread | None = None
        self.failovers = 0

    # -- state -------------------------------------------------------------------------------------------
    def _accepting(self) -> list[Lane]:
        with self._lock:
            return [lane for lane in self._lanes if lane.accepting]

    def _running(self) -> set[str]:
        return {lane.name for lane in self._accepting()}

    @property
    def info(self) -> WorkerInfo | None:
        """The model and input of the lanes frames go to (the last known while none runs)."""
        lanes = self._accepting()
        return lanes[0].info if lanes else self._last_info

    @property
    def state(self) -> Literal["online", "degraded"]:
        with self._lock:
            return self._plan.state(self._running())

    @property
    def reason(self) -> str | None:
        with self._lock:
            return self._plan.reason(self._running())

    @property
    def accelerators(self) -> list[str]:
        return list(self._plan.accelerators)

    @property
    def backend(self) -> str:
        names = list(dict.fromkeys(lane.info.backend for lane in self._accepting()))
        return ", ".join(names) if names else "none"

    def health(self) -> str | None:
        """None, or which supervision thread died (the daemon exits 70 and systemd restarts it)."""
        if self._closed.is_set():
            return None
        if self._helper is not None and not self._helper.is_alive():
            return "inference supervisor thread died"
        with self._lock:
            dead = [lane.name for lane in self._lanes if not lane.alive() and not lane.closing]
        return f"result reader of inference worker {dead[0]} died" if dead else None

    # -- the pipeline's side -------------------------------------------------------------------------------
    def attach(self, sink: ResultSink) -> None:
        self._sink = sink

    def detach(self, sink: ResultSink) -> None:
        if self._sink is sink:
            self._sink = None

    def has_room(self, stream: str, live: bool) -> bool:
        return has_room(self._accepting(), stream, live)

    def place(self, tensor: np.ndarray, geometry: Geometry, *, seq: int, tag: object, stream: str,
              live: bool, request: bytes | None = None) -> Placement:
        return place(self._accepting(), tensor, geometry, seq=seq, tag=tag, stream=stream, live=live,
                     request=request)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> WorkerInfo:
        """Load the model (blocking). Errors a restart cannot fix (model missing, bad file) propagate."""
        plan = self._plan
        plan.accelerators = edgetpu_attached_under(self._root)
        if plan.wants_tpu_at_start():
            failures = self._start_lanes(plan.tpu_names)
            plan.on_tpu = bool(self._lanes)
            if not plan.on_tpu:
                if self.mode == "edgetpu":
                    raise _start_error("edgetpu", failures[0])
                log.error("Edge TPU worker failed while loading the model (%s); using the CPU", failures[0])
        elif self.mode == "auto":
            log.info("no Edge TPU attached: running on the CPU")
        if not plan.on_tpu:
            failures = self._start_lanes(plan.cpu_names)
            if not self._lanes:
                raise _start_error("cpu", failures[0])
        self._helper = threading.Thread(target=self._supervise, name="inference-supervisor", daemon=True)
        self._helper.start()
        info = self.info
        assert info is not None
        return info

    def _start_lanes(self, names: list[str]) -> list[Exception]:
        """Start workers for `names` at once (they load in parallel); the failures.

        A failure is logged only when another worker started: when none did, the
        caller reports the one reason (the daemon's one error line, or the fallback).
        """
        workers = [self._worker(name) for name in names]
        for worker in workers:
            worker.launch()
        failures: list[tuple[str, Exception]] = []
        for worker in workers:
            try:
                worker.wait_ready()
            except (WorkerFailed, EdgedError) as exc:
                worker.close(timeout=0)
                failures.append((worker.name, exc))
                continue
            self._add_lane(worker)
        for name, exc in failures:
            self._start_failed(name, exc, quiet=not self._lanes)
        return [exc for _, exc in failures]

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._helper is not None:
            self._helper.join(1.0)  # it may be loading a worker; that one is closed when the load ends
        with self._lock:
            lanes, self._lanes = list(self._lanes), []
        for lane in lanes:  # all asked at once: they finish their last jobs in parallel
            lane.closing = True
            lane.worker.request_stop()
        for lane in lanes:
            lane.close()

    # -- failures (in the lane's reader thread) ----------------------------------------------------------
    def _lane_exited(self, lane: Lane, why: str | None) -> None:
        """It stopped as asked (why None) or failed; a failed lane's jobs in flight are lost."""
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)
            if why is None:
                if not self._closed.is_set() and self._plan.wanted(lane.name):
                    self._plan.due[lane.name] = time.monotonic()  # retired, but wanted again meanwhile
                    self._wake.set()
                return
        lost = lane.worker.take_lost()
        lane.worker.close(timeout=0)
        sink = self._sink
        if sink is not None:
            for tag in lost:
                sink.lost(tag, why)
        log.error("inference worker %s failed: %s", lane.info.backend, why)
        with self._lock:
            if not lane.accepting:  # the parked standby
                self._standby_due = time.monotonic() + STANDBY_RETRY_SECONDS
            else:
                self.failovers += 1
                tpus = sum(1 for other in self._lanes if other.kind == "edgetpu" and other.accepting)
                if self._plan.failed(lane.name, why, tpus):
                    self._to_cpu()
        self._wake.set()
        self._on_change()
        if sink is not None:
            sink.room()

    def _to_cpu(self) -> None:
        """No TPU lane is left (auto): the loaded CPU workers (the standby) take the frames at once."""
        for other in self._lanes:
            if other.kind == "cpu" and not other.closing:
                if not other.retiring:
                    log.warning("switched to the standby CPU worker pid %s", other.worker.pid)
                other.accepting, other.retiring = True, False
                self._plan.started(other.name)


def _start_error(backend: str, exc: Exception) -> EdgedError:
    """What a start that loaded no worker at all exits with: the worker's own error, or 69."""
    if isinstance(exc, EdgedError):
        return exc
    return UnavailableError(f"inference worker ({backend}): {exc}")
