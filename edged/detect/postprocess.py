"""From raw model outputs to Detections: SSD post-process-op outputs, or raw SSD encodings + anchors.

Which output is which is layout.py's job (by what they are, never by position
or name). Raw SSD models (box encodings [1, N, 4] + class scores [1, N, C]) are decoded
against their anchors (see research/ops.md and models/PROVENANCE.md for the
formula) and pass through our NMS. Both paths then share one filter chain:
score threshold, label allow/deny, minimum area, NMS, max detections; boxes
come out clipped to the picture (0..1), after NMS so that NMS sees what the
model's own op sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edged.detect.layout import LayoutError, OpLayout, RawLayout, settle_classes
from edged.detect.nms import areas, nms
from edged.types import Box, Detection, Geometry


@dataclass(frozen=True)
class Decoding:
    """How a raw SSD head is decoded: anchors [N, 4] (yc, xc, h, w) and the box coder's scales."""

    anchors: np.ndarray
    scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
    nms_iou: float = 0.6
    num_classes: int | None = None  # None: all score columns but a background column 0


def _dequantize(values: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
    scale, zero_point = quant
    if scale == 0.0:  # float tensor
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float32) - zero_point) * np.float32(scale)


@dataclass
class Filters:
    """The user-facing filter chain, resolved against the label list once."""

    threshold: float = 0.5
    nms_iou: float | None = None
    class_agnostic: bool = False
    allowed: np.ndarray | None = None  # bool per class id; None: all allowed
    min_area: float = 0.0
    max_detections: int = 20


@dataclass
class Candidates:
    """Boxes (y0, x0, y1, x1, tensor frame) that passed the score threshold, before the filter chain.

    `rank` orders them best-first when given (the raw path ranks by quantized
    score, which numpy sorts with a stable radix sort); None: sort by score.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    nms_iou: float | None
    rank: np.ndarray | None = None


@dataclass
class Postprocessor:
    """Callable: (raw outputs, Geometry) → detections in the source image's normalized frame."""

    layout: OpLayout | RawLayout
    labels: list[str]
    filters: Filters
    decoding: Decoding | None = None
    _score_levels: np.ndarray | None = field(default=None, init=False, repr=False)

    def __call__(self, outputs: list[np.ndarray], geometry: Geometry) -> list[Detection]:
        if isinstance(self.layout, OpLayout) and not self.layout.classes_known:
            self._settle(outputs)
        found = self._from_op(outputs) if isinstance(self.layout, OpLayout) else self._from_raw(outputs)
        return self._filter(found, geometry)

    def _settle(self, outputs: list[np.ndarray]) -> None:
        """Keep trying to tell classes from scores by value until a frame decides (then it stays decided)."""
        try:
            settled = settle_classes(self.layout, outputs, len(self.labels))
        except LayoutError:
            settled = None
        if settled is not None:
            self.layout = settled

    def _from_op(self, outputs: list[np.ndarray]) -> Candidates:
        lay = self.layout
        count = int(np.asarray(outputs[lay.count]).reshape(-1)[0])
        scores = np.asarray(outputs[lay.scores], dtype=np.float32).reshape(-1)[:count]
        classes = np.asarray(outputs[lay.classes]).reshape(-1)[:count].astype(np.int64)
        boxes = np.asarray(outputs[lay.boxes], dtype=np.float32).reshape(-1, 4)[:count]
        keep = scores >= self.filters.threshold
        return Candidates(boxes[keep], scores[keep], classes[keep], self.filters.nms_iou)

    def _from_raw(self, outputs: list[np.ndarray]) -> Candidates:
        """Threshold the whole score matrix in its own units, then decode only the anchors that passed."""
        lay, dec = self.layout, self.decoding
        offset = lay.score_columns - (dec.num_classes or lay.score_columns - 1)
        matrix = np.asarray(outputs[lay.scores]).reshape(lay.anchors_count, lay.score_columns)
        passed = matrix >= self._raw_threshold(matrix.dtype)
        passed[:, :offset] = False  # background column(s)
        flat = np.flatnonzero(passed)
        anchor, column = np.divmod(flat, lay.score_columns)
        if self.filters.class_agnostic:  # a box can only survive with its best class: keep that one per anchor
            anchor = np.unique(anchor)
            column = offset + matrix[anchor, offset:].argmax(axis=1)
        quantized = matrix[anchor, column]
        unique = np.flatnonzero(np.diff(anchor, prepend=-1))  # anchor is sorted: decode each anchor once
        encodings = _dequantize(np.asarray(outputs[lay.encodings]).reshape(-1, 4)[anchor[unique]],
                                lay.encodings_quant)
        decoded = decode_boxes(encodings, dec.anchors[anchor[unique]], dec.scales)
        boxes = decoded[np.cumsum(np.diff(anchor, prepend=-1) != 0) - 1] if len(unique) != len(anchor) else decoded
        rank = None
        if np.issubdtype(quantized.dtype, np.integer):
            rank = (np.iinfo(quantized.dtype).max - quantized.astype(np.int16)).astype(np.uint16)
        iou = self.filters.nms_iou if self.filters.nms_iou is not None else dec.nms_iou
        return Candidates(boxes, _dequantize(quantized, lay.scores_quant), (column - offset).astype(np.int64),
                          iou, rank)

    def _raw_threshold(self, dtype: np.dtype) -> float:
        """The threshold in the scores' own units, so the 1917 x 91 matrix is compared without dequantizing."""
        scale, zero_point = self.layout.scores_quant
        if scale == 0.0:
            return self.filters.threshold
        if self._score_levels is None:
            info = np.iinfo(dtype)
            self._score_levels = (np.arange(info.min, info.max + 1, dtype=np.float32) - zero_point) \
                * np.float32(scale)
        position = int(np.searchsorted(self._score_levels, np.float32(self.filters.threshold)))
        return np.iinfo(dtype).min + position

    def _filter(self, found: Candidates, geometry: Geometry) -> list[Detection]:
        f = self.filters
        boxes, scores, classes, rank = found.boxes, found.scores, found.classes, found.rank
        ok = (classes >= 0) & (classes < len(self.labels))
        if f.allowed is not None:
            ok[ok] = f.allowed[classes[ok]]
        if f.min_area > 0:  # the area inside the picture: an overshoot is not part of the object
            frame = np.array([geometry.content_height, geometry.content_width] * 2, dtype=np.float32)
            visible = areas(np.clip(boxes, 0.0, frame))
            ok &= visible >= f.min_area * geometry.content_width * geometry.content_height
        if not ok.all():
            boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
            rank = rank[ok] if rank is not None else None
        order = np.argsort(rank if rank is not None else -scores, kind="stable")
        if found.nms_iou is not None:
            keep = nms(boxes, scores, found.nms_iou, classes=None if f.class_agnostic else classes,
                       max_output=f.max_detections, order=order)
        else:
            keep = order[: f.max_detections]
        kept_boxes = boxes[keep][:, [1, 0, 3, 2]].astype(np.float64)
        if (geometry.content_width, geometry.content_height) != (1.0, 1.0):
            kept_boxes /= np.array([geometry.content_width, geometry.content_height] * 2)
        np.clip(kept_boxes, 0.0, 1.0, out=kept_boxes)  # models overshoot the frame; every output stays in it
        return [Detection(label=self.labels[c], class_id=c, score=float(s),
                          box=Box(*(round(v, 5) for v in b)))
                for c, s, b in zip(classes[keep].tolist(), scores[keep].tolist(), kept_boxes.tolist())]


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray, scales: tuple[float, float, float, float]
                 ) -> np.ndarray:
    """SSD box coder: (ty, tx, th, tw) relative to anchors (yc, xc, h, w) → (ymin, xmin, ymax, xmax)."""
    y_scale, x_scale, h_scale, w_scale = scales
    yc = encodings[:, 0] / y_scale * anchors[:, 2] + anchors[:, 0]
    xc = encodings[:, 1] / x_scale * anchors[:, 3] + anchors[:, 1]
    half_h = 0.5 * np.exp(encodings[:, 2] / h_scale) * anchors[:, 2]
    half_w = 0.5 * np.exp(encodings[:, 3] / w_scale) * anchors[:, 3]
    return np.stack([yc - half_h, xc - half_w, yc + half_h, xc + half_w], axis=1).astype(np.float32)
