"""The Segmenter: a model giving a class (or class scores) per pixel, and the share of a picture per class.

It loads through the same path as the Detector (loading.py); its postprocess
is segmentation.py's pure functions, which the daemon can call on its own.
How many classes the model knows comes from the scores' depth, or, for a
model that ends in ArgMax (DeepLab), from the depth of the ArgMax's input —
that is what the labels file is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from edged.detect import backends
from edged.detect.labels import fit_labels, read_labels
from edged.detect.loading import OpenModel, load_model
from edged.detect.segmentation import class_map, class_shares, to_picture
from edged.detect.settings import ModelSettings


@dataclass(frozen=True)
class Segmentation:
    """One picture segmented: its class map at the picture's size, and the share of it per label."""

    ids: np.ndarray  # height × width class ids
    areas: dict[str, float]  # label → share of all pixels, largest first
    inference_ms: float
    backend: str


class Segmenter(OpenModel):
    """A segmenter loaded on one backend, with its labels (index = class id)."""

    def __init__(self, backend: backends.Backend, labels: list[str], *, model_name: str,
                 fallback_reason: str | None = None, resize: Literal["stretch", "letterbox"] = "stretch"):
        super().__init__(backend, model_name=model_name, fallback_reason=fallback_reason, resize=resize)
        self.labels = labels

    @classmethod
    def open(cls, settings: ModelSettings, *, backend: str | None = None,
             models_dir: Path | None = None) -> Segmenter:
        """Load a segmenter (manifest kind `segmenter`, or a file with one per-pixel output)."""
        loaded = load_model(settings, "segmenter", backend=backend, models_dir=models_dir)
        try:
            labels = read_labels(loaded.resolved.labels)
            classes = classes_scored(loaded.backend)
            if classes is not None:
                labels, offset = fit_labels(labels, classes, loaded.resolved.labels,
                                            loaded.backend.model_path.name)
                labels = ["background", *labels] if offset else labels
        except Exception:
            loaded.backend.close()
            raise
        return cls(loaded.backend, labels, model_name=loaded.resolved.name,
                   fallback_reason=loaded.fallback_reason, resize=settings.resize)

    def postprocess(self, outputs: list[np.ndarray]) -> np.ndarray:
        """Raw outputs → the class map at the model's output resolution."""
        return class_map(outputs[0])

    def segment(self, image: np.ndarray) -> Segmentation:
        """A picture → its class map at its own size and the share of its pixels per label."""
        tensor, geometry = self.prepare(image)
        outputs, inference_ms = self.timed_invoke(tensor)
        height, width = image.shape[:2]
        ids = to_picture(self.postprocess(outputs), width, height, geometry)
        return Segmentation(ids, class_shares(ids, self.labels), inference_ms, self.backend_name)


def classes_scored(backend: backends.Backend) -> int | None:
    """How many classes the model scores: the depth of per-pixel scores, or of the scores behind a final
    ArgMax (found in the op list); None when the runtime cannot tell."""
    detail = backend.output_details[0]
    if len(detail["shape"]) == 4:
        return int(detail["shape"][-1])
    interpreter = backend.interpreter
    if not hasattr(interpreter, "_get_ops_details"):
        return None
    shapes = {int(t["index"]): [int(v) for v in t["shape"]] for t in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():
        if int(detail["index"]) in [int(i) for i in op["outputs"]] and len(op["inputs"]):
            scores = shapes.get(int(op["inputs"][0]), [])
            return scores[-1] if len(scores) == 4 else None
    return None
