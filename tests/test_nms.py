"""The vectorized NMS keeps exactly the boxes a plain, obviously-correct greedy NMS keeps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.detect.nms import nms


def reference_iou(a: list[float], b: list[float]) -> float:
    """IoU of two (y0, x0, y1, x1) boxes; inverted boxes are empty, an empty union gives 0."""
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_h * inter_w
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - intersection
    return intersection / union if union > 0 else 0.0


def reference_nms(boxes, scores, threshold, classes=None, max_output=None) -> list[int]:
    """Textbook greedy NMS: best first; drop every later box that overlaps a kept one too much."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable: ties keep input order
    kept: list[int] = []
    for i in order:
        if max_output is not None and len(kept) >= max_output:
            break
        if all(reference_iou(boxes[i], boxes[k]) <= threshold or (classes is not None and classes[i] != classes[k])
               for k in kept):
            kept.append(i)
    return kept


coordinate = st.floats(min_value=-0.25, max_value=1.25, allow_nan=False, width=32)
grid_coordinate = st.integers(min_value=0, max_value=6).map(lambda v: v / 4)  # exact ties and touching edges
box = st.tuples(st.one_of(coordinate, grid_coordinate), st.one_of(coordinate, grid_coordinate),
                st.one_of(coordinate, grid_coordinate), st.one_of(coordinate, grid_coordinate)).map(
    lambda c: [min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3])])
score = st.one_of(st.integers(min_value=0, max_value=255).map(lambda q: q / 256),  # quantized, many ties
                  st.floats(min_value=0, max_value=1, allow_nan=False))


@st.composite
def detections(draw):
    count = draw(st.integers(min_value=0, max_value=30))
    boxes = draw(st.lists(box, min_size=count, max_size=count))
    scores = draw(st.lists(score, min_size=count, max_size=count))
    classes = draw(st.lists(st.integers(min_value=0, max_value=3), min_size=count, max_size=count))
    return boxes, scores, classes


thresholds = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.6, 1.0]), st.floats(min_value=0, max_value=1))


max_outputs = st.one_of(st.none(), st.integers(min_value=0, max_value=20))
chunk_sizes = st.sampled_from([1, 3, 7, 256])  # small chunks exercise suppression across chunk boundaries


@settings(max_examples=150, deadline=None)
@given(detections(), thresholds, max_outputs, chunk_sizes)
def test_class_agnostic_matches_reference(data, threshold, max_output, chunk_size):
    boxes, scores, _ = data
    kept = nms(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores), threshold, max_output=max_output,
               chunk_size=chunk_size)
    assert kept.tolist() == reference_nms(boxes, scores, threshold, max_output=max_output)


@settings(max_examples=150, deadline=None)
@given(detections(), thresholds, max_outputs, chunk_sizes)
def test_per_class_matches_reference(data, threshold, max_output, chunk_size):
    boxes, scores, classes = data
    kept = nms(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores), threshold,
               classes=np.array(classes), max_output=max_output, chunk_size=chunk_size)
    assert kept.tolist() == reference_nms(boxes, scores, threshold, classes=classes, max_output=max_output)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=255), min_size=1, max_size=40), thresholds)
def test_a_precomputed_radix_order_of_quantized_scores_gives_the_same_result(quantized, threshold):
    """The raw path ranks by uint8 score (numpy's stable radix sort) instead of sorting floats."""
    rng = np.random.default_rng(len(quantized))
    corners = rng.uniform(0, 1, (len(quantized), 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    q = np.array(quantized, dtype=np.uint8)
    rank = (255 - q.astype(np.int16)).astype(np.uint16)
    scores = q / 256
    with_rank = nms(boxes, scores, threshold, order=np.argsort(rank, kind="stable"))
    assert with_rank.tolist() == reference_nms(boxes.tolist(), scores.tolist(), threshold)


@settings(max_examples=60, deadline=None)
@given(detections(), thresholds)
def test_survivors_never_overlap_beyond_the_threshold(data, threshold):
    boxes, scores, classes = data
    kept = nms(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores), threshold,
               classes=np.array(classes)).tolist()
    for a in kept:
        for b in kept:
            if a != b and classes[a] == classes[b]:
                assert reference_iou(boxes[a], boxes[b]) <= threshold


def test_known_case_per_class_keeps_overlapping_boxes_of_other_labels():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 0.9], [0, 0, 1, 0.95], [2, 2, 3, 3]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([1, 1, 2, 1])
    assert nms(boxes, scores, 0.5, classes=classes).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert nms(boxes, scores, 0.5, max_output=1).tolist() == [0]
