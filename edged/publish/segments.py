"""The MQTT side of a segmenter camera: `…/segments`, retained zone coverage, the overlay snapshot.

- `…/<camera>/segments` (JSON, segments.v1, QoS and expiry like detections):
  each segmentation's shares of the whole picture and of every zone;
- `…/<camera>/zones/<zone>/coverage/<label>` (retained number 0..1, coverage.v1):
  beside the zone's occupancy and counts; sent when it moved by `min_change`
  (a label once seen goes back to 0 rather than going stale) and again on every
  connect, like the counts;
- `…/<camera>/segments/snapshot` (retained JPEG): the picture with the classes
  tinted and a legend.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from edged.publish.homeassistant import Announcer
from edged.publish.payloads import FrameSize, SegmentsPayload, encode, iso_utc
from edged.publish.topics import Topics
from edged.segment.areas import Segmented
from edged.types import Frame


class SendSegments(Protocol):
    def __call__(self, topic: str, payload: bytes, *, retain: bool, kind: str | None,
                 content_type: str = "application/json") -> None: ...


class SegmentPublisher:
    """Publishes the segmentations of every segmenter camera; thread-safe (publish thread, paho's connect)."""

    def __init__(self, topics: Topics, *, device_id: str, run_id: str, send: SendSegments,
                 announcer: Announcer | None = None, quality: int = 80) -> None:
        self.topics = topics
        self.device_id = device_id
        self.run_id = run_id
        self._send = send
        self._announcer = announcer
        self._quality = quality
        self._lock = threading.Lock()
        self._coverage: dict[tuple[str, str, str], float] = {}  # (camera, zone, label) → last sent share

    def publish(self, camera: str, frame: Frame, segmented: Segmented, *, connected: bool,
                min_change: float = 0.01, snapshot: bool = True) -> None:
        payload = SegmentsPayload(
            device=self.device_id, run_id=self.run_id, camera=camera, seq=frame.seq,
            captured_at=iso_utc(frame.captured_at), published_at=iso_utc(time.time()),
            backend=segmented.backend, model=segmented.model, inference_ms=round(segmented.inference_ms, 3),
            frame=FrameSize(frame.width, frame.height), areas=segmented.areas, zones=segmented.zones)
        self._send(self.topics.segments(camera), encode(payload), retain=False, kind="segments")
        changes = self._coverage_changes(camera, segmented.zones, min_change)
        if not connected:
            return
        for zone, label, share in changes:
            self._send(self.topics.coverage(camera, zone, label), _share(share), retain=True, kind="coverage")
        if self._announcer is not None:
            self._announcer.send(self._announcer.new_coverage_sensors(
                camera, [(zone, label) for zone, label, _ in changes]))
        if snapshot and frame.image is not None and frame.image.shape[:2] == segmented.ids.shape:
            self._send(self.topics.segments_snapshot(camera), self._overlay(frame, segmented), retain=True,
                       kind=None, content_type="image/jpeg")

    def state_messages(self) -> list[tuple[str, bytes, str]]:
        """Every retained coverage (topic, payload, schema kind), for a (re)connect."""
        with self._lock:
            return [(self.topics.coverage(camera, zone, label), _share(share), "coverage")
                    for (camera, zone, label), share in self._coverage.items()]

    def _coverage_changes(self, camera: str, zones: dict[str, dict[str, float]], min_change: float
                          ) -> list[tuple[str, str, float]]:
        changes = []
        with self._lock:
            for zone, shares in zones.items():
                known = [label for (c, z, label) in self._coverage if (c, z) == (camera, zone)]
                for label in dict.fromkeys([*known, *shares]):
                    share, last = shares.get(label, 0.0), self._coverage.get((camera, zone, label))
                    if last is None or abs(share - last) >= min_change or (share == 0.0) != (last == 0.0):
                        self._coverage[(camera, zone, label)] = share
                        changes.append((zone, label, share))
        return changes

    def _overlay(self, frame: Frame, segmented: Segmented) -> bytes:
        import io

        from edged.annotate import overlay_segments  # Pillow drawing: only loaded when there is a picture

        buffer = io.BytesIO()
        overlay_segments(frame.image, segmented.ids, segmented.labels).save(buffer, "JPEG",
                                                                            quality=self._quality)
        return buffer.getvalue()


def _share(value: float) -> bytes:
    return f"{value:.4f}".rstrip("0").rstrip(".").encode() if value else b"0"
