"""The JSON payloads edged publishes, as msgspec Structs, and their versioned JSON Schemas.

The Structs are the single source of truth: the publisher encodes them, the
committed schemas in edged/publish/schemas/ are generated from them
(`python -m edged.publish.payloads` rewrites them; a test checks they match),
and subscribers can validate what they receive against those files.
Every field is always emitted (nothing is omitted when it equals its
default), so the schemas list every property as required — except in Structs
declared `omit_defaults` (a Detection's optional `subclass`), whose schema keeps
msgspec's own list of required properties.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Literal

import msgspec

from edged.record.stats import RecordStats
from edged.types import Box, Detection, Subclass

SCHEMA_VERSION = 1
SCHEMA_DIR = Path(__file__).with_name("schemas")

State = Literal["online", "offline", "degraded"]


class StatusPayload(msgspec.Struct, kw_only=True):
    """Retained `…/status`: is the device up, on which backend, running which model, since when.

    `since` is the UTC time the state began as subscribers see it (the last
    connect or state change). It is null in the Last Will: the broker sends
    that one, at a moment the device cannot know. `accelerators` lists the Edge
    TPUs the device's kernel shows ("usb:1-1.2", "pci:/dev/apex_0"); empty: no
    accelerator is attached, and `backend` auto runs on the CPU, `online`.
    """

    state: State
    version: str
    backend: str
    model: str
    since: str | None
    run_id: str = ""  # this process's run of edged: a new value means a restart (seq starts again)
    accelerators: list[str] = msgspec.field(default_factory=list)


class FrameSize(msgspec.Struct):
    """Size of the source image in pixels; boxes are normalized to it."""

    width: int
    height: int


class FramePayload(msgspec.Struct, kw_only=True):
    """What every per-frame message starts with: whose frame, which one, and what ran on it."""

    v: Literal[1] = 1
    device: str
    run_id: str = ""  # the process's run: `seq` only grows within one, (run_id, camera, seq) never repeats
    camera: str
    seq: int
    captured_at: str
    published_at: str
    backend: str
    model: str
    inference_ms: float
    frame: FrameSize


class DetectionsPayload(FramePayload, kw_only=True):
    """`…/<camera>/detections`: what one processed frame contained."""

    detections: list[Detection]


class EventPayload(msgspec.Struct, kw_only=True):
    """`…/<camera>/events`: one step of a tracked object's event.

    `new` once the object is confirmed, `update` when its zones, stationary
    state or best score changed (`changed` says which), `end` when it has been
    gone for `[tracking] lost_seconds` or edged stopped (`reason`). `id` is
    unique across restarts; `track_id` counts per camera from 1 since start.
    `box` and `score` are the latest, `zones` where it is (or was last seen),
    `entered_zones` every zone it entered, in order. Times are UTC captures.
    """

    v: Literal[1] = 1
    type: Literal["new", "update", "end"]
    id: str
    device: str
    camera: str
    track_id: int
    label: str
    score: float
    best_score: float
    box: Box
    zones: list[str]
    entered_zones: list[str]
    first_seen: str
    last_seen: str
    stationary: bool
    snapshot_at: str | None
    changed: list[Literal["zones", "stationary", "best_score"]]
    reason: Literal["lost", "stopped", "evicted", "reload"] | None
    published_at: str
    subclass: Subclass | None = None  # the track's latest second-stage class (`[[cameras.classify]]`)


class SegmentsPayload(FramePayload, kw_only=True):
    """`…/<camera>/segments`: what share of the picture each class covers, whole and per zone.

    `areas`: label → share of all the frame's pixels (largest first, classes
    without a pixel left out, summing to 1); `zones`: zone → the same over the
    pixels whose centres lie inside the zone's polygon.
    """

    areas: dict[str, float]
    zones: dict[str, dict[str, float]]


class InferenceMs(msgspec.Struct):
    """Inference time percentiles over the last stats interval, in milliseconds."""

    p50: float = 0.0
    p95: float = 0.0


class CameraStats(msgspec.Struct, kw_only=True):
    """Per-camera numbers over the last stats interval."""

    fps: float = 0.0
    frames_dropped: int = 0
    source_state: str = "running"


LinkState = Literal["connecting", "connected", "no_broker", "rejected"]


class MqttLink(msgspec.Struct, kw_only=True):
    """The broker link as the publisher saw it when the stats were made (stats made while it was
    down wait in the queue, so subscribers see the outage afterwards).

    `state`: `connecting` (no attempt finished yet), `connected`, `no_broker` (no
    broker could be reached: refused, unreachable, TLS failed) or `rejected` (a
    broker was reached but refused the session or closed the connection before
    its CONNACK). `closed_before_connack` counts the latter kind of silent
    rejection, typical of an MQTT 3.1.1-only broker given an MQTT 5 CONNECT.
    """

    state: LinkState = "connecting"
    broker: str = ""
    last_error: str | None = None
    connects: int = 0
    failed_attempts: int = 0
    closed_before_connack: int = 0


class WorkerStats(msgspec.Struct, kw_only=True):
    """One inference worker over the last stats interval (those that ran frames in it)."""

    name: str  # "cpu:0", "edgetpu:usb:1"
    backend: str
    fps: float = 0.0
    busy: float = 0.0  # time inside invoke() / wall time: near 1, the accelerator is kept busy


class Stats(msgspec.Struct, kw_only=True):
    """`…/stats`: the daemon fills the pipeline numbers; `Publisher.publish_stats` fills `device`,
    `publish_dropped`, `mqtt`, `published_at` and the temperatures it can read from /sys."""

    v: Literal[1] = 1
    device: str = ""
    run_id: str = ""
    state: State = "online"
    backend: str = ""
    model: str = ""
    uptime_s: float = 0.0
    fps: float = 0.0
    inference_ms: InferenceMs = msgspec.field(default_factory=InferenceMs)
    frames_processed: int = 0
    frames_dropped: int = 0
    publish_dropped: int = 0
    mqtt: MqttLink = msgspec.field(default_factory=MqttLink)
    cameras: dict[str, CameraStats] = msgspec.field(default_factory=dict)
    record: RecordStats | None = None  # null: no camera records
    workers: list[WorkerStats] = msgspec.field(default_factory=list)
    cpu_temp_c: float | None = None
    tpu_temp_c: float | None = None
    published_at: str = ""


_encoder = msgspec.json.Encoder()


def encode(payload: msgspec.Struct) -> bytes:
    return _encoder.encode(payload)


def iso_utc(timestamp: float) -> str:
    """ISO-8601 UTC with microseconds and a `Z`, the form every payload timestamp uses."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# file name → (payload type or None for a bare count, title, description)
SCHEMAS: dict[str, tuple[type | None, str]] = {
    f"status.v{SCHEMA_VERSION}.json": (StatusPayload, "edged status (retained `…/status`)"),
    f"detections.v{SCHEMA_VERSION}.json": (DetectionsPayload, "edged detections (`…/<camera>/detections`)"),
    f"stats.v{SCHEMA_VERSION}.json": (Stats, "edged stats (`…/stats`)"),
    f"count.v{SCHEMA_VERSION}.json": (None, "edged per-label count (retained `…/<camera>/<label>`)"),
    f"events.v{SCHEMA_VERSION}.json": (EventPayload, "edged event (`…/<camera>/events`)"),
    f"occupied.v{SCHEMA_VERSION}.json": (bool, "edged zone occupied (retained `…/<camera>/zones/<zone>`)"),
    f"segments.v{SCHEMA_VERSION}.json": (SegmentsPayload, "edged segments (`…/<camera>/segments`)"),
    f"coverage.v{SCHEMA_VERSION}.json": (
        float, "edged zone coverage per label (retained `…/<camera>/zones/<zone>/coverage/<label>`)"),
}
OPTIONAL_FIELDS = {Detection.__name__}  # omit_defaults Structs: their defaulted fields may be absent


def _normalize(node: Any, *, keep_required: bool = False) -> None:
    """Every property required (all are always emitted, but in OPTIONAL_FIELDS); docstring indentation
    removed."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and not keep_required:
            node["required"] = list(node["properties"])
        for name, definition in node.get("$defs", {}).items():
            _normalize(definition, keep_required=name in OPTIONAL_FIELDS)
        if isinstance(node.get("description"), str):
            node["description"] = inspect.cleandoc(node["description"])
        for key, value in node.items():
            if key != "$defs":
                _normalize(value)
    elif isinstance(node, list):
        for value in node:
            _normalize(value)


def schema_documents() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every payload, keyed by its committed file name."""
    documents = {}
    for name, (payload_type, title) in SCHEMAS.items():
        if payload_type is None:
            body: dict[str, Any] = {"type": "integer", "minimum": 0,
                                    "description": "How many objects of that label the camera sees now."}
        elif payload_type is bool:
            body = {"type": "boolean", "description": "Whether any tracked object is in the zone now."}
        elif payload_type is float:
            body = {"type": "number", "minimum": 0, "maximum": 1,
                    "description": "Share of the zone's pixels the segmenter gives that label now."}
        else:
            body = msgspec.json.schema(payload_type)
            _normalize(body)
        documents[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:edged:schema:{name.removesuffix('.json')}",
            "title": title,
            **body,
        }
    return documents


def schema_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in schema_documents().items():
        path = directory / name
        path.write_text(schema_text(document))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(path)
