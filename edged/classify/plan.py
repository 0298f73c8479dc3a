"""What one job asks the worker to classify, and which detections qualify — decided where the frame is.

The parent cannot know a frame's detections before the worker has them, so it
sends the rules with the job (a CropPlan) and the worker applies them to the
detections it just made: the label, the minimum crop size in the camera's
pixels, at most K crops per frame (best scores first), and the places where a
tracked object was classified recently enough (`skip`: its latest box; a
detection overlapping one is that object again). Pure and small: it travels
pickled with each job.
"""

from __future__ import annotations

import msgspec

from edged.types import Box, Detection

SKIP_IOU = 0.3  # a detection overlapping a recently classified track this much is that track


class CropRequest(msgspec.Struct, frozen=True):
    """Classify detections of `label` with the worker's classifier `model`."""

    model: str
    label: str
    margin: float
    min_pixels: int
    max_crops: int
    skip: tuple[Box, ...] = ()


class CropPlan(msgspec.Struct, frozen=True):
    """All second-stage work for one frame of `width` × `height` pixels."""

    width: int
    height: int
    requests: tuple[CropRequest, ...]


def choose(request: CropRequest, detections: list[Detection], width: int, height: int) -> list[int]:
    """Indices of the detections this request classifies, best score first."""
    wanted = [
        index for index, d in enumerate(detections)
        if d.label == request.label
        and (d.box.xmax - d.box.xmin) * width >= request.min_pixels
        and (d.box.ymax - d.box.ymin) * height >= request.min_pixels
        and not any(d.box.iou(place) >= SKIP_IOU for place in request.skip)
    ]
    wanted.sort(key=lambda index: -detections[index].score)
    return wanted[:request.max_crops]


def encode_plan(plan: CropPlan) -> bytes:
    """A CropPlan as it travels with a job (the worker protocol's request)."""
    return msgspec.msgpack.encode(plan)


def decode_plan(request: bytes) -> CropPlan:
    return msgspec.msgpack.decode(request, type=CropPlan)
