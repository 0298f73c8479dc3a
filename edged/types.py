"""The values that flow between stages: Frame (source → detector) and Detection (detector → publisher).

Detection and Box are msgspec Structs because they go on the wire as they are:
`msgspec.json.encode(detection)` is exactly the object the MQTT payload and
`edged detect --json` carry (box normalized to 0..1, the source image's frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import msgspec
import numpy as np

# A coordinate normalized to the source image; the schema states the range subscribers can rely on.
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Box(msgspec.Struct, frozen=True):
    """An axis-aligned box, normalized to the source image and clipped to it: always 0..1."""

    xmin: Unit
    ymin: Unit
    xmax: Unit
    ymax: Unit

    @property
    def area(self) -> float:
        return max(0.0, self.xmax - self.xmin) * max(0.0, self.ymax - self.ymin)

    def iou(self, other: Box) -> float:
        ix = min(self.xmax, other.xmax) - max(self.xmin, other.xmin)
        iy = min(self.ymax, other.ymax) - max(self.ymin, other.ymin)
        inter = max(0.0, ix) * max(0.0, iy)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in the source image's pixels, rounded (0..width, 0..height for a clipped box)."""
        return (
            round(self.xmin * width),
            round(self.ymin * height),
            round(self.xmax * width),
            round(self.ymax * height),
        )


class Subclass(msgspec.Struct, frozen=True):
    """What a second-stage classifier says a detection is (e.g. the species of a `bird`), and how sure."""

    label: str
    score: float


class Detection(msgspec.Struct, frozen=True, omit_defaults=True):
    """One detected object; `subclass` only when a second stage classified it (left out otherwise, so
    detections without one read exactly as before)."""

    label: str
    class_id: int
    score: float
    box: Box
    subclass: Subclass | None = None


class Classification(msgspec.Struct, frozen=True):
    """A class a classifier gives a picture (or a crop of one); `class_id` is its line in the labels file."""

    label: str
    class_id: int
    score: float


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the source image sits inside the model's input tensor.

    Stretching fills the tensor (content 1.0 x 1.0); letterboxing keeps the
    aspect ratio and leaves padding, so only a top-left fraction holds the image.
    Boxes in tensor coordinates are divided by these fractions to get back to
    the source image's normalized coordinates.
    """

    content_width: float = 1.0
    content_height: float = 1.0


@dataclass(slots=True)
class Frame:
    """One captured picture on its way through the pipeline.

    `tensor` is the model input (uint8 HxWx3 RGB at the model's size) when the
    source can produce it directly (picamera2's `lores` stream); otherwise the
    detector prepares it from `image`. `image` is the full-resolution RGB
    picture, kept for snapshots and annotation; it may be None when the source
    only delivers the model-sized stream.
    """

    seq: int
    source: str
    width: int
    height: int
    captured_ns: int  # time.monotonic_ns() at capture: for latency measurements
    captured_at: float  # time.time() at capture: for timestamps in payloads
    image: np.ndarray | None = None
    tensor: np.ndarray | None = None
    geometry: Geometry = field(default_factory=Geometry)
