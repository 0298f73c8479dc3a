"""The worker process's main: load its model(s), then run the jobs the parent queues in shared memory.

Started by edged/detect/worker.py as `python -c "from edged.detect.serve import
main; main()" FD NAME` with one end of a socketpair as FD; the first message
brings the settings. It ignores SIGINT/SIGTERM — a service stop signals the
whole cgroup, and the jobs in flight must still finish — and exits when told to
or when its end of the socket closes (the parent died). A native crash
(libedgetpu aborting on a USB error) ends only this process; faulthandler
prints its Python stack first.
"""

from __future__ import annotations

import faulthandler
import importlib
import logging
import multiprocessing.connection
import multiprocessing.reduction
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from edged.detect.jobs import DETECTOR, WorkerInfo
from edged.detect.settings import DetectorSettings
from edged.detect.slots import SlotBlock
from edged.errors import EdgedError
from edged.types import Geometry


def open_detector(settings: DetectorSettings, backend: str) -> Any:
    """The default model a worker hosts: the detector of `settings` on `backend`."""
    from edged.detect.detector import Detector

    return Detector.open(settings, backend=backend)


def _postprocess(model: Any, outputs: Any, meta: tuple[float, ...], tensor: Any, request: bytes | None
                 ) -> Any:
    """The hosted model's own postprocess; a job's request (a second stage's CropPlan) goes to it with the
    input tensor the job brought, so crops need no second transfer."""
    geometry = Geometry(meta[0], meta[1])
    if request is None:
        return model.postprocess(outputs, geometry)
    return model.postprocess(outputs, geometry, tensor=tensor, request=request)


# kind → how a model's raw outputs, its slot's four floats, its input and the job's request become that kind's
# payload: detections (with subclasses when a request asks), a segmenter's class map (edged/segment/hosted.py)
POSTPROCESS: dict[str, Callable[[Any, Any, tuple[float, ...], Any, bytes | None], Any]] = {
    "detections": _postprocess, "class_map": _postprocess}


def main() -> None:
    """Entry point of the worker process (argv: socket descriptor, worker name)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the parent's business
    faulthandler.enable()
    conn = multiprocessing.connection.Connection(int(sys.argv[1]))
    try:
        _, settings, backend, log_level, opener_path, path, opener_args = conn.recv()
    except (EOFError, OSError):
        return
    sys.path[:] = path  # the parent's: an opener from a benchmark script imports as it does there
    opener = _importable(opener_path)
    from edged.service.journal import make_handler

    logging.basicConfig(level=log_level, handlers=[make_handler(device_id="")])
    serve(conn, settings, backend, opener, opener_args)


def _importable(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(conn: multiprocessing.connection.Connection, settings: DetectorSettings, backend: str,
          opener: Callable[..., Any], opener_args: tuple = ()) -> None:
    """Load, report, then run jobs until told to stop (protocol: edged/detect/jobs.py). `opener_args` follow
    the settings and backend (the classifiers of a second stage, a segmenter's model)."""
    try:
        model = opener(settings, backend, *opener_args)
    except EdgedError as exc:
        conn.send(("error", exc.exit_code, str(exc)))
        return
    conn.send(("ready", WorkerInfo(pid=os.getpid(), backend=model.backend_name,
                                   model=model.model_name, runtime=model.runtime, input_spec=model.input_spec,
                                   fallback_reason=model.fallback_reason)))
    # key → (model, result kind); a hosted model that is not a detector names its kind (a segmenter's)
    models: dict[str, tuple[Any, str]] = {DETECTOR: (model, getattr(model, "result_kind", "detections"))}
    encoder = msgspec.msgpack.Encoder()
    blocks: dict[str, SlotBlock] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "stop":
                return
            if message[0] == "slots":  # the block's descriptor follows the message on the pipe
                _, key, count, shape, dtype = message
                blocks[key] = SlotBlock(multiprocessing.reduction.recv_handle(conn), count, shape, dtype)
                continue
            _, key, slot, *extra = message
            request = extra[0] if extra else None
            block = blocks[key]
            block.lock()
            try:
                job, meta = block.claim(slot)
            finally:
                block.unlock()
            hosted, kind = models[key]
            started = time.monotonic_ns()
            try:
                tensor = block.tensor(slot)
                outputs = hosted.invoke(tensor)
                invoked = time.monotonic_ns()
                result = POSTPROCESS[kind](hosted, outputs, meta, tensor, request)
            except Exception as exc:  # a runtime error in invoke: report it, the parent replaces us
                conn.send(("failed", key, slot, job, f"{type(exc).__name__}: {exc}"))
                return
            conn.send(("done", key, slot, job, kind, encoder.encode(result), started, invoked,
                       time.monotonic_ns()))
    finally:
        for block in blocks.values():
            block.close()
        for hosted, _ in models.values():
            hosted.close()
