"""Lanes: the running workers frames can go to, each with a thread that reads its results.

A lane's reader thread waits on the worker's pipe and process sentinel, so a
result reaches the pipeline the moment it is sent (the dispatcher refills the
freed slot while the worker already runs the next job), and a death or a hang
is noticed by the thread that was waiting for the worker anyway. Lanes are
accepting (frames go there), parked (a loaded standby that takes no frames) or
retiring (finishing its jobs before it is closed). `place` puts a job into the
least-loaded accepting lane, or — for a live camera when every slot is taken
— in place of that camera's oldest job that has not started yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edged.detect.worker import InferenceWorker, WorkerFailed, WorkerInfo, WorkerResult
from edged.types import Geometry

log = logging.getLogger(__name__)

READ_WAKE_SECONDS = 0.5  # how often an idle reader looks up (retiring, closing)


class ResultSink(Protocol):
    """What the lanes report to: the pipeline that placed the jobs."""

    def completed(self, tag: object, result: WorkerResult, backend: str, model: str) -> None: ...

    def lost(self, tag: object, why: str) -> None: ...

    def room(self) -> None: ...


@dataclass(frozen=True)
class Placement:
    placed: bool
    replaced: object = None  # the tag of a queued job the new one took the place of


class Lane:
    """One loaded worker and its reader thread."""

    def __init__(self, name: str, kind: str, worker: InferenceWorker, *, frame_timeout: float,
                 sink: Callable[[], ResultSink | None], on_exit: Callable[[Lane, str | None], None],
                 accepting: bool = True) -> None:
        assert worker.info is not None
        self.name = name
        self.kind = kind  # "cpu" | "edgetpu"
        self.worker = worker
        self.info: WorkerInfo = worker.info
        self.frame_timeout = frame_timeout
        self.accepting = accepting
        self.retiring = False
        self.closing = False
        self.last_given = 0.0
        self._sink = sink
        self._on_exit = on_exit  # (lane, why it failed | None when it was asked to stop)
        self._thread = threading.Thread(target=self._read, name=f"results-{name}", daemon=True)

    def start(self) -> Lane:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _read(self) -> None:
        while True:
            try:
                results = self.worker.receive(READ_WAKE_SECONDS, hang_after=self.frame_timeout)
            except WorkerFailed as exc:
                if self.closing:
                    self.worker.close(timeout=0.5)
                self._on_exit(self, None if self.closing else str(exc))
                return
            sink = self._sink()
            if sink is not None:
                for tag, result in results:
                    sink.completed(tag, result, self.info.backend, self.info.model)
                if results:
                    sink.room()
            if self.retiring and not self.closing and self.worker.outstanding == 0:
                self.closing = True
                self.worker.request_stop()

    def retire(self) -> None:
        """No new jobs; the worker stops once the ones it has are done."""
        self.accepting = False
        self.retiring = True

    def close(self, timeout: float = 2.0) -> None:
        self.closing = True
        self.accepting = False
        self.worker.request_stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.worker.close(timeout=0.5)


def has_room(lanes: list[Lane], stream: str, live: bool) -> bool:
    """A free slot somewhere, or (live camera) one of its jobs still waiting, which a newer frame replaces."""
    if any(lane.worker.free_slots for lane in lanes):
        return True
    return live and any(lane.worker.has_queued(stream) for lane in lanes)


def place(lanes: list[Lane], tensor: np.ndarray, geometry: Geometry, *, seq: int, tag: object, stream: str,
          live: bool, request: bytes | None = None) -> Placement:
    """Hand a job to the least-loaded lane; a live camera's frame may replace its own queued one instead
    (keeping the queued job's request: the same camera's, a frame apart)."""
    free = [lane for lane in lanes if lane.worker.free_slots]
    if free:
        lane = min(free, key=lambda candidate: (candidate.worker.outstanding, candidate.last_given))
        try:
            if lane.worker.submit(tensor, geometry, seq=seq, tag=tag, stream=stream, request=request):
                lane.last_given = time.monotonic()
                return Placement(True)
        except WorkerFailed as exc:  # died between jobs: its reader reports it and the lane goes
            log.debug("worker %s refused a job: %s", lane.name, exc)
    if live:
        for lane in lanes:
            replaced, old = lane.worker.replace(stream, tensor, geometry, seq=seq, tag=tag)
            if replaced:
                return Placement(True, old)
    return Placement(False)
