"""The segmenter as a worker hosts it, and its class map on the wire.

The worker is the detector's (same backends, same protocol); only the
postprocess and the result kind differ: `class_map`, the map at the model's
resolution (513×513 bytes for DeepLab), sent as raw bytes. The parent maps it
to the picture's size and counts pixels (edged/segment/areas.py), where the
zone masks are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edged.detect.segmenter import Segmenter
from edged.detect.settings import DetectorSettings
from edged.segment.classmap import KIND, ClassMap
from edged.types import Geometry


class HostedSegmenter:
    """A Segmenter whose postprocess gives a ClassMap; everything else is the segmenter's."""

    result_kind = KIND

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter

    def __getattr__(self, name: str) -> Any:  # backend_name, model_name, runtime, input_spec, labels, …
        return getattr(self.segmenter, name)

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.segmenter.invoke(tensor)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, **_: object) -> ClassMap:
        return ClassMap.of(self.segmenter.postprocess(outputs), self.segmenter.labels)

    def close(self) -> None:
        self.segmenter.close()


def open_segmenter(settings: DetectorSettings, backend: str, model: str) -> HostedSegmenter:
    """The worker's opener for a segmenter camera: `model` on the backend and device `settings` name."""
    from edged.classify.hosted import classifier_settings

    return HostedSegmenter(Segmenter.open(classifier_settings(settings, model), backend=backend))
