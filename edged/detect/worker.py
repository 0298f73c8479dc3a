"""Inference in a child process, so a native crash in the accelerator library kills only the child.

libedgetpu aborts the whole process on some USB errors; in a worker that is a
dead child the parent notices at once (its pipe closes, its sentinel fires)
and replaces. The child is started with the "spawn" context (never fork: the
parent runs threads and MQTT sockets), loads the model with Detector.open, and
then serves one frame at a time: the input tensor arrives through shared
memory (no pickling of pixels), the few detections go back over the pipe.
The child ignores SIGINT/SIGTERM — a service stop signals the whole cgroup,
and the frame in flight must still finish — and exits when the parent says
so or its end of the pipe closes (the parent died).
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import msgspec
import numpy as np

from edged.detect.preprocess import InputSpec
from edged.detect.settings import DetectorSettings
from edged.errors import EdgedError
from edged.types import Detection, Geometry

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0  # loading a model onto a USB Edge TPU can take seconds on a Pi


@dataclass(frozen=True)
class WorkerInfo:
    """What the loaded child reports: which backend really runs, and what input it wants."""

    pid: int
    backend: str  # e.g. "edgetpu:usb", "cpu:litert-2.3.0:xnnpack:1"
    model: str
    runtime: str
    input_spec: InputSpec
    fallback_reason: str | None


@dataclass(frozen=True)
class WorkerResult:
    seq: int
    detections: list[Detection]
    started_ns: int  # monotonic (system-wide on Linux, so comparable with the parent's stamps)
    invoked_ns: int
    ended_ns: int

    @property
    def inference_ms(self) -> float:
        return (self.invoked_ns - self.started_ns) / 1e6

    @property
    def postprocess_ms(self) -> float:
        return (self.ended_ns - self.invoked_ns) / 1e6


class WorkerFailed(Exception):
    """The worker died, hung or reported an error; the frame in flight is lost, the worker must go."""


class WorkerStartError(EdgedError):
    """The worker could not load the model; carries the child's EdgedError message and exit code."""


_detections = msgspec.msgpack.Decoder(list[Detection])


def _serve(conn: multiprocessing.connection.Connection, settings: DetectorSettings, backend: str,
           log_level: int) -> None:
    """The child's main: load, report, then answer frames until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the parent's business
    faulthandler.enable()  # a native crash prints the Python stack before the process dies
    from edged.service.journal import make_handler

    logging.basicConfig(level=log_level, handlers=[make_handler(device_id="")])
    from edged.detect.detector import Detector

    try:
        detector = Detector.open(settings, backend=backend)
    except EdgedError as exc:
        conn.send(("error", exc.exit_code, str(exc)))
        return
    spec = detector.input_spec
    conn.send(("ready", WorkerInfo(pid=multiprocessing.current_process().pid or 0,
                                   backend=detector.backend_name, model=detector.model_name,
                                   runtime=detector.runtime, input_spec=spec,
                                   fallback_reason=detector.fallback_reason)))
    encoder = msgspec.msgpack.Encoder()
    attached: dict[str, SharedMemory] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "stop":
                return
            _, seq, shm_name, shape, dtype, content = message
            shm = attached.get(shm_name)
            if shm is None:
                for old in attached.values():
                    old.close()
                attached = {shm_name: (shm := SharedMemory(name=shm_name))}
            tensor = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
            started = time.monotonic_ns()
            try:
                outputs = detector.invoke(tensor)
                invoked = time.monotonic_ns()
                detections = detector.postprocess(outputs, Geometry(*content))
            except Exception as exc:  # a runtime error in invoke: report it, the parent replaces us
                conn.send(("failed", seq, f"{type(exc).__name__}: {exc}"))
                return
            del tensor
            conn.send(("result", seq, encoder.encode(detections), started, invoked, time.monotonic_ns()))
    finally:
        for shm in attached.values():
            shm.close()
        detector.close()


class InferenceWorker:
    """Parent-side handle of one worker process running one backend."""

    def __init__(self, settings: DetectorSettings, backend: str) -> None:
        self.settings = settings
        self.requested_backend = backend
        self.info: WorkerInfo | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._shm: SharedMemory | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> WorkerInfo:
        """Spawn and wait until the model is loaded; WorkerStartError/WorkerFailed when it is not."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_serve,
            args=(child_conn, self.settings, self.requested_backend, logging.getLogger().level),
            name=f"edged-worker-{self.requested_backend}", daemon=True)
        process.start()
        child_conn.close()  # only the child holds it now: its death closes our end
        self._process, self._conn = process, parent_conn
        message = self._receive(timeout, "loading the model")
        if message[0] == "error":
            self.close()
            raise WorkerStartError(message[2], exit_code=message[1])
        if message[0] != "ready":
            self.close()
            raise WorkerFailed(f"unexpected message from the worker: {message[0]}")
        self.info = message[1]
        return self.info

    def _receive(self, timeout: float, doing: str) -> tuple:
        assert self._conn is not None and self._process is not None
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel], timeout)
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass
        elif not ready:
            raise WorkerFailed(f"worker pid {self.pid} gave no answer within {timeout:g} s while {doing}")
        self._process.join(1.0)
        how = describe_exit(self._process.exitcode)
        raise WorkerFailed(f"worker pid {self.pid} died while {doing} ({how})")

    def infer(self, tensor: np.ndarray, geometry: Geometry, *, seq: int, timeout: float) -> WorkerResult:
        """Run one input tensor; WorkerFailed if the worker dies, hangs past `timeout` or reports an error."""
        if self._conn is None:
            raise WorkerFailed("worker is not running")
        if self._shm is None or self._shm.size < tensor.nbytes:
            self._release_shm()
            self._shm = SharedMemory(create=True, size=tensor.nbytes)
        np.ndarray(tensor.shape, dtype=tensor.dtype, buffer=self._shm.buf)[...] = tensor
        try:
            self._conn.send(("infer", seq, self._shm.name, tensor.shape, tensor.dtype.str,
                             (geometry.content_width, geometry.content_height)))
        except OSError:  # it died between frames: say how, like a death during one
            self._process.join(1.0)
            how = describe_exit(self._process.exitcode)
            raise WorkerFailed(f"worker pid {self.pid} died while idle ({how})") from None
        message = self._receive(timeout, f"running frame {seq}")
        if message[0] == "failed":
            raise WorkerFailed(f"worker pid {self.pid}: {message[2]}")
        _, rseq, payload, started, invoked, ended = message
        return WorkerResult(rseq, _detections.decode(payload), started, invoked, ended)

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to stop; kill it if it does not within `timeout`. Safe to call twice."""
        if self._conn is not None:
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(1.0)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release_shm()


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
