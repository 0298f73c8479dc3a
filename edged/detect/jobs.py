"""The worker protocol's shared vocabulary: what a loaded worker reports, what a job returns.

Parent → child:  ("slots", model, count, shape, dtype) + the block's memfd   once per model, after "ready"
                 ("run", model, slot)    the job number and metadata are in the slot's header
                 ("stop",)
Child → parent:  ("ready", WorkerInfo) | ("error", exit code, message)
                 ("done", model, slot, job, kind, payload, started_ns, invoked_ns, ended_ns)
                 ("failed", model, slot, job, message)

Jobs are addressed to a model key inside the worker; results come back as
encoded payloads tagged with their kind, decoded by kind in the parent and
matched to their job by number (WorkerResult carries the model key and kind).
Today the one model is the detector ("detections"); a classifier on crops
would be another key with its own slot block and another kind (a decoder here,
an entry in serve.POSTPROCESS in the child), not another protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from edged.detect.preprocess import InputSpec
from edged.errors import EdgedError
from edged.types import Detection

DETECTOR = "detector"  # the model key of the detector inside a worker
DECODERS: dict[str, msgspec.msgpack.Decoder] = {"detections": msgspec.msgpack.Decoder(list[Detection])}


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
    seq: int  # the caller's sequence number of the input (a frame's seq)
    output: Any  # the payload decoded by its kind: list[Detection] for "detections"
    started_ns: int  # monotonic (system-wide on Linux, so comparable with the parent's stamps)
    invoked_ns: int
    ended_ns: int
    worker: str = ""  # which worker ran it (e.g. "cpu:0", "edgetpu:usb:1")
    model: str = DETECTOR  # which of the worker's models the job was for
    kind: str = "detections"

    @property
    def detections(self) -> list[Detection]:
        """The detector's output; another model's result has none (a bug to ask for them)."""
        if self.kind != "detections":
            raise TypeError(f"a {self.kind!r} result of model {self.model!r} has no detections")
        return self.output

    @property
    def inference_ms(self) -> float:
        return (self.invoked_ns - self.started_ns) / 1e6

    @property
    def postprocess_ms(self) -> float:
        return (self.ended_ns - self.invoked_ns) / 1e6


class WorkerFailed(Exception):
    """The worker died, hung or reported an error; its jobs in flight are lost, the worker must go."""


class WorkerStartError(EdgedError):
    """The worker could not load the model; carries the child's EdgedError message and exit code."""
