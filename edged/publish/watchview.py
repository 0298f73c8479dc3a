"""How `edged watch` shows messages: JSON lines, plain event lines, or a redrawn terminal screen.

All three read the same topic meanings (topics.Topics.parse); the screen and
the lines keep a small per-device model (status, stats, per-label counts,
last detections) so what is shown is the device's current state, not a
scroll of raw payloads.

Anyone who can publish on the broker writes what watch shows, so nothing from
a message reaches the terminal as it came: each payload is decoded with the
msgspec Structs its JSON Schema is generated from (a message that does not
match is shown as INVALID, with the reason, and changes nothing), and every
text is escaped (`printable`) so no escape sequence can retitle the window or
clear the screen.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any, TextIO

import msgspec

from edged.publish.payloads import (SCHEMA_VERSION, DetectionsPayload, EventPayload, SegmentsPayload, Stats,
                                    StatusPayload)
from edged.publish.topics import Parsed, Topics

_DECODERS: dict[str, msgspec.json.Decoder] = {
    "status": msgspec.json.Decoder(StatusPayload),
    "stats": msgspec.json.Decoder(Stats),
    "detections": msgspec.json.Decoder(DetectionsPayload),
    "count": msgspec.json.Decoder(Annotated[int, msgspec.Meta(ge=0)]),
    "zone_count": msgspec.json.Decoder(Annotated[int, msgspec.Meta(ge=0)]),
    "occupied": msgspec.json.Decoder(bool),
    "events": msgspec.json.Decoder(EventPayload),
    "subclass_count": msgspec.json.Decoder(Annotated[int, msgspec.Meta(ge=0)]),
    "segments": msgspec.json.Decoder(SegmentsPayload),
    "coverage": msgspec.json.Decoder(Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]),
}
# C0/C1 controls and DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")  # json.dumps keeps these


def printable(text: object) -> str:
    """Text safe for a terminal: control characters shown as `\\x1b`, `\\u202e`, never sent as they are."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}",
                            str(text))


def decode(payload: bytes) -> Any:
    """JSON when it is JSON, text when it is text, else None (a JPEG snapshot)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def validate(kind: str, payload: bytes) -> tuple[Any, str | None]:
    """(the decoded Struct or count, None) when the payload matches its v1 schema; (None, why) otherwise.
    Snapshots are JPEG bytes and are not decoded."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        return payload, None
    try:
        return decoder.decode(payload), None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return None, f"not {kind}.v{SCHEMA_VERSION}: {exc}"


@dataclass
class Device:
    status: StatusPayload | None = None
    stats: Stats | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_detections: dict[str, tuple[float, str]] = field(default_factory=dict)
    invalid: int = 0
    last_invalid: str = ""
    tracks: dict[str, dict[str, str]] = field(default_factory=dict)  # camera → event id → live track line
    events: dict[str, deque] = field(default_factory=dict)  # camera → the last few event lines
    zones: dict[str, dict[str, str]] = field(default_factory=dict)  # camera → zone → "occupied" / "empty"


def describe_event(event: EventPayload) -> str:
    """`new person #3 0.82 in driveway (id …)`; updates say what changed, ends why."""
    text = f"{event.type} {printable(event.label)} #{event.track_id} {event.best_score:.2f}"
    if event.zones:
        text += f" in {','.join(printable(zone) for zone in event.zones)}"
    if event.stationary:
        text += " stationary"
    if event.changed:
        text += f" changed={','.join(event.changed)}"
    if event.reason:
        text += f" reason={event.reason}"
    return f"{text} (id {printable(event.id)})"


def summarize(detections: DetectionsPayload) -> str:
    items = ", ".join(f"{printable(d.label)} {d.score:.2f}" for d in detections.detections)
    return f"seq {detections.seq}: {items or 'nothing'} ({detections.inference_ms:.1f} ms)"


class LinesView:
    """One line per event (status change, count change, stats, detections); for pipes and logs."""

    def __init__(self, topics: Topics, out: TextIO = sys.stdout):
        self.topics = topics
        self.out = out
        self.devices: dict[str, Device] = {}

    def show(self, message) -> None:
        parsed = self.topics.parse(message.topic)
        if parsed is None:
            return
        device = self.devices.setdefault(parsed.device, Device())
        value, problem = validate(parsed.kind, bytes(message.payload))
        if problem is not None:
            device.invalid += 1
            device.last_invalid = f"{_where(parsed)}{printable(problem)}"
            line = f"{_where(parsed)}INVALID {len(message.payload)} bytes ({printable(problem)})"
        else:
            line = self.update(device, parsed, value, len(message.payload))
        if line is not None:
            self.emit(f"{printable(parsed.device)} {line}")

    def update(self, device: Device, parsed: Parsed, value: Any, size: int) -> str | None:
        camera = printable(parsed.camera)
        if isinstance(value, StatusPayload):
            device.status = value
            return (f"status {value.state} backend={printable(value.backend)} model={printable(value.model)} "
                    f"version={printable(value.version)} since={printable(value.since)}")
        if isinstance(value, Stats):
            device.stats = value
            temp = value.cpu_temp_c
            return (f"stats fps={value.fps} inference p50={value.inference_ms.p50} ms "
                    f"p95={value.inference_ms.p95} ms frames_dropped={value.frames_dropped} "
                    f"publish_dropped={value.publish_dropped} backend={printable(value.backend)} "
                    f"mqtt={value.mqtt.state}" + (f" cpu={temp}°C" if temp is not None else ""))
        if parsed.kind == "count":
            device.counts.setdefault(camera, {})[printable(parsed.label)] = value
            return f"{camera} {printable(parsed.label)}={value}"
        if isinstance(value, DetectionsPayload):
            device.last_detections[camera] = (time.monotonic(), summarize(value))
            return f"{camera} detections {summarize(value)}"
        if parsed.kind == "snapshot":
            return f"{camera} snapshot {size} bytes"
        return self.update_tracking(device, parsed, value, size)

    def update_tracking(self, device: Device, parsed: Parsed, value: Any, size: int) -> str | None:
        camera = printable(parsed.camera)
        if isinstance(value, EventPayload):
            line = describe_event(value)
            live = device.tracks.setdefault(camera, {})
            if value.type == "end":
                live.pop(value.id, None)
            else:
                live[value.id] = line.split(" ", 1)[1]
            device.events.setdefault(camera, deque(maxlen=5)).append(f"{time.strftime('%H:%M:%S')} {line}")
            return f"{camera} event {line}"
        if parsed.kind == "event_snapshot":
            return f"{camera} event snapshot {size} bytes"
        zone = printable(parsed.zone)
        if parsed.kind == "occupied":
            state = "occupied" if value else "empty"
            device.zones.setdefault(camera, {})[zone] = state
            return f"{camera} zone {zone} {state}"
        if parsed.kind == "zone_count":
            return f"{camera} zone {zone} {printable(parsed.label)}={value}"
        return self.update_classes(parsed, value, size)

    def update_classes(self, parsed: Parsed, value: Any, size: int) -> str | None:
        """What the second stage and the segmenter publish."""
        camera, label = printable(parsed.camera), printable(parsed.label)
        if parsed.kind == "subclass_count":
            return f"{camera} {label}/{printable(parsed.subclass)}={value}"
        if isinstance(value, SegmentsPayload):
            areas = ", ".join(f"{printable(name)} {share:.1%}" for name, share in value.areas.items())
            return f"{camera} segments seq {value.seq}: {areas or 'nothing'} ({value.inference_ms:.1f} ms)"
        if parsed.kind == "segments_snapshot":
            return f"{camera} segments snapshot {size} bytes"
        if parsed.kind == "coverage":
            return f"{camera} zone {printable(parsed.zone)} {label} coverage={value:.1%}"
        return None

    def emit(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def tick(self, *, connected: bool) -> None:
        pass

    def close(self) -> None:
        pass


def _where(parsed: Parsed) -> str:
    return f"{printable(parsed.camera)} {parsed.kind} " if parsed.camera is not None else f"{parsed.kind} "


class JsonView(LinesView):
    """Every message as `{"topic", "retain", "qos", "payload"}` plus `"invalid": reason` when it does not
    match its schema; binary payloads as their size. Escaped JSON: safe on a terminal, exact for jq."""

    def show(self, message) -> None:
        payload = decode(message.payload)
        record: dict[str, Any] = {"topic": message.topic, "retain": bool(message.retain), "qos": message.qos,
                                  "payload": payload}
        if payload is None:
            record["payload_bytes"] = len(message.payload)
        parsed = self.topics.parse(message.topic)
        if parsed is not None and (problem := validate(parsed.kind, bytes(message.payload))[1]) is not None:
            record["invalid"] = problem
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        self.emit(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text))


class ScreenView(LinesView):
    """A compact screen per device, redrawn at most 4 times a second."""

    def __init__(self, topics: Topics, out: TextIO = sys.stdout, *, broker: str = ""):
        super().__init__(topics, out)
        self.broker = broker
        self.connected = True
        self._drawn_at = 0.0
        self._dirty = True

    def emit(self, line: str) -> None:
        self._dirty = True
        self.tick(connected=self.connected)

    def tick(self, *, connected: bool) -> None:
        self._dirty = self._dirty or connected != self.connected
        self.connected = connected
        if self._dirty and time.monotonic() - self._drawn_at >= 0.25:
            self.out.write("\x1b[H\x1b[2J" + self.render())
            self.out.flush()
            self._drawn_at, self._dirty = time.monotonic(), False

    def render(self) -> str:
        state = "connected" if self.connected else "DISCONNECTED (reconnecting)"
        lines = [f"edged watch  {printable(self.broker)}  {state}  {time.strftime('%H:%M:%S')}", ""]
        if not self.devices:
            lines.append(f"waiting for messages on {printable(self.topics.everything)} …")
        for name, device in sorted(self.devices.items()):
            lines += self._device_lines(printable(name), device)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _device_lines(name: str, device: Device) -> list[str]:
        status, stats = device.status, device.stats
        if status is None:
            lines = [f"{name}  ?"]
        else:
            lines = [f"{name}  {status.state.upper()}  backend {printable(status.backend)}  model "
                     f"{printable(status.model)}  v{printable(status.version)}  "
                     f"since {printable(status.since)}"]
        if stats is not None:
            temp = stats.cpu_temp_c
            lines.append(f"    fps {stats.fps}  inference p50 {stats.inference_ms.p50} ms  p95 "
                         f"{stats.inference_ms.p95} ms  dropped frames {stats.frames_dropped}  publish "
                         f"{stats.publish_dropped}  mqtt {stats.mqtt.state}"
                         + (f"  cpu {temp}°C" if temp is not None else ""))
        for camera in sorted({*device.counts, *device.last_detections, *device.events}):
            per_label = sorted(device.counts.get(camera, {}).items())
            counts = "  ".join(f"{label} {count}" for label, count in per_label)
            lines.append(f"    {camera}: {counts or '-'}")
            if camera in device.last_detections:
                at, summary = device.last_detections[camera]
                lines.append(f"        last {summary}, {time.monotonic() - at:.0f} s ago")
            zones = "  ".join(f"{zone} {state}" for zone, state in sorted(device.zones.get(camera, {}).items()))
            if zones:
                lines.append(f"        zones: {zones}")
            lines += [f"        track {line}" for line in device.tracks.get(camera, {}).values()]
            lines += [f"        event {line}" for line in device.events.get(camera, ())]
        if device.invalid:
            lines.append(f"    INVALID messages: {device.invalid}, last: {device.last_invalid}")
        lines.append("")
        return lines

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


def make_view(kind: str, topics: Topics, *, broker: str) -> LinesView:
    if kind == "json":
        return JsonView(topics)
    if kind == "screen":
        return ScreenView(topics, broker=broker)
    return LinesView(topics)
