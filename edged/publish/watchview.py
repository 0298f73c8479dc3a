"""How `edged watch` shows messages: JSON lines, plain event lines, or a redrawn terminal screen.

All three read the same topic meanings (topics.Topics.parse); the screen and
the lines keep a small per-device model (status, stats, per-label counts,
last detections) so what is shown is the device's current state, not a
scroll of raw payloads.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from edged.publish.topics import Topics


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


@dataclass
class Device:
    status: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_detections: dict[str, tuple[float, str]] = field(default_factory=dict)


def summarize(detections: dict) -> str:
    items = ", ".join(f"{d.get('label')} {d.get('score', 0):.2f}" for d in detections.get("detections", []))
    return f"seq {detections.get('seq')}: {items or 'nothing'} ({detections.get('inference_ms', 0):.1f} ms)"


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
        payload = decode(message.payload)
        line = self.update(device, parsed, payload, len(message.payload))
        if line is not None:
            self.emit(f"{parsed.device} {line}")

    def update(self, device: Device, parsed, payload: Any, size: int) -> str | None:
        if parsed.kind == "status" and isinstance(payload, dict):
            device.status = payload
            return (f"status {payload.get('state')} backend={payload.get('backend')} model={payload.get('model')} "
                    f"version={payload.get('version')} since={payload.get('since')}")
        if parsed.kind == "stats" and isinstance(payload, dict):
            device.stats = payload
            inference = payload.get("inference_ms") or {}
            temp = payload.get("cpu_temp_c")
            return (f"stats fps={payload.get('fps')} inference p50={inference.get('p50')} ms "
                    f"p95={inference.get('p95')} ms frames_dropped={payload.get('frames_dropped')} "
                    f"publish_dropped={payload.get('publish_dropped')} backend={payload.get('backend')}"
                    + (f" cpu={temp}°C" if temp is not None else ""))
        if parsed.kind == "count":
            device.counts.setdefault(parsed.camera, {})[parsed.label] = payload if isinstance(payload, int) else 0
            return f"{parsed.camera} {parsed.label}={payload}"
        if parsed.kind == "detections" and isinstance(payload, dict):
            device.last_detections[parsed.camera] = (time.monotonic(), summarize(payload))
            return f"{parsed.camera} detections {summarize(payload)}"
        if parsed.kind == "snapshot":
            return f"{parsed.camera} snapshot {size} bytes"
        return None

    def emit(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def tick(self, *, connected: bool) -> None:
        pass

    def close(self) -> None:
        pass


class JsonView(LinesView):
    """Every message as `{"topic", "retain", "qos", "payload"}`; binary payloads as their size."""

    def show(self, message) -> None:
        payload = decode(message.payload)
        record: dict[str, Any] = {"topic": message.topic, "retain": bool(message.retain), "qos": message.qos,
                                  "payload": payload}
        if payload is None:
            record["payload_bytes"] = len(message.payload)
        self.emit(json.dumps(record, separators=(",", ":"), ensure_ascii=False))


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
        lines = [f"edged watch  {self.broker}  {state}  {time.strftime('%H:%M:%S')}", ""]
        if not self.devices:
            lines.append(f"waiting for messages on {self.topics.everything} …")
        for name, device in sorted(self.devices.items()):
            status, stats = device.status, device.stats
            inference = stats.get("inference_ms") or {}
            lines.append(f"{name}  {status.get('state', '?').upper()}  backend {status.get('backend', '?')}  "
                         f"model {status.get('model', '?')}  v{status.get('version', '?')}  "
                         f"since {status.get('since', '?')}")
            if stats:
                temp = stats.get("cpu_temp_c")
                lines.append(f"    fps {stats.get('fps')}  inference p50 {inference.get('p50')} ms  "
                             f"p95 {inference.get('p95')} ms  dropped frames {stats.get('frames_dropped')}  "
                             f"publish {stats.get('publish_dropped')}" + (f"  cpu {temp}°C" if temp is not None else ""))
            for camera in sorted({*device.counts, *device.last_detections}):
                counts = "  ".join(f"{label} {count}" for label, count in sorted(device.counts.get(camera, {}).items()))
                lines.append(f"    {camera}: {counts or '-'}")
                if camera in device.last_detections:
                    at, summary = device.last_detections[camera]
                    lines.append(f"        last {summary}, {time.monotonic() - at:.0f} s ago")
            lines.append("")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


def make_view(kind: str, topics: Topics, *, broker: str) -> LinesView:
    if kind == "json":
        return JsonView(topics)
    if kind == "screen":
        return ScreenView(topics, broker=broker)
    return LinesView(topics)
