"""The worker's side of the second stage: cut the chosen detections out of the frame it has, classify them.

The crops come from the detector's input tensor, already in the worker's
shared memory: no second frame crosses the process boundary, and a 300×300
input still gives a bird that fills a third of the picture a 100-pixel crop
(Ara macao 0.73 on parrot.jpg, 0.84 from the full-size picture). Letterbox
padding is cut off first, so the detection boxes (normalized to the picture)
map onto the tensor's content.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import numpy as np

from edged.classify.plan import CropPlan, choose
from edged.detect.classifier import Classifier, crop
from edged.types import Detection, Geometry, Subclass


def pixels_of(tensor: np.ndarray) -> np.ndarray:
    """A model input tensor back to uint8 RGB pixels (the inverse of edged.detect.preprocess.quantize)."""
    if tensor.dtype == np.uint8:
        return tensor
    if tensor.dtype == np.int8:
        return (tensor.astype(np.int16) + 128).astype(np.uint8)
    return np.clip(tensor.astype(np.float32) * 127.5 + 127.5, 0, 255).round().astype(np.uint8)


def picture_part(tensor: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The part of the input tensor that holds the picture (letterbox padding cut off), as RGB pixels."""
    rows, columns = tensor.shape[:2]
    content = tensor[:max(1, round(rows * geometry.content_height)),
                     :max(1, round(columns * geometry.content_width))]
    return pixels_of(content)


def classify_crops(plan: CropPlan, detections: list[Detection], tensor: np.ndarray, geometry: Geometry,
                   classifiers: Mapping[str, Classifier]) -> list[Detection]:
    """The detections, each one the plan chose carrying its classifier's best class as `subclass`."""
    result = list(detections)
    picture: np.ndarray | None = None
    for request in plan.requests:
        chosen = choose(request, detections, plan.width, plan.height)
        if not chosen:
            continue
        picture = picture_part(tensor, geometry) if picture is None else picture
        classifier = classifiers[request.model]
        for index in chosen:
            detection = detections[index]
            best = classifier.classify(crop(picture, detection.box, margin=request.margin), top=1).classes
            if best:
                subclass = Subclass(best[0].label, round(best[0].score, 4))
                result[index] = msgspec.structs.replace(detection, subclass=subclass)
    return result
