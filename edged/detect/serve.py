"""The worker process's main: load one model, then run the jobs the parent queues in shared memory.

It ignores SIGINT/SIGTERM — a service stop signals the whole cgroup, and the
jobs in flight must still finish — and exits when told to or when its end of
the pipe closes (the parent died). A native crash (libedgetpu aborting on a
USB error) ends only this process; faulthandler prints its Python stack first.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec

from edged.detect.jobs import WorkerInfo
from edged.detect.settings import DetectorSettings
from edged.detect.slots import SlotBlock
from edged.errors import EdgedError
from edged.types import Geometry


def open_detector(settings: DetectorSettings, backend: str) -> Any:
    """The default model a worker hosts: the detector of `settings` on `backend`."""
    from edged.detect.detector import Detector

    return Detector.open(settings, backend=backend)


def serve(conn: multiprocessing.connection.Connection, claim: Any, settings: DetectorSettings, backend: str,
          log_level: int, opener: Callable[[DetectorSettings, str], Any]) -> None:
    """Load, report, then run jobs until told to stop (protocol: edged/detect/jobs.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the parent's business
    faulthandler.enable()
    from edged.service.journal import make_handler

    logging.basicConfig(level=log_level, handlers=[make_handler(device_id="")])
    try:
        model = opener(settings, backend)
    except EdgedError as exc:
        conn.send(("error", exc.exit_code, str(exc)))
        return
    conn.send(("ready", WorkerInfo(pid=multiprocessing.current_process().pid or 0, backend=model.backend_name,
                                   model=model.model_name, runtime=model.runtime, input_spec=model.input_spec,
                                   fallback_reason=model.fallback_reason)))
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
            if message[0] == "slots":
                _, key, name, count, shape, dtype = message
                blocks[key] = SlotBlock.attach(name, count, shape, dtype)
                continue
            _, key, slot = message
            block = blocks[key]
            with claim:
                job, meta = block.claim(slot)
            started = time.monotonic_ns()
            try:
                outputs = model.invoke(block.tensor(slot))
                invoked = time.monotonic_ns()
                detections = model.postprocess(outputs, Geometry(meta[0], meta[1]))
            except Exception as exc:  # a runtime error in invoke: report it, the parent replaces us
                conn.send(("failed", key, slot, job, f"{type(exc).__name__}: {exc}"))
                return
            conn.send(("done", key, slot, job, "detections", encoder.encode(detections), started, invoked,
                       time.monotonic_ns()))
    finally:
        for block in blocks.values():
            block.close()
        model.close()
