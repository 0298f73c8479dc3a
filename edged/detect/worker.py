"""The parent's handle on one inference worker process: jobs into shared-memory slots, results back.

Inference runs in a child process (edged/detect/serve.py) so a native crash in
the accelerator library kills only the child; the parent notices at once (its
socket closes, its pidfd fires) and replaces it. The child is a fresh
interpreter (never a fork: the parent runs threads and MQTT sockets) talking
over a socketpair with multiprocessing's message framing; it is not a
multiprocessing.Process, whose spawn start would add a resource-tracker
process (13 MB on a Pi) for nothing the worker needs.

The protocol (edged/detect/jobs.py) is pipelined: inputs travel through a block
of shared-memory slots (edged/detect/slots.py) and the parent keeps up to
`slots` jobs outstanding, so when invoke() returns the next input is already
waiting in the pipe and the worker never waits for the parent's threads to get
a CPU. Results are matched to their jobs by number; a live camera's job that
has not started yet can be replaced in place by a newer frame.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import multiprocessing.reduction
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from edged.detect.jobs import DECODERS, DETECTOR, WorkerFailed, WorkerInfo, WorkerResult, WorkerStartError
from edged.detect.settings import DetectorSettings
from edged.detect.slots import QUEUED, SlotBlock
from edged.types import Geometry

__all__ = ["InferenceWorker", "WorkerFailed", "WorkerInfo", "WorkerResult", "WorkerStartError",
           "describe_exit"]

log = logging.getLogger(__name__)

DEFAULT_OPENER = "edged.detect.serve:open_detector"  # "module:function" the worker loads its model with
START_TIMEOUT_SECONDS = 60.0  # loading a model onto a USB Edge TPU can take seconds on a Pi
CLAIM_WAIT_SECONDS = 0.05  # a worker holds the claim lock for microseconds; longer means it hangs


class _Child:
    """The worker process: its pid, a descriptor that becomes readable when it exits, its exit code."""

    def __init__(self, argv: list[str], keep_fd: int) -> None:
        self._popen = subprocess.Popen(argv, pass_fds=(keep_fd,), stdin=subprocess.DEVNULL)
        self.pid = self._popen.pid
        try:
            self.sentinel: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # before Linux 5.3: its socket closing is the only sign
            self.sentinel = None

    @property
    def exitcode(self) -> int | None:
        """None while it runs; negative: killed by that signal (as multiprocessing reports it)."""
        return self._popen.poll()

    def join(self, timeout: float) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self._popen.kill()

    def release(self) -> None:
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


@dataclass
class _Job:
    slot: int
    tag: object  # the caller's handle, given back with the result or when the job is lost
    seq: int
    stream: str  # jobs of one stream (camera) may replace each other while queued
    submitted_ns: int


class InferenceWorker:
    """Parent-side handle of one worker process: submit jobs into free slots, receive their results.

    `submit`/`replace` are called from one thread (the dispatcher), `receive` from
    another (the worker's reader); the handle's own lock keeps their views of the
    slots consistent.
    """

    def __init__(self, settings: DetectorSettings, backend: str, *, device: str | None = None, slots: int = 2,
                 name: str = "", opener: str = DEFAULT_OPENER) -> None:
        if device is not None:
            settings = msgspec.structs.replace(settings, edgetpu_device=device)
        self.settings = settings
        self.requested_backend = backend
        self.name = name or backend
        self.info: WorkerInfo | None = None
        self._slots = slots
        self._opener = opener
        self._process: _Child | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._block: SlotBlock | None = None
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._next_job = 0
        self._heard_ns = 0
        self._failure: WorkerFailed | None = None  # seen while delivering earlier results; raised next

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- start ---------------------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start the child; `wait_ready` then waits for the model to load (several can load at once)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:  # only the child holds it once started: its death closes our end
            self._process = _Child([sys.executable, "-c", "from edged.detect.serve import main; main()",
                                    str(theirs.fileno()), self.name], theirs.fileno())
        self._conn = multiprocessing.connection.Connection(ours.detach())
        self._send(("init", self.settings, self.requested_backend, logging.getLogger().level, self._opener,
                    sys.path))

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> WorkerInfo:
        """Wait until the model is loaded; WorkerStartError/WorkerFailed when it is not."""
        message = self._receive_one(timeout, "loading the model")
        if message[0] == "error":
            self.close()
            raise WorkerStartError(message[2], exit_code=message[1])
        if message[0] != "ready":
            self.close()
            raise WorkerFailed(f"unexpected message from the worker: {message[0]}")
        info: WorkerInfo = message[1]
        spec = info.input_spec
        self._block = SlotBlock.create(self._slots, (spec.height, spec.width, 3), spec.dtype)
        self._send(("slots", DETECTOR, self._slots, self._block.shape, spec.dtype.str))
        try:
            multiprocessing.reduction.send_handle(self._conn, self._block.fd, self.pid)
        except OSError:
            raise self._died("receiving its input slots") from None
        self._heard_ns = time.monotonic_ns()
        self.info = info
        return info

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> WorkerInfo:
        self.launch()
        return self.wait_ready(timeout)

    def _waitables(self) -> list[Any]:
        assert self._conn is not None and self._process is not None
        sentinel = self._process.sentinel
        return [self._conn] if sentinel is None else [self._conn, sentinel]

    def _receive_one(self, timeout: float, doing: str) -> tuple:
        assert self._conn is not None
        ready = multiprocessing.connection.wait(self._waitables(), timeout)
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass
        elif not ready:
            raise WorkerFailed(f"worker pid {self.pid} gave no answer within {timeout:g} s while {doing}")
        raise self._died(doing)

    def _died(self, doing: str) -> WorkerFailed:
        assert self._process is not None
        self._process.join(1.0)
        how = describe_exit(self._process.exitcode)
        return WorkerFailed(f"worker pid {self.pid} died while {doing} ({how})")

    def _send(self, message: tuple) -> None:
        if self._conn is None:
            raise WorkerFailed("worker is not running")
        try:
            self._conn.send(message)
        except OSError:  # it died between jobs: say how, like a death during one
            raise self._died("idle") from None

    # -- jobs ------------------------------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        block = self._block
        if block is None or self._failure is not None:
            return 0
        with self._lock:
            return self._slots - len(self._jobs)

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._jobs)

    def has_queued(self, stream: str) -> bool:
        """A job of `stream` waits in a slot and has not started (a hint: the worker may claim it now)."""
        block = self._block
        with self._lock:
            return block is not None and any(job.stream == stream and block.state(job.slot) == QUEUED
                                             for job in self._jobs.values())

    def submit(self, tensor: np.ndarray, geometry: Geometry, *, seq: int, tag: object = None,
               stream: str = "") -> bool:
        """Queue one input in a free slot; False when every slot is taken. WorkerFailed if it died idle."""
        block = self._block
        if block is None:
            raise WorkerFailed("worker is not running")
        with self._lock:
            used = {job.slot for job in self._jobs.values()}
            slot = next((i for i in range(self._slots) if i not in used), None)
            if slot is None:
                return False
            self._next_job += 1
            job = self._next_job
            block.fill(slot, job, tensor, (geometry.content_width, geometry.content_height))
            self._jobs[job] = _Job(slot, tag, seq, stream, time.monotonic_ns())
        try:
            self._send(("run", DETECTOR, slot))
        except WorkerFailed:
            with self._lock:
                self._jobs.pop(job, None)
                block.release(slot)
            raise
        return True

    def replace(self, stream: str, tensor: np.ndarray, geometry: Geometry, *, seq: int,
                tag: object = None) -> tuple[bool, object]:
        """Put a newer input in place of the oldest job of `stream` that has not started.

        Returns (True, the replaced job's tag), or (False, None) when every job of the
        stream has started (or the worker holds the claim lock too long: it may hang).
        """
        block = self._block
        if block is None:
            return False, None
        with self._lock:
            queued = sorted((number for number, job in self._jobs.items() if job.stream == stream))
            if not queued or not block.lock(timeout=CLAIM_WAIT_SECONDS):
                return False, None
            try:
                for number in queued:
                    old = self._jobs[number]
                    if block.state(old.slot) != QUEUED or block.job(old.slot) != number:
                        continue
                    self._next_job += 1
                    meta = (geometry.content_width, geometry.content_height)
                    block.fill(old.slot, self._next_job, tensor, meta)
                    del self._jobs[number]
                    self._jobs[self._next_job] = _Job(old.slot, tag, seq, stream, old.submitted_ns)
                    return True, old.tag
            finally:
                block.unlock()
        return False, None

    def receive(self, wait: float, *, hang_after: float) -> list[tuple[object, WorkerResult]]:
        """(tag, result) of the jobs that finished within `wait` seconds (maybe none).

        WorkerFailed when the worker died, reported an error, or has had jobs
        outstanding without a word for `hang_after` seconds; `take_lost` then hands
        over the tags of the jobs that will never finish.
        """
        if self._failure is not None:
            raise self._failure
        assert self._conn is not None and self._process is not None
        with self._lock:
            oldest = min((job.submitted_ns for job in self._jobs.values()), default=None)
        deadline = None if oldest is None else max(oldest, self._heard_ns) / 1e9 + hang_after
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        ready = multiprocessing.connection.wait(self._waitables(), wait)
        results: list[tuple[object, WorkerResult]] = []
        try:
            while self._conn.poll(0):
                self._handle(self._conn.recv(), results)
        except (EOFError, OSError):
            self._failure = self._died(self._doing())
        except WorkerFailed as exc:
            self._failure = exc
        if self._failure is None and self._process.sentinel in ready and not self._conn.poll(0):
            self._failure = self._died(self._doing())
        if self._failure is None and deadline is not None and not results and time.monotonic() >= deadline:
            self._failure = WorkerFailed(
                f"worker pid {self.pid} gave no answer within {hang_after:g} s while {self._doing()}")
        if self._failure is not None and not results:
            raise self._failure
        return results

    def _handle(self, message: tuple, results: list[tuple[object, WorkerResult]]) -> None:
        self._heard_ns = time.monotonic_ns()
        if message[0] == "failed":
            raise WorkerFailed(f"worker pid {self.pid}: {message[4]}")
        _, _, slot, number, kind, payload, started, invoked, ended = message
        decoder = DECODERS.get(kind)
        if decoder is None:
            raise WorkerFailed(f"worker pid {self.pid} sent a result of unknown kind {kind!r}")
        with self._lock:
            job = self._jobs.pop(number, None)
            if self._block is not None:
                self._block.release(slot)
        if job is not None:
            results.append((job.tag, WorkerResult(job.seq, decoder.decode(payload), started, invoked, ended,
                                                  self.name)))

    def _doing(self) -> str:
        with self._lock:
            jobs = sorted(self._jobs.items())
        if not jobs:
            return "idle"
        return f"running frame {jobs[0][1].seq}" + (f" (+{len(jobs) - 1} queued)" if len(jobs) > 1 else "")

    def take_lost(self) -> list[object]:
        """The tags of every job still outstanding (after a failure: they will never finish)."""
        with self._lock:
            tags = [job.tag for _, job in sorted(self._jobs.items())]
            self._jobs.clear()
        return tags

    def infer(self, tensor: np.ndarray, geometry: Geometry, *, seq: int, timeout: float) -> WorkerResult:
        """One input, waited for: for tools and tests (the daemon keeps several in flight)."""
        token = object()
        if not self.submit(tensor, geometry, seq=seq, tag=token):
            raise WorkerFailed("every input slot is in use")
        while True:
            for tag, result in self.receive(timeout, hang_after=timeout):
                if tag is token:
                    return result

    # -- stop ------------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the worker to exit after the jobs it has (its reader then sees it go)."""
        if self._conn is not None:
            try:
                self._conn.send(("stop",))
            except OSError:
                pass

    def alive(self) -> bool:
        return self._process is not None and self._process.exitcode is None

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to stop; kill it if it does not within `timeout`. Safe to call twice."""
        self.request_stop()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.exitcode is None:
                self._process.kill()
                self._process.join(1.0)
            self._process.release()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        with self._lock:
            block, self._block = self._block, None
        if block is not None:
            block.close()


def describe_exit(code: int | None) -> str:
    """multiprocessing's exit code → "killed by SIGABRT" / "exit status 1"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
