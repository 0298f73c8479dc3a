"""Which workers run the frames: start, crash recovery, several accelerators, Edge TPU ⇄ CPU, hotplug.

The configuration names lanes: one per Edge TPU (`detector.devices`, else
`edgetpu_device`) and `detector.workers` CPU lanes. `cpu` and `edgetpu` run
their lanes and restart a failed one with backoff (its share goes to the
others meanwhile). `auto` looks at the hardware first: with no Edge TPU
attached it runs the CPU lanes and is `online`; with one it runs the TPU lanes,
and falls back to the CPU only when no TPU lane is left (a standby CPU worker,
loaded in advance, takes over at once), `degraded` and retrying the TPU every
`tpu_retry_seconds`. The hardware is watched, so a Coral plugged in later is
tried at once and one unplugged stops the retries. TPU and CPU lanes never take
frames together: results of one camera are published in capture order, and a
slow CPU frame would hold back every TPU frame after it. A failing lane loses
only its jobs in flight; all starting and retrying happens in one supervisor
thread, never in the pipeline's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edged.detect.backends import edgetpu_attached_under
from edged.detect.serve import open_detector
from edged.detect.settings import DetectorSettings
from edged.detect.worker import InferenceWorker, WorkerFailed, WorkerInfo
from edged.errors import EdgedError, UnavailableError
from edged.service.lanes import Lane, Placement, ResultSink, has_room, place
from edged.types import Geometry

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0
HOTPLUG_POLL_SECONDS = 2.0  # sysfs is read this often in `auto`: a few small files
STANDBY_RETRY_SECONDS = 5.0


def is_tpu(info: WorkerInfo | None) -> bool:
    return info is not None and info.backend.startswith("edgetpu")


class Inference:
    """Owns the lanes; `place`/`has_room` are called from the pipeline's dispatcher thread."""

    def __init__(self, settings: DetectorSettings, *, frame_timeout: float = 10.0, cpu_standby: bool = True,
                 on_change: Callable[[], None] = lambda: None, slots: int = 2,
                 opener: Callable[[DetectorSettings, str], Any] = open_detector) -> None:
        self.settings = settings
        self.mode = settings.backend
        self.frame_timeout = frame_timeout
        self.cpu_standby = cpu_standby and self.mode == "auto"
        self._on_change = on_change
        self._slots = slots
        self._opener = opener
        self._root = Path(settings.hardware_root)
        devices = settings.devices or [settings.edgetpu_device]
        self._tpu_names = [f"edgetpu:{device}" for device in devices] if self.mode != "cpu" else []
        self._cpu_names = [f"cpu:{i}" for i in range(settings.workers)] if self.mode != "edgetpu" else []
        self._lock = threading.RLock()
        self._lanes: list[Lane] = []
        self._down: dict[str, str] = {}  # lane name → why it is not running
        self._due: dict[str, float] = {}  # lane name → when the supervisor tries to start it
        self._delay: dict[str, float] = {}  # lane name → restart backoff
        self._on_tpu = self.mode == "edgetpu"
        self._standby_due = 0.0
        self._last_info: WorkerInfo | None = None
        self._sink: ResultSink | None = None
        self.accelerators: list[str] = []  # Edge TPUs the kernel shows ("usb:1-1.2", "pci:/dev/apex_0")
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._helper: threading.Thread | None = None
        self.failovers = 0

    # -- state -------------------------------------------------------------------------------------------
    def _accepting(self) -> list[Lane]:
        with self._lock:
            return [lane for lane in self._lanes if lane.accepting]

    @property
    def info(self) -> WorkerInfo | None:
        """The model and input of the lanes frames go to (the last known while none runs)."""
        lanes = self._accepting()
        return lanes[0].info if lanes else self._last_info

    @property
    def state(self) -> Literal["online", "degraded"]:
        """"online" when every lane that should run does: in `auto` the TPUs, or the CPU while no attached
        TPU has failed (none attached, or one just plugged in and loading)."""
        with self._lock:
            running = {lane.name for lane in self._lanes if lane.accepting}
            if not running:
                return "degraded"
            if self._on_tpu:
                return "online" if set(self._tpu_names) <= running else "degraded"
            tpu_failing = any(name.startswith("edgetpu") for name in self._down)
            return "online" if set(self._cpu_names) <= running and not tpu_failing else "degraded"

    @property
    def reason(self) -> str | None:
        """Why we are degraded (one line), or None."""
        if self.state == "online":
            return None
        with self._lock:
            if self._down:
                return "; ".join(f"{name}: {why}" for name, why in self._down.items())
        return "no inference worker is running"

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
              live: bool) -> Placement:
        return place(self._accepting(), tensor, geometry, seq=seq, tag=tag, stream=stream, live=live)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> WorkerInfo:
        """Load the model (blocking). Errors a restart cannot fix (model missing, bad file) propagate."""
        self.accelerators = edgetpu_attached_under(self._root)
        if self.mode == "edgetpu" or (self.mode == "auto" and self.accelerators):
            failures = self._start_lanes(self._tpu_names)
            self._on_tpu = bool(self._lanes)
            if not self._on_tpu:
                if self.mode == "edgetpu":
                    raise _start_error("edgetpu", next(iter(failures.values())))
                log.error("Edge TPU worker failed while loading the model (%s); using the CPU",
                          next(iter(failures.values())))
        elif self.mode == "auto":
            log.info("no Edge TPU attached: running on the CPU")
        if not self._on_tpu:
            failures = self._start_lanes(self._cpu_names)
            if not self._lanes:
                raise _start_error("cpu", next(iter(failures.values())))
        self._helper = threading.Thread(target=self._supervise, name="inference-supervisor", daemon=True)
        self._helper.start()
        info = self.info
        assert info is not None
        return info

    def _start_lanes(self, names: list[str]) -> dict[str, Exception]:
        """Start workers for `names` at once (they load in parallel); the failures by name."""
        workers = {name: self._worker(name) for name in names}
        for worker in workers.values():
            worker.launch()
        failures: dict[str, Exception] = {}
        for name, worker in workers.items():
            try:
                worker.wait_ready()
            except (WorkerFailed, EdgedError) as exc:
                worker.close(timeout=0)
                failures[name] = exc
                self._failed_to_start(name, exc)
                continue
            self._add_lane(name, worker)
        return failures

    def _worker(self, name: str) -> InferenceWorker:
        kind, _, device = name.partition(":")
        return InferenceWorker(self.settings, kind, device=device if kind == "edgetpu" else None,
                               slots=self._slots, name=name, opener=self._opener)

    def _add_lane(self, name: str, worker: InferenceWorker, *, accepting: bool = True) -> Lane:
        kind = name.partition(":")[0]
        lane = Lane(name, kind, worker, frame_timeout=self.frame_timeout, sink=lambda: self._sink,
                    on_exit=self._lane_exited, accepting=accepting)
        with self._lock:
            self._lanes.append(lane)
            self._last_info = lane.info
            if accepting:
                self._down.pop(name, None)
                self._due.pop(name, None)
                self._delay.pop(name, None)
        lane.start()
        assert worker.info is not None
        log.info("inference worker pid %s: %s, %s (%s)", worker.info.pid, worker.info.backend, worker.info.model,
                 worker.info.runtime)
        return lane

    def _failed_to_start(self, name: str, exc: Exception) -> None:
        with self._lock:
            if name.startswith("edgetpu") and self.mode == "auto":
                self._down[name] = f"Edge TPU worker could not start: {exc}"
                self._schedule_tpu_retry(name)
                return
            delay = self._delay.get(name, 0.25) * 2
            self._delay[name] = min(RESTART_BACKOFF_MAX, delay)
            self._due[name] = time.monotonic() + self._delay[name]
            self._down.setdefault(name, f"worker could not start: {exc}")
        log.error("could not start a %s worker (%s); next attempt in %.1f s", name, exc, self._delay[name])

    def _schedule_tpu_retry(self, name: str) -> None:
        seconds = self.settings.tpu_retry_seconds
        self._due[name] = time.monotonic() + seconds if seconds > 0 else float("inf")

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._helper is not None:
            self._helper.join(1.0)  # it may be loading a worker; that one is closed when the load ends
        with self._lock:
            lanes, self._lanes = list(self._lanes), []
        for lane in lanes:
            lane.closing = True
            lane.worker.request_stop()
        for lane in lanes:
            lane.close()

    # -- failures ----------------------------------------------------------------------------------------
    def _lane_exited(self, lane: Lane, why: str | None) -> None:
        """In the lane's reader thread: it stopped as asked (why None) or failed; its jobs are lost."""
        with self._lock:
            if lane in self._lanes:
                self._lanes.remove(lane)
            if why is None:
                if not self._closed.is_set() and self._eligible(lane.name) and self._wanted(lane.name):
                    self._due[lane.name] = time.monotonic()  # retired, but wanted again meanwhile
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
            if not lane.accepting:
                self._standby_due = time.monotonic() + STANDBY_RETRY_SECONDS
            else:
                self.failovers += 1
                if lane.kind == "edgetpu" and self.mode == "auto":
                    self._tpu_failed(lane, why)
                else:
                    self._down[lane.name] = f"inference worker restarted: {why}"
                    self._due[lane.name] = time.monotonic()
        self._wake.set()
        self._on_change()
        if sink is not None:
            sink.room()

    def _tpu_failed(self, lane: Lane, why: str) -> None:
        self._down[lane.name] = f"Edge TPU failed at runtime: {why}"
        self._schedule_tpu_retry(lane.name)
        if any(other.kind == "edgetpu" and other.accepting for other in self._lanes):
            return  # the other TPUs take its share
        self._on_tpu = False
        for other in self._lanes:
            if other.kind == "cpu" and not other.closing:
                if not other.retiring:
                    log.warning("switched to the standby CPU worker pid %s", other.worker.pid)
                other.accepting, other.retiring = True, False
        now = time.monotonic()
        running = {other.name for other in self._lanes}
        for name in self._cpu_names:
            if name not in running:
                self._due[name] = now

    # -- the supervisor thread: restarts, TPU retries, hotplug, standby ----------------------------------
    def _supervise(self) -> None:
        next_scan = 0.0
        while not self._closed.is_set():
            now = time.monotonic()
            if self.mode == "auto" and now >= next_scan:
                self._scan_hardware()
                next_scan = now + HOTPLUG_POLL_SECONDS
            name = self._next_due(now)
            if name is not None:
                self._try_start(name)
                continue
            if self._wants_standby(now):
                self._load_standby()
                continue
            with self._lock:
                due = min((self._due[n] for n in self._due if self._eligible(n)), default=float("inf"))
            wake = min(due, next_scan if self.mode == "auto" else float("inf"), now + 5.0)
            self._wake.wait(max(0.01, wake - now))
            self._wake.clear()

    def _eligible(self, name: str) -> bool:
        """Whether the supervisor should (re)start this lane now that it is due."""
        if any(lane.name == name and (lane.accepting or name.startswith("cpu")) for lane in self._lanes):
            return False
        if self.mode != "auto":
            return True
        if name.startswith("edgetpu"):
            return bool(self.accelerators)  # retries only while a TPU is attached
        return not self._on_tpu

    def _wanted(self, name: str) -> bool:
        """Whether lane `name` should be taking frames in the current plan."""
        return name in (self._tpu_names if self._on_tpu else self._cpu_names)

    def _next_due(self, now: float) -> str | None:
        with self._lock:
            return next((name for name, at in self._due.items() if at <= now and self._eligible(name)), None)

    def _try_start(self, name: str) -> None:
        worker = self._worker(name)
        try:
            worker.start()
        except (WorkerFailed, EdgedError) as exc:
            worker.close(timeout=0)
            if name.startswith("edgetpu") and self.mode == "auto":
                with self._lock:
                    self._down.setdefault(name, f"Edge TPU worker could not start: {exc}")
                    self._schedule_tpu_retry(name)
                log.info("Edge TPU %s still unavailable (%s); next try in %g s", name, exc,
                         self.settings.tpu_retry_seconds)
            else:
                self._failed_to_start(name, exc)
            return
        if self._closed.is_set():
            worker.close()
            return
        lane = self._add_lane(name, worker)
        if lane.kind == "edgetpu" and self.mode == "auto":
            self._tpu_back(lane)
        self._on_change()
        sink = self._sink
        if sink is not None:
            sink.room()

    def _tpu_back(self, lane: Lane) -> None:
        log.warning("Edge TPU is back: worker pid %s", lane.worker.pid)
        with self._lock:
            if self._on_tpu:
                return
            self._on_tpu = True
            cpu_lanes = [other for other in self._lanes if other.kind == "cpu"]
            for index, other in enumerate(cpu_lanes):
                if index == 0 and self.cpu_standby:
                    other.accepting = False  # parked: finishes its jobs and waits as the standby
                else:
                    other.retire()
            for name in self._cpu_names:
                self._due.pop(name, None)
                self._down.pop(name, None)

    def _wants_standby(self, now: float) -> bool:
        with self._lock:
            return (self.cpu_standby and self._on_tpu and now >= self._standby_due
                    and not any(lane.kind == "cpu" and not lane.retiring for lane in self._lanes))

    def _load_standby(self) -> None:
        worker = self._worker(self._cpu_names[0])
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
        self._add_lane(self._cpu_names[0], worker, accepting=False)
        log.info("standby CPU worker pid %s ready", worker.pid)

    def _scan_hardware(self) -> None:
        found = edgetpu_attached_under(self._root)
        if found == self.accelerators:
            return
        appeared = bool(found) and not self.accelerators
        log.warning("Edge TPU hardware %s: %s", "attached" if found else "gone", ", ".join(found) or "none")
        with self._lock:
            self.accelerators = found
            running = {lane.name for lane in self._lanes if lane.accepting}
            for name in self._tpu_names:
                if name in running:
                    continue
                if appeared:
                    self._due[name] = time.monotonic()
                elif not found:  # unplugged: nothing left to fail or to retry
                    self._down.pop(name, None)
                    self._due.pop(name, None)
        self._on_change()


def _start_error(backend: str, exc: Exception) -> EdgedError:
    """What a start that loaded no worker at all exits with: the worker's own error, or 69."""
    if isinstance(exc, EdgedError):
        return exc
    return UnavailableError(f"inference worker ({backend}): {exc}")
