"""The parent's side of a segmenter camera: when the next segmentation is due, and a class map → Segmented.

Beside the detector the segmenter runs on a slower cadence (`interval_seconds`
of capture time); alone it runs on every frame the camera's fps cap lets
through. The worker's class map is at the model's resolution: it is mapped back
to the picture (letterbox padding cut off, nearest neighbour) before any pixel
is counted, so shares are shares of the picture.
"""

from __future__ import annotations

from collections.abc import Sequence

from edged.detect.segmentation import to_picture
from edged.segment.areas import Segmented, ZoneAreas
from edged.segment.classmap import ClassMap
from edged.segment.settings import SegmentSettings
from edged.track.settings import ZoneSettings
from edged.types import Frame


class SegmentStage:
    """One camera's segmenter settings, zone masks and cadence."""

    def __init__(self, settings: SegmentSettings, zones: Sequence[ZoneSettings]) -> None:
        self.settings = settings
        self.areas = ZoneAreas(zones)
        self._next = float("-inf")

    def due(self, captured: float) -> bool:
        """True (and the next one scheduled) when a frame captured at `captured` (monotonic s) is due."""
        if captured < self._next:
            return False
        self._next = captured + self.settings.interval_seconds
        return True

    def measure(self, frame: Frame, class_map: ClassMap, *, inference_ms: float, backend: str,
                model: str) -> Segmented:
        ids = to_picture(class_map.array(), frame.width, frame.height, frame.geometry)
        whole, zones = self.areas.measure(ids, class_map.labels)
        return Segmented(whole, zones, ids, class_map.labels, inference_ms, backend, model)
