"""The raw (no-NMS) model through our decode + NMS finds what the model's own post-process op finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.detect.detector import Detector
from edged.detect.postprocess import OpLayout, RawLayout, decode_boxes
from edged.detect.settings import DetectorSettings

IMAGES = ["grace_hopper.bmp", "cat.bmp", "pets.jpg", "owl.jpg", "squat.bmp"]


@pytest.fixture(scope="module")
def photos(fetched_data_dir: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(Image.open(fetched_data_dir / "samples" / name).convert("RGB")) for name in IMAGES}


def run(settings: DetectorSettings, photos: dict[str, np.ndarray]):
    with Detector.open(settings, backend="cpu") as detector:
        return detector, {name: detector.detect(image).detections for name, image in photos.items()}


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_raw_model_with_class_agnostic_nms_reproduces_the_postprocess_op(photos, threshold):
    """The op does class-agnostic NMS at IoU 0.6: the same settings on the raw head give the same list."""
    op_detector, op = run(DetectorSettings(threshold=threshold, max_detections=10), photos)
    raw_detector, raw = run(DetectorSettings(threshold=threshold, max_detections=10, cpu_variant="raw",
                                             class_agnostic=True), photos)
    assert isinstance(op_detector.postprocessor.layout, OpLayout)
    assert isinstance(raw_detector.postprocessor.layout, RawLayout)
    for name in IMAGES:
        assert [d.label for d in raw[name]] == [d.label for d in op[name]], name
        for ours, theirs in zip(raw[name], op[name]):
            assert ours.score == pytest.approx(theirs.score, abs=1e-6)
            assert ours.box.iou(theirs.box) >= 0.9


def test_raw_model_with_per_class_nms_keeps_everything_the_op_found(photos):
    _, op = run(DetectorSettings(threshold=0.4), photos)
    _, raw = run(DetectorSettings(threshold=0.4, cpu_variant="raw"), photos)
    for name in IMAGES:
        for theirs in op[name]:
            assert any(d.label == theirs.label and d.box.iou(theirs.box) >= 0.9 for d in raw[name]), (name, theirs)


def same_label_overlaps(detections) -> list[float]:
    return [a.box.iou(b.box) for i, a in enumerate(detections) for b in detections[i + 1:] if a.label == b.label]


def test_stricter_nms_iou_applies_to_both_paths(photos):
    """nms_iou is a real knob: at 0.3 same-label boxes on grace_hopper that overlap more than that collapse.

    Which boxes the model gives depends on the resize (OpenCV or Pillow), so the test states the property,
    not a list: loose NMS leaves a pair overlapping by 0.3-0.6, strict leaves none above 0.3."""
    image = {"grace_hopper.bmp": photos["grace_hopper.bmp"]}
    for variant in ("cpu", "raw"):
        _, loose = run(DetectorSettings(threshold=0.3, cpu_variant=variant), image)
        _, strict = run(DetectorSettings(threshold=0.3, cpu_variant=variant, nms_iou=0.3), image)
        loose, strict = loose["grace_hopper.bmp"], strict["grace_hopper.bmp"]
        assert any(0.3 < iou <= 0.6 + 1e-6 for iou in same_label_overlaps(loose)), (variant, loose)
        assert all(iou <= 0.3 + 1e-6 for iou in same_label_overlaps(strict)), (variant, strict)
        assert len(strict) < len(loose) and loose[0] == strict[0], variant  # the best one stays


def test_label_filters_and_min_area(photos):
    image = {"grace_hopper.bmp": photos["grace_hopper.bmp"]}
    _, found = run(DetectorSettings(threshold=0.5), image)
    found = found["grace_hopper.bmp"]
    labels = {d.label for d in found}
    assert {"person", "tie"} <= labels  # the premise
    _, only_ties = run(DetectorSettings(threshold=0.5, allow_labels=["tie"]), image)
    assert {d.label for d in only_ties["grace_hopper.bmp"]} == {"tie"}
    _, no_ties = run(DetectorSettings(threshold=0.5, deny_labels=["tie"]), image)
    assert {d.label for d in no_ties["grace_hopper.bmp"]} == labels - {"tie"}
    big_enough = [d for d in found if d.box.area >= 0.1]  # boxes are clipped to the picture already
    assert 0 < len(big_enough) < len(found)
    _, big = run(DetectorSettings(threshold=0.5, min_area=0.1), image)
    assert big["grace_hopper.bmp"] == big_enough
    _, one = run(DetectorSettings(threshold=0.3, cpu_variant="raw", max_detections=1), image)
    assert len(one["grace_hopper.bmp"]) == 1


def test_letterbox_maps_boxes_back_to_the_source_image(photos):
    _, stretched = run(DetectorSettings(), {"owl.jpg": photos["owl.jpg"]})
    _, boxed = run(DetectorSettings(resize="letterbox"), {"owl.jpg": photos["owl.jpg"]})
    top_stretched, top_boxed = stretched["owl.jpg"][0], boxed["owl.jpg"][0]
    assert top_boxed.label == top_stretched.label == "bird"
    assert top_boxed.box.iou(top_stretched.box) >= 0.8  # in the photo's frame, not the padded tensor's


def test_zero_encodings_decode_to_the_anchor_itself():
    anchors = np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.1, 0.1]], dtype=np.float32)
    boxes = decode_boxes(np.zeros((2, 4), dtype=np.float32), anchors, (10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(boxes, [[0.4, 0.3, 0.6, 0.7], [0.05, 0.85, 0.15, 0.95]], atol=1e-6)
    shifted = decode_boxes(np.array([[10.0, 0.0, 5.0, 0.0]], dtype=np.float32), anchors[:1], (10.0, 10.0, 5.0, 5.0))
    # ty = 10 moves the centre by one anchor height; th = 5 scales the height by e
    np.testing.assert_allclose(shifted, [[0.7 - 0.1 * np.e, 0.3, 0.7 + 0.1 * np.e, 0.7]], atol=1e-6)
