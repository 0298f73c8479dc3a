"""The Classifier: a model with one output of class scores, and the best classes it gives a picture or a crop.

It loads through the same path as the Detector (loading.py), so backends,
fallback and refusals are shared; only the postprocess is its own: dequantize
the score vector with the output's quantization and keep the best `top`
classes at or above `threshold`. Preprocessing is Coral's: the picture is
stretched to the input size and fed as raw uint8 pixels (the input's own
quantization maps them to the range the network was trained on).

`crop` cuts a detection's box (with a margin) out of the full picture: the
second stage on detections classifies those crops with the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from edged.detect import backends
from edged.detect.labels import fit_labels, read_labels
from edged.detect.loading import OpenModel, load_model
from edged.detect.settings import ModelSettings
from edged.types import Box, Classification


class ClassifyResult(msgspec.Struct, frozen=True):
    """The best classes for one picture, best first, with the invoke time and the backend."""

    classes: list[Classification]
    inference_ms: float
    backend: str


@dataclass(frozen=True)
class ScoreVector:
    """How to read a classifier's output: its quantization and if column 0 is unlabelled background."""

    scale: float  # 0.0: float scores, used as they are
    zero_point: int
    offset: int  # 1 when the labels file has no line for column 0 (background)


def top_classes(output: np.ndarray, vector: ScoreVector, labels: list[str], *, top: int = 5,
                threshold: float = 0.0) -> list[Classification]:
    """The `top` best classes scoring `threshold` or more, best first (ties: lower class id first)."""
    raw = np.asarray(output).reshape(-1)[vector.offset:]
    scores = raw.astype(np.float32) if vector.scale == 0.0 else \
        (raw.astype(np.float32) - vector.zero_point) * np.float32(vector.scale)
    passed = np.flatnonzero(scores >= threshold)
    best = passed[np.argsort(-scores[passed], kind="stable")[:top]]
    return [Classification(label=labels[i], class_id=int(i), score=float(scores[i])) for i in best.tolist()]


def crop(image: np.ndarray, box: Box, *, margin: float = 0.0) -> np.ndarray:
    """The part of an RGB picture inside a normalized box grown by `margin` (a fraction of the box's width and
    height on each side), clipped to the picture; at least one pixel."""
    height, width = image.shape[:2]
    grow_x, grow_y = (box.xmax - box.xmin) * margin, (box.ymax - box.ymin) * margin
    x0 = min(width - 1, max(0, int(np.floor((box.xmin - grow_x) * width))))
    y0 = min(height - 1, max(0, int(np.floor((box.ymin - grow_y) * height))))
    x1 = max(x0 + 1, min(width, int(np.ceil((box.xmax + grow_x) * width))))
    y1 = max(y0 + 1, min(height, int(np.ceil((box.ymax + grow_y) * height))))
    return image[y0:y1, x0:x1]


class Classifier(OpenModel):
    """A classifier loaded on one backend, with its labels and score layout."""

    def __init__(self, backend: backends.Backend, labels: list[str], vector: ScoreVector, *, model_name: str,
                 fallback_reason: str | None = None, resize: Literal["stretch", "letterbox"] = "stretch"):
        super().__init__(backend, model_name=model_name, fallback_reason=fallback_reason, resize=resize)
        self.labels = labels
        self.vector = vector

    @classmethod
    def open(cls, settings: ModelSettings, *, backend: str | None = None,
             models_dir: Path | None = None) -> Classifier:
        """Load a classifier (manifest kind `classifier`, or a file with one output of class scores)."""
        loaded = load_model(settings, "classifier", backend=backend, models_dir=models_dir)
        try:
            detail = loaded.backend.output_details[0]
            columns = int(detail["shape"][-1])
            labels, offset = fit_labels(read_labels(loaded.resolved.labels), columns, loaded.resolved.labels,
                                        loaded.backend.model_path.name)
            scale, zero_point = detail.get("quantization", (0.0, 0))
            vector = ScoreVector(float(scale), int(zero_point), offset)
        except Exception:
            loaded.backend.close()
            raise
        return cls(loaded.backend, labels, vector, model_name=loaded.resolved.name,
                   fallback_reason=loaded.fallback_reason, resize=settings.resize)

    def postprocess(self, outputs: list[np.ndarray], *, top: int = 5, threshold: float = 0.0
                    ) -> list[Classification]:
        """Raw outputs → the best classes, best first."""
        return top_classes(outputs[0], self.vector, self.labels, top=top, threshold=threshold)

    def classify(self, image: np.ndarray, *, top: int = 5, threshold: float = 0.0) -> ClassifyResult:
        """A whole picture (or a `crop` of one) → its best classes."""
        tensor, _ = self.prepare(image)
        outputs, inference_ms = self.timed_invoke(tensor)
        return ClassifyResult(self.postprocess(outputs, top=top, threshold=threshold), inference_ms,
                              self.backend_name)
