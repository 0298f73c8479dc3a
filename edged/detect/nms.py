"""Greedy non-maximum suppression, vectorized with numpy.

Greedy NMS is sequential by nature (a box can only suppress others if it survived
itself), so the loop runs once per *kept* box and does all the IoU work for that
box in one numpy expression. Because callers need at most `max_output` boxes the
loop stops there: a few iterations even with thousands of candidates.

Per-class NMS masks the suppression with "same class" instead of the usual
coordinate-offset trick: offsets add a large constant to every coordinate and the
lost float precision can flip an IoU that sits exactly on the threshold.
Suppression is `IoU > threshold`, like TFLite's own post-process op.
"""

from __future__ import annotations

import numpy as np


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes` ([N, 4] as (y0, x0, y1, x1) or (x0, y0, x1, y1), consistently).

    Inverted boxes count as empty; an empty union gives IoU 0.
    """
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    extent = np.clip(hi - lo, 0.0, None)
    intersection = extent[:, 0] * extent[:, 1]
    area = _areas(box[np.newaxis])[0]
    union = area + _areas(boxes) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, classes: np.ndarray | None = None,
        max_output: int | None = None) -> np.ndarray:
    """Indices of the boxes that survive, best score first.

    `classes` given: a box only suppresses boxes of its own class (per-class NMS);
    None: any overlapping box (class-agnostic). Equal scores keep input order.
    """
    count = len(scores)
    limit = count if max_output is None else min(max_output, count)
    if count == 0 or limit <= 0:
        return np.zeros(0, dtype=np.intp)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    boxes = np.asarray(boxes, dtype=np.float64)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        suppressed = iou_one_to_many(boxes[best], boxes[rest]) > iou_threshold
        if classes is not None:
            suppressed &= classes[rest] == classes[best]
        order = rest[~suppressed]
    return np.asarray(keep, dtype=np.intp)
