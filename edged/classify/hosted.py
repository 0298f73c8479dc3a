"""The detector and its second-stage classifiers as one model a worker hosts.

A crash in either still takes only the worker. The classifiers load on the
backend the detector really got (its Edge TPU build beside the detector's on
an Edge TPU: co-compiled models share the TPU's parameter cache; another
interpreter on the CPU). `postprocess` runs the detector's postprocess and then
the crops the job's CropPlan asks for, from the input tensor the worker
already has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edged.classify.crops import classify_crops
from edged.classify.plan import decode_plan
from edged.detect.classifier import Classifier
from edged.detect.detector import Detector
from edged.detect.settings import DetectorSettings, ModelSettings
from edged.types import Detection, Geometry


class DetectorWithClassifiers:
    """A Detector plus classifiers by model name; everything else is the detector's."""

    def __init__(self, detector: Detector, classifiers: dict[str, Classifier]) -> None:
        self.detector = detector
        self.classifiers = classifiers

    def __getattr__(self, name: str) -> Any:  # backend_name, model_name, runtime, input_spec, …
        return getattr(self.detector, name)

    def invoke(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self.detector.invoke(tensor)

    def postprocess(self, outputs: list[np.ndarray], geometry: Geometry, *, tensor: np.ndarray | None = None,
                    request: bytes | None = None) -> list[Detection]:
        """The detections; with a job's request (an encoded CropPlan) and its input tensor, the ones the
        plan chooses carry their subclass."""
        detections = self.detector.postprocess(outputs, geometry)
        if request is None or tensor is None or not detections:
            return detections
        return classify_crops(decode_plan(request), detections, tensor, geometry, self.classifiers)

    def close(self) -> None:
        for classifier in self.classifiers.values():
            classifier.close()
        self.detector.close()


def classifier_settings(settings: DetectorSettings, model: str) -> ModelSettings:
    """The detector's loading settings (backend, device, runtimes, threads) for another model."""
    fields = {name: getattr(settings, name) for name in ModelSettings.__struct_fields__}
    return ModelSettings(**{**fields, "model": model, "model_file": None, "edgetpu_model_file": None,
                            "labels_file": None, "resize": "stretch"})


def open_detector_with_classifiers(settings: DetectorSettings, backend: str, classifiers: tuple[str, ...]
                                   ) -> DetectorWithClassifiers:
    """The worker's opener when a camera has `[[cameras.classify]]`: the detector, then each classifier on
    the backend kind the detector runs on."""
    detector = Detector.open(settings, backend=backend)
    loaded: dict[str, Classifier] = {}
    try:
        kind = "edgetpu" if detector.backend_name.startswith("edgetpu") else "cpu"
        for model in classifiers:
            loaded[model] = Classifier.open(classifier_settings(settings, model), backend=kind)
    except BaseException:
        for classifier in loaded.values():
            classifier.close()
        detector.close()
        raise
    return DetectorWithClassifiers(detector, loaded)
