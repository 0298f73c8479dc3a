"""The second stage on real models: the detector finds the parrot, the bird classifier names it from the
crop of the detector's own input tensor, and the per-camera stage decides when to ask again.

parrot.jpg: the COCO SSD finds one `bird` at 0.81 (85, 103)-(476, 858) of 512×929; the iNat bird classifier
gives that crop of the 300×300 input "Ara macao (Scarlet Macaw)" 0.73 (input made by OpenCV's area resize;
0.81 with Pillow's bilinear, 0.84 from the full picture, 0.695 for the whole uncropped picture as in the zoo
README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.classify.crops import classify_crops, pixels_of
from edged.classify.plan import CropPlan, CropRequest, choose
from edged.classify.settings import ClassifySettings
from edged.classify.stage import SecondStage
from edged.detect.classifier import Classifier
from edged.detect.detector import Detector
from edged.detect.preprocess import quantize
from edged.detect.settings import DetectorSettings, ModelSettings
from edged.track.events import CameraTracker
from edged.track.settings import TrackingSettings
from edged.types import Box, Detection, Subclass

BIRDS = "mobilenet_v2_1.0_224_inat_bird_quant"
MACAW = "Ara macao (Scarlet Macaw)"


@pytest.fixture(scope="module")
def parrot_run(zoo_data_dir: Path, zoo_images: Path):
    """The parrot as the worker has it: the detector's input tensor, its detections, and the classifier."""
    image = np.asarray(Image.open(zoo_images / "parrot.jpg").convert("RGB"))
    with Detector.open(DetectorSettings(backend="cpu")) as detector:
        tensor, geometry = detector.prepare(image)
        detections = detector.postprocess(detector.invoke(tensor), geometry)
    classifier = Classifier.open(ModelSettings(model=BIRDS, backend="cpu"))
    yield image, tensor, geometry, detections, {BIRDS: classifier}
    classifier.close()


def request(**changes) -> CropRequest:
    return CropRequest(**{"model": BIRDS, "label": "bird", "margin": 0.1, "min_pixels": 32, "max_crops": 2,
                          **changes})


def test_the_parrot_is_a_bird_and_its_crop_names_the_species(parrot_run):
    image, tensor, geometry, detections, classifiers = parrot_run
    assert [d.label for d in detections] == ["bird"]
    height, width = image.shape[:2]
    named = classify_crops(CropPlan(width, height, (request(),)), detections, tensor, geometry, classifiers)
    assert named[0].subclass is not None and named[0].subclass.label == MACAW
    assert 0.6 < named[0].subclass.score < 0.9
    assert named[0].label == "bird" and named[0].box == detections[0].box  # only the subclass is added


def test_a_box_smaller_than_the_minimum_crop_is_not_classified(parrot_run):
    image, tensor, geometry, detections, classifiers = parrot_run
    height, width = image.shape[:2]
    box = detections[0].box
    narrowest = min((box.xmax - box.xmin) * width, (box.ymax - box.ymin) * height)  # 391 pixels
    plan = CropPlan(width, height, (request(min_pixels=int(narrowest) + 1),))
    assert classify_crops(plan, detections, tensor, geometry, classifiers) == detections
    plan = CropPlan(width, height, (request(label="cat"),))  # another label: not classified either
    assert classify_crops(plan, detections, tensor, geometry, classifiers)[0].subclass is None


def test_crops_from_a_letterboxed_float_input_see_the_same_picture(parrot_run):
    image, tensor, _, detections, classifiers = parrot_run
    from edged.detect.preprocess import InputSpec, prepare

    spec = InputSpec(300, 300, np.dtype(np.float32), 0.0, 0)
    boxed, geometry = prepare(image, spec, "letterbox")  # the picture in the top-left 165×300, float [-1, 1]
    assert geometry.content_width < 0.6
    assert np.abs(pixels_of(quantize(np.arange(256, dtype=np.uint8), spec)).astype(int)
                  - np.arange(256)).max() <= 1
    height, width = image.shape[:2]
    named = classify_crops(CropPlan(width, height, (request(),)), detections, boxed, geometry, classifiers)
    assert named[0].subclass is not None and named[0].subclass.label == MACAW


def bird(x: float, score: float = 0.8, subclass: Subclass | None = None) -> Detection:
    return Detection("bird", 15, score, Box(x, 0.2, x + 0.3, 0.8), subclass)


def test_choose_takes_the_best_k_of_the_label_and_skips_recently_classified_places():
    detections = [bird(0.0, 0.6), Detection("cat", 16, 0.9, Box(0.5, 0.2, 0.8, 0.8)), bird(0.6, 0.9),
                  bird(0.3, 0.7)]
    assert choose(request(max_crops=2), detections, 640, 480) == [2, 3]
    assert choose(request(max_crops=2, skip=(Box(0.61, 0.2, 0.9, 0.8),)), detections, 640, 480) == [3, 0]
    assert choose(request(min_pixels=200), detections, 640, 480) == []  # 192 pixels wide


def test_with_tracking_each_bird_is_classified_once_per_interval_and_keeps_its_species():
    stage = SecondStage([ClassifySettings(label="bird", model=BIRDS, interval_seconds=5.0, min_score=0.5)],
                        tracked=True)
    tracker = CameraTracker(TrackingSettings(min_hits=1))
    macaw = Subclass(MACAW, 0.81)
    published = []
    for step in range(8):
        now = step * 1.0
        plan = stage.plan(640, 480, now)
        asked = choose(plan.requests[0], [bird(0.1)], 640, 480)
        detections = [bird(0.1, subclass=macaw if asked else None)]  # what the worker would return
        update = tracker.update(now, 1_800_000_000 + now, detections)
        published.append((bool(asked), stage.annotate(detections, update, now)[0].subclass))
    # asked at 0 s and again once the 5 s interval has passed; every frame in between carries the species
    assert [asked for asked, _ in published] == [True, False, False, False, False, True, False, False]
    assert all(subclass == macaw for _, subclass in published)
    assert stage.subclasses() == {1: macaw}


def test_below_the_minimum_score_no_subclass_is_reported_and_without_tracking_every_frame_asks():
    stage = SecondStage([ClassifySettings(label="bird", model=BIRDS, min_score=0.5)], tracked=False)
    unsure = [bird(0.1, subclass=Subclass(MACAW, 0.3)), bird(0.5, subclass=Subclass(MACAW, 0.9))]
    assert [d.subclass for d in stage.annotate(unsure, None, 0.0)] == [None, Subclass(MACAW, 0.9)]
    assert stage.plan(640, 480, 0.0).requests[0].skip == ()
