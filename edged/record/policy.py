"""Which frames to keep: the `uncertain`, `new_object` and `interval` policies of one camera.

Deciding is cheap and runs in the caller's thread (a few comparisons per
detection); only a frame that is kept costs anything, later, in the writer.
Times are the frames' capture times, so a paced camera, a stalled one and a
file replay behave alike; a clock stepping back (NTP at boot) counts as due.

Tracking is another stage; the recorder needs only this from it, per detection
of a frame: the track id, whether the track was confirmed in this frame (its
first frame) and whether this frame is the track's best so far (TrackUpdate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edged.record.settings import RecordSettings
from edged.types import Detection


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """What tracking says about one detection of the frame being offered."""

    detection: int  # index into the frame's detections
    track_id: str
    new: bool = False  # the track was confirmed in this frame: this is its first frame
    best_improved: bool = False  # this frame shows the object better than any before


@dataclass(frozen=True, slots=True)
class Decision:
    reasons: tuple[str, ...]  # policies that want the frame, in settings order
    first_of: tuple[str, ...] = ()  # track ids this frame is the first frame of
    best_of: tuple[str, ...] = ()  # track ids this frame is the best frame of, so far


class CameraPolicy:
    """The policies of one camera and what they remember between frames."""

    def __init__(self, settings: RecordSettings) -> None:
        self.settings = settings
        self._labels = frozenset(settings.labels)
        self._last_uncertain: float | None = None
        self._last_interval: float | None = None

    def _due(self, last: float | None, now: float, gap: float) -> bool:
        return last is None or now - last >= gap or now < last

    def _counts(self, detection: Detection) -> bool:
        return not self._labels or detection.label in self._labels

    def decide(self, captured_at: float, detections: Sequence[Detection],
               tracks: Sequence[TrackUpdate] | None = None) -> Decision | None:
        """The reasons to keep this frame, or None; changes nothing until `commit`."""
        s = self.settings
        reasons: list[str] = []
        first: tuple[str, ...] = ()
        best: tuple[str, ...] = ()
        for policy in s.policies:
            if policy == "uncertain":
                if self._due(self._last_uncertain, captured_at, s.uncertain_gap_seconds) and any(
                        s.uncertain_min <= d.score < s.uncertain_max and self._counts(d) for d in detections):
                    reasons.append(policy)
            elif policy == "interval":
                if self._due(self._last_interval, captured_at, s.interval_seconds):
                    reasons.append(policy)
            elif policy == "new_object" and tracks:
                wanted = [t for t in tracks if 0 <= t.detection < len(detections)
                          and self._counts(detections[t.detection])]
                first = tuple(t.track_id for t in wanted if t.new)
                best = tuple(t.track_id for t in wanted if t.best_improved)
                if first or best:
                    reasons.append(policy)
        return Decision(tuple(reasons), first, best) if reasons else None

    def commit(self, decision: Decision, captured_at: float) -> None:
        """The frame was queued: start the gaps from it."""
        if "uncertain" in decision.reasons:
            self._last_uncertain = captured_at
        if "interval" in decision.reasons:
            self._last_interval = captured_at
