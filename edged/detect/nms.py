"""Greedy non-maximum suppression, vectorized with numpy.

Greedy NMS is sequential by nature (a box can only suppress others if it
survived itself), so the work is organised around the few boxes that are *kept*:
candidates are taken best-first in chunks; each chunk is first thinned by every
box kept so far (one vectorized IoU per kept box), then resolved greedily inside
itself. Callers need at most `max_output` boxes, so usually one chunk and a
handful of numpy calls settle it, even with tens of thousands of candidates.
The result is exactly textbook greedy NMS (the property tests compare against a
plain implementation).

Per-class NMS masks suppression with "same class" instead of the usual
coordinate-offset trick: offsets add a large constant to every coordinate and the
lost float precision can flip an IoU that sits exactly on the threshold.
Suppression is `IoU > threshold`, like TFLite's own post-process op.
"""

from __future__ import annotations

import numpy as np


def areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of (y0, x0, y1, x1) boxes (or (x0, y0, x1, y1): the formula is symmetric); inverted = empty."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def iou_one_to_many(box: np.ndarray, box_area: float, boxes: np.ndarray, boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes`; an empty union gives 0."""
    height = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    width = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    intersection = np.maximum(height, 0.0) * np.maximum(width, 0.0)
    union = box_area + boxes_area - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, classes: np.ndarray | None = None,
        max_output: int | None = None, order: np.ndarray | None = None, chunk_size: int = 256) -> np.ndarray:
    """Indices of the boxes that survive, best score first.

    `classes` given: a box only suppresses boxes of its own class (per-class NMS);
    None: any overlapping box (class-agnostic). Equal scores keep input order.
    `order` may pass a precomputed best-first order (e.g. a radix sort of
    quantized scores); `chunk_size` only trades memory for numpy calls.
    """
    count = len(scores)
    limit = count if max_output is None else min(max_output, count)
    if count == 0 or limit <= 0:
        return np.zeros(0, dtype=np.intp)
    if order is None:
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    boxes = np.asarray(boxes, dtype=np.float64)
    box_areas = areas(boxes)
    keep: list[int] = []
    for start in range(0, count, chunk_size):
        chunk = order[start:start + chunk_size]
        for kept in keep:  # everything kept so far, from earlier chunks
            chunk = chunk[~_suppressed(kept, chunk, boxes, box_areas, classes, iou_threshold)]
        while chunk.size and len(keep) < limit:
            best, chunk = int(chunk[0]), chunk[1:]
            keep.append(best)
            if chunk.size:
                chunk = chunk[~_suppressed(best, chunk, boxes, box_areas, classes, iou_threshold)]
        if len(keep) >= limit:
            break
    return np.asarray(keep, dtype=np.intp)


def _suppressed(best: int, others: np.ndarray, boxes: np.ndarray, box_areas: np.ndarray,
                classes: np.ndarray | None, iou_threshold: float) -> np.ndarray:
    hit = iou_one_to_many(boxes[best], box_areas[best], boxes[others], box_areas[others]) > iou_threshold
    if classes is not None:
        hit &= classes[others] == classes[best]
    return hit
