"""Per camera: which counts changed, and whether this frame's detections and snapshot go out.

Kept apart from the MQTT plumbing because it is the policy users configure
(`[publish.detections]`, `[publish.snapshot]`): pure decisions on counts and
a monotonic clock, the same for every camera.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edged.publish.settings import DetectionsSettings, SnapshotSettings


@dataclass
class CameraCadence:
    """What was last published for one camera."""

    counts: dict[str, int] = field(default_factory=dict)
    subclasses: dict[tuple[str, str], int] = field(default_factory=dict)  # (label, subclass) → count
    signature: tuple = ()
    sent_nonempty: bool = False
    sent_at: float = float("-inf")
    snapshot_pending: bool = False
    snapshot_at: float = float("-inf")

    def count_changes(self, counts: Counter) -> dict[str, int]:
        """Labels whose count differs from the last frame; a label once seen stays known, so it goes back to 0."""
        return _changes(self.counts, counts)

    def subclass_changes(self, counts: Counter) -> dict[tuple[str, str], int]:
        """The same for (label, subclass) counts of a second stage counted by subclass."""
        return _changes(self.subclasses, counts)

    def wants_detections(self, settings: DetectionsSettings, counts: Counter, now: float) -> bool:
        """every_frame: frames with detections + the first empty one; on_change: when the counts change;
        rate_limited: every_frame at most max_per_second (a held-back "cleared" goes out on a later frame)."""
        nonempty = bool(counts)
        signature = tuple(sorted(counts.items()))
        if settings.mode == "on_change":
            send = signature != self.signature
        else:
            send = nonempty or self.sent_nonempty
            if settings.mode == "rate_limited":
                send = send and now - self.sent_at >= 1.0 / settings.max_per_second
        if send:
            self.signature, self.sent_nonempty, self.sent_at = signature, nonempty, now
        return send

    def wants_snapshot(self, settings: SnapshotSettings, counts: Counter, previous: dict[str, int],
                       now: float) -> bool:
        """When a chosen label appears (its count rises), at most once per min_interval; an appearance
        held back by the interval is still pictured later if the label is still in view."""
        if not settings.labels:
            return False
        present = any(counts.get(label, 0) for label in settings.labels)
        appeared = any(counts.get(label, 0) > previous.get(label, 0) for label in settings.labels)
        self.snapshot_pending = present and (self.snapshot_pending or appeared)
        if self.snapshot_pending and now - self.snapshot_at >= settings.min_interval_seconds:
            self.snapshot_pending, self.snapshot_at = False, now
            return True
        return False


def _changes(known: dict, counts: Counter) -> dict:
    changes = {key: counts.get(key, 0) for key in {*known, *counts}
               if counts.get(key, 0) != known.get(key, 0)}
    known.update(changes)
    return changes
