"""From raw model outputs to Detections: SSD post-process-op outputs, or raw SSD encodings + anchors.

Outputs are identified by what they are, not by position: for models that end in
`TFLite_Detection_PostProcess` the op's own output order (boxes, classes, scores,
count) is read from the interpreter's op list, so TF1, TF2 and EfficientDet
exports that list graph outputs in different orders all decode the same way.
Raw SSD models (box encodings [1, N, 4] + class scores [1, N, C]) are decoded
against their anchors (see research/ops.md and models/PROVENANCE.md for the
formula) and pass through our NMS. Both paths then share one filter chain:
score threshold, label allow/deny, minimum area, NMS, max detections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edged.detect.nms import nms
from edged.types import Box, Detection, Geometry

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


class LayoutError(ValueError):
    """The model's outputs are not an SSD layout this module understands."""


@dataclass(frozen=True)
class OpLayout:
    """Output positions of a model ending in the SSD post-process op; `classes_in_model` from its scores input."""

    boxes: int
    classes: int
    scores: int
    count: int
    classes_in_model: int | None


@dataclass(frozen=True)
class RawLayout:
    """A raw SSD head: encodings (ty, tx, th, tw) per anchor and per-class scores (column 0 may be background)."""

    encodings: int
    scores: int
    anchors_count: int
    score_columns: int
    encodings_quant: tuple[float, int]
    scores_quant: tuple[float, int]


@dataclass(frozen=True)
class Decoding:
    """How a raw SSD head is decoded: anchors [N, 4] (yc, xc, h, w) and the box coder's scales."""

    anchors: np.ndarray
    scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
    nms_iou: float = 0.6
    num_classes: int | None = None  # None: all score columns but a background column 0


def find_layout(outputs: list[dict[str, Any]], ops: list[dict[str, Any]] | None = None,
                tensor_shapes: dict[int, tuple[int, ...]] | None = None) -> OpLayout | RawLayout:
    """Identify the output layout from output details, plus the op list and tensor shapes when available.

    `ops` is the runtime's `_get_ops_details()`; `tensor_shapes` maps tensor
    index → shape so the post-process op's class-score input tells how many
    classes the model has (for checking the label file).
    """
    index_of = {int(detail["index"]): position for position, detail in enumerate(outputs)}
    for op in ops or []:
        if op.get("op_name") == POSTPROCESS_OP and all(int(i) in index_of for i in op["outputs"][:4]):
            boxes, classes, scores, count = (index_of[int(i)] for i in op["outputs"][:4])
            scores_shape = (tensor_shapes or {}).get(int(op["inputs"][1])) if len(op["inputs"]) > 1 else None
            columns = int(scores_shape[-1]) if scores_shape else None
            return OpLayout(boxes, classes, scores, count, columns)
    shapes = [tuple(int(v) for v in detail["shape"]) for detail in outputs]
    if len(outputs) == 4:
        return _op_layout_by_shape(outputs, shapes)
    if len(outputs) == 2:
        return _raw_layout(outputs, shapes)
    raise LayoutError(f"{len(outputs)} outputs with shapes {shapes}; an SSD detector has 4 (post-process op: "
                      "boxes, classes, scores, count) or 2 (raw box encodings and class scores)")


def _op_layout_by_shape(outputs: list[dict[str, Any]], shapes: list[tuple[int, ...]]) -> OpLayout:
    """Fallback without an op list: boxes are [1,N,4], count has one element, classes are named ':1'."""
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[-1] == 4]
    count = [i for i, s in enumerate(shapes) if int(np.prod(s)) == 1]
    pairs = [i for i, s in enumerate(shapes) if len(s) == 2]
    if len(boxes) != 1 or len(count) != 1 or len(pairs) != 2:
        raise LayoutError(f"outputs with shapes {shapes} are not an SSD post-process layout "
                          "(boxes [1,N,4], classes [1,N], scores [1,N], count [1])")
    named = [i for i in pairs if str(outputs[i]["name"]).endswith(":1")]
    classes = named[0] if named else pairs[0]
    scores = pairs[1] if classes == pairs[0] else pairs[0]
    return OpLayout(boxes[0], classes, scores, count[0], None)


def _raw_layout(outputs: list[dict[str, Any]], shapes: list[tuple[int, ...]]) -> RawLayout:
    if not all(len(s) == 3 and s[0] == 1 for s in shapes) or shapes[0][1] != shapes[1][1]:
        raise LayoutError(f"outputs with shapes {shapes} are not a raw SSD layout "
                          "(box encodings [1,N,4] and class scores [1,N,C] for the same N anchors)")
    boxes = [i for i, s in enumerate(shapes) if s[-1] == 4]
    if len(boxes) == 2:  # C == 4 as well: names tell them apart
        boxes = [i for i in boxes if "score" not in str(outputs[i]["name"]).lower()][:1]
    if len(boxes) != 1:
        raise LayoutError(f"cannot tell box encodings from class scores in outputs with shapes {shapes}")
    enc, scr = boxes[0], 1 - boxes[0]
    return RawLayout(enc, scr, shapes[enc][1], shapes[scr][2],
                     _quant(outputs[enc]), _quant(outputs[scr]))


def _quant(detail: dict[str, Any]) -> tuple[float, int]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


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
        found = self._from_op(outputs) if isinstance(self.layout, OpLayout) else self._from_raw(outputs)
        return self._filter(found, geometry)

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
        if f.min_area > 0:
            scale = geometry.content_width * geometry.content_height
            ok &= np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0) \
                >= f.min_area * scale
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
