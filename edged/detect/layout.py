"""Which output of an SSD detector is which: by the post-process op's own order, else by shapes and values.

For models that end in `TFLite_Detection_PostProcess` the op's output order
(boxes, classes, scores, count) is read from the interpreter's op list, so TF1,
TF2 and EfficientDet exports that list graph outputs in different orders all
decode the same way. Without an op list, boxes and count are told by shape and
classes from scores by value (settle_classes) — never by tensor names, which
mean opposite things in TF1 and TF2 exports. Raw SSD heads (box encodings
[1, N, 4] + class scores [1, N, C]) are told apart by shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


class LayoutError(ValueError):
    """The model's outputs are not an SSD layout this module understands."""


@dataclass(frozen=True)
class OpLayout:
    """Output positions of a model ending in the SSD post-process op; `classes_in_model` from its scores input.

    `classes_known` is False when only shapes were available: the two [1, N]
    outputs are then told apart by their values (settle_classes).
    """

    boxes: int
    classes: int
    scores: int
    count: int
    classes_in_model: int | None
    classes_known: bool = True


@dataclass(frozen=True)
class RawLayout:
    """A raw SSD head: encodings (ty, tx, th, tw) per anchor and per-class scores (column 0 may be background)."""

    encodings: int
    scores: int
    anchors_count: int
    score_columns: int
    encodings_quant: tuple[float, int]
    scores_quant: tuple[float, int]


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
    """Fallback without an op list: boxes are [1,N,4] and count has one element, by shape.

    Classes and scores have the same shape, and names do not tell them apart
    (TF1 exports call the classes `…:1`, TF2 exports call the scores
    `StatefulPartitionedCall:1`), so which is which stays open until values
    decide (settle_classes).
    """
    boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[-1] == 4]
    count = [i for i, s in enumerate(shapes) if int(np.prod(s)) == 1]
    pairs = [i for i, s in enumerate(shapes) if len(s) == 2]
    if len(boxes) != 1 or len(count) != 1 or len(pairs) != 2:
        raise LayoutError(f"outputs with shapes {shapes} are not an SSD post-process layout "
                          "(boxes [1,N,4], classes [1,N], scores [1,N], count [1])")
    return OpLayout(boxes[0], pairs[0], pairs[1], count[0], None, classes_known=False)


def settle_classes(layout: OpLayout, outputs: list[np.ndarray], label_count: int) -> OpLayout | None:
    """The layout with classes and scores told apart by these outputs' values; None when they cannot tell.

    Class ids are whole numbers in [0, label_count); scores lie in [0, 1]. When
    exactly one assignment of the two outputs fits, it is the answer; when both
    fit (no boxes, or only ids 0/1 with scores of exactly 0 or 1) these values
    cannot decide. Neither fitting is not an SSD post-process layout at all.
    """
    first, second = (np.asarray(outputs[i], dtype=np.float64).reshape(-1)
                     for i in (layout.classes, layout.scores))
    count = min(int(np.asarray(outputs[layout.count]).reshape(-1)[0]), first.size)
    first, second = first[:max(count, 0)], second[:max(count, 0)]
    as_listed = _class_ids(first, label_count) and _scores(second)
    swapped = _class_ids(second, label_count) and _scores(first)
    if as_listed and swapped:
        return None
    if as_listed:
        return replace(layout, classes_known=True)
    if swapped:
        return replace(layout, classes=layout.scores, scores=layout.classes, classes_known=True)
    raise LayoutError(f"neither of the two [1, N] outputs holds class ids (whole numbers below "
                      f"{label_count}) beside scores in [0, 1]")


def _class_ids(values: np.ndarray, label_count: int) -> bool:
    return bool(np.all((values == np.round(values)) & (values >= 0) & (values < label_count)))


def _scores(values: np.ndarray) -> bool:
    return bool(np.all((values >= 0.0) & (values <= 1.0)))


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


