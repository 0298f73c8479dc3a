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
import socket
import sys
import time
from typing import Any

import msgspec
import numpy as np

from edged.detect.child import ChildProcess, describe_exit
from edged.detect.jobs import DECODERS, DETECTOR, WorkerFailed, WorkerInfo, WorkerResult, WorkerStartError
from edged.detect.settings import DetectorSettings
from edged.detect.jobtable import JobTable
from edged.detect.slots import SlotBlock
from edged.types import Geometry

__all__ = ["InferenceWorker", "WorkerFailed", "WorkerInfo", "WorkerResult", "WorkerStartError",
           "describe_exit"]

log = logging.getLogger(__name__)

DEFAULT_OPENER = "edged.detect.serve:open_detector"  # "module:function" the worker loads its model with
START_TIMEOUT_SECONDS = 60.0  # loading a model onto a USB Edge TPU can take seconds on a Pi


class InferenceWorker:
    """Parent-side handle of one worker process: submit jobs into free slots, receive their results.

    `submit`/`replace` are called from one thread (the dispatcher), `receive` from
    another (the worker's reader); the handle's own lock keeps their views of the
    slots consistent.
    """

    def __init__(self, settings: DetectorSettings, backend: str, *, device: str | None = None, slots: int = 2,
                 name: str = "", opener: str = DEFAULT_OPENER, opener_args: tuple = ()) -> None:
        """`opener`: "module:function" the child loads its model with, called as (settings, backend,
        *opener_args) — a second stage's classifiers, a segmenter's model name."""
        if device is not None:
            settings = msgspec.structs.replace(settings, edgetpu_device=device)
        self.settings = settings
        self.requested_backend = backend
        self.name = name or backend
        self.info: WorkerInfo | None = None
        self._slots = slots
        self._opener = opener
        self._opener_args = tuple(opener_args)
        self._process: ChildProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._table: JobTable | None = None  # the jobs in its input slots, once it is loaded
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
            self._process = ChildProcess([sys.executable, "-c", "from edged.detect.serve import main; main()",
                                          str(theirs.fileno()), self.name], theirs.fileno())
        self._conn = multiprocessing.connection.Connection(ours.detach())
        self._send(("init", self.settings, self.requested_backend, logging.getLogger().level, self._opener,
                    sys.path, self._opener_args))

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
        block = SlotBlock.create(self._slots, (spec.height, spec.width, 3), spec.dtype)
        self._table = JobTable(block)
        self._send(("slots", DETECTOR, self._slots, block.shape, spec.dtype.str))
        try:
            multiprocessing.reduction.send_handle(self._conn, block.fd, self.pid)
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
        table = self._table
        return 0 if table is None or self._failure is not None else table.free

    @property
    def outstanding(self) -> int:
        return len(self._table) if self._table is not None else 0

    def has_queued(self, stream: str) -> bool:
        """A job of `stream` waits in a slot and has not started (a hint: the worker may claim it now)."""
        return self._table is not None and self._table.has_queued(stream)

    def submit(self, tensor: np.ndarray, geometry: Geometry, *, seq: int, tag: object = None,
               stream: str = "", request: bytes | None = None) -> bool:
        """Queue one input in a free slot; False when every slot is taken. WorkerFailed if it died idle.
        `request` goes with the job to the hosted model's postprocess (a second stage's CropPlan)."""
        table = self._table
        if table is None:
            raise WorkerFailed("worker is not running")
        placed = table.put(tensor, (geometry.content_width, geometry.content_height), seq=seq, tag=tag,
                           stream=stream)
        if placed is None:
            return False
        number, slot = placed
        try:
            self._send(("run", DETECTOR, slot) if request is None else ("run", DETECTOR, slot, request))
        except WorkerFailed:
            table.cancel(number)
            raise
        return True

    def replace(self, stream: str, tensor: np.ndarray, geometry: Geometry, *, seq: int,
                tag: object = None) -> tuple[bool, object]:
        """Put a newer input in place of the oldest job of `stream` that has not started: (True, the replaced
        job's tag), or (False, None) when every job of the stream has started (edged/detect/jobtable.py)."""
        if self._table is None:
            return False, None
        return self._table.replace(stream, tensor, (geometry.content_width, geometry.content_height), seq=seq,
                                   tag=tag)

    def receive(self, wait: float, *, hang_after: float) -> list[tuple[object, WorkerResult]]:
        """(tag, result) of the jobs that finished within `wait` seconds (maybe none).

        WorkerFailed when the worker died, reported an error, or has had jobs
        outstanding without a word for `hang_after` seconds; `take_lost` then hands
        over the tags of the jobs that will never finish.
        """
        if self._failure is not None:
            raise self._failure
        assert self._conn is not None and self._process is not None and self._table is not None
        oldest = self._table.oldest_ns()
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
        _, model, slot, number, kind, payload, started, invoked, ended = message
        decoder = DECODERS.get(kind)
        if decoder is None:
            raise WorkerFailed(f"worker pid {self.pid} sent a result of unknown kind {kind!r}")
        assert self._table is not None
        job = self._table.finish(number, slot)
        if job is not None:
            results.append((job.tag, WorkerResult(job.seq, decoder.decode(payload), started, invoked, ended,
                                                  self.name, model, kind)))

    def _doing(self) -> str:
        return self._table.describe() if self._table is not None else "idle"

    def take_lost(self) -> list[object]:
        """The tags of every job still outstanding (after a failure: they will never finish)."""
        return self._table.take_all() if self._table is not None else []

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
        table, self._table = self._table, None
        if table is not None:
            table.block.close()
