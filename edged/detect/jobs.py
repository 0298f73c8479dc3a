"""The worker protocol's shared vocabulary: what a loaded worker reports, what a job returns.

Parent → child:  ("init", settings, backend, log level, opener, sys.path, opener args)   first
                 ("slots", model, count, shape, dtype) + the block's memfd   once per model, after "ready"
                 ("run", model, slot[, request])   the job number and metadata are in the slot's header;
                                                   `request`: bytes for the hosted model's postprocess
                 ("stop",)
Child → parent:  ("ready", WorkerInfo) | ("error", exit code, message)
                 ("done", model, slot, job, kind, payload, started_ns, invoked_ns, ended_ns)
                 ("failed", model, slot, job, message)

Jobs are addressed to a model key inside the worker; results come back as
encoded payloads tagged with their kind, decoded by kind in the parent and
matched to their job by number (WorkerResult carries the model key and kind).
The worker hosts what its opener returns: a detector ("detections"), a
detector with a second stage's classifiers (edged/classify/hosted.py: a job's
request is the CropPlan, the classifiers run on crops of the job's own input,
the result is still "detections", with subclasses), or a segmenter
(edged/segment/hosted.py: "class_map").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from edged.detect.preprocess import InputSpec
from edged.errors import EdgedError
from edged.segment.classmap import KIND as CLASS_MAP
from edged.segment.classmap import ClassMap
from edged.types import Detection

DETECTOR = "detector"  # the model key of the hosted model inside a worker
DECODERS: dict[str, msgspec.msgpack.Decoder] = {"detections": msgspec.msgpack.Decoder(list[Detection]),
                                                CLASS_MAP: msgspec.msgpack.Decoder(ClassMap)}


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
