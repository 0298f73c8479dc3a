"""A benchmark-only model for the inference worker: the real detector whose invoke() returns canned outputs.

With inference taking ~0, what is left of a frame's cost is the host's own work
— capture, resize, hand-off, postprocess, publish — so the pipeline runs at its
ceiling. The outputs are real: the real model run once on a sample photo at
load; postprocess runs for real on them each frame. Used by bench_ceiling.py
through the worker's opener ("tests.benchmarks.canned:canned_detector"); never
by edged itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edged import paths
from edged.detect.detector import Detector
from edged.detect.settings import DetectorSettings
from edged.types import Detection, Geometry


class CannedDetector:
    """What the worker needs of a Detector; invoke() hands back the recorded outputs."""

    def __init__(self, detector: Detector, outputs: list[np.ndarray]) -> None:
        self._detector = detector
        self._outputs = outputs
        self.backend_name = f"canned:{detector.backend_name}"
        self.model_name = detector.model_name
        self.runtime = detector.runtime
        self.input_spec = detector.input_spec
        self.fallback_reason = None

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self._outputs

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry = Geometry()) -> list[Detection]:
        return self._detector.postprocess(outputs, geometry)

    def close(self) -> None:
        self._detector.close()


def canned_detector(settings: DetectorSettings, backend: str) -> Any:
    from PIL import Image

    detector = Detector.open(settings, backend="cpu")
    photo = np.asarray(Image.open(paths.samples_dir() / "grace_hopper.bmp").convert("RGB"))
    tensor, _ = detector.prepare(photo)
    return CannedDetector(detector, detector.invoke(tensor))
