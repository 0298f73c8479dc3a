"""Output layout by shapes and values, never names: a TF2-ordered export of the SSD model decodes the same.

TF1 exports name the classes output `…:1`; TF2 exports name the *scores*
`StatefulPartitionedCall:1` and list the outputs scores, boxes, count, classes.
The test model is the real SSD file with only its graph-output list and names
rewritten that way (tests/tflite_models.py), so it must find exactly what the
original finds — through the op list, and without one (shapes + values).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.detect.detector import Detector, make_postprocessor
from edged.detect.labels import read_labels
from edged.detect.layout import LayoutError, OpLayout, find_layout, settle_classes
from edged.detect.loading import load_model
from edged.detect.postprocess import Filters, Postprocessor
from edged.detect.preprocess import InputSpec, prepare
from edged.detect.settings import DetectorSettings
from tests.tflite_models import tf2_ordered

IMAGES = ["grace_hopper.bmp", "cat.bmp", "pets.jpg", "owl.jpg", "squat.bmp"]
SSD_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"


@pytest.fixture(scope="module")
def tf2_model(fetched_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tf2") / "ssd_tf2_ordered.tflite"
    path.write_bytes(tf2_ordered((fetched_data_dir / "models" / SSD_FILE).read_bytes()))
    return path


@pytest.fixture(scope="module")
def photos(fetched_data_dir: Path) -> dict[str, np.ndarray]:
    samples = fetched_data_dir / "samples"
    return {name: np.asarray(Image.open(samples / name).convert("RGB")) for name in IMAGES}


@pytest.fixture(scope="module")
def reference(photos) -> dict[str, list]:
    with Detector.open(DetectorSettings(threshold=0.3), backend="cpu") as detector:
        return {name: detector.detect(image).detections for name, image in photos.items()}


def test_the_test_model_really_has_tf2_names_and_order(tf2_model):
    loaded = load_model(DetectorSettings(model_file=str(tf2_model)), "detector", backend="cpu")
    try:
        names = [(d["name"], len(d["shape"])) for d in loaded.backend.output_details]
    finally:
        loaded.backend.close()
    assert names == [("StatefulPartitionedCall:1", 2), ("StatefulPartitionedCall:3", 3),
                     ("StatefulPartitionedCall:0", 1), ("StatefulPartitionedCall:2", 2)]


def test_tf2_ordered_model_decodes_the_same_through_detect(tf2_model, fetched_data_dir, reference):
    env = {**os.environ, "EDGED_DATA_DIR": str(fetched_data_dir)}
    result = subprocess.run([sys.executable, "-m", "edged", "detect", "--json", "--backend", "cpu",
                             "--threshold", "0.3", "--model-file", str(tf2_model),
                             *(str(fetched_data_dir / "samples" / name) for name in IMAGES)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    for record in map(json.loads, result.stdout.splitlines()):
        expected = reference[Path(record["image"]).name]
        found = [(d["label"], d["score"]) for d in record["detections"]]
        assert found == [(d.label, d.score) for d in expected]


def test_without_an_op_list_a_probe_invoke_tells_classes_from_scores(tf2_model, photos, reference):
    settings = DetectorSettings(model_file=str(tf2_model), threshold=0.3)
    loaded = load_model(settings, "detector", backend="cpu")
    try:
        by_shapes = find_layout(loaded.backend.output_details, None)
        assert by_shapes == OpLayout(1, 0, 3, 2, None, classes_known=False)
        postprocessor = make_postprocessor(loaded.backend, loaded.resolved, settings, ops=None)
        assert postprocessor.layout == OpLayout(1, 3, 0, 2, None, classes_known=True)  # classes = …:2
        spec = InputSpec.from_detail(loaded.backend.input_detail)
        for name, image in photos.items():
            tensor, geometry = prepare(image, spec)
            assert postprocessor(loaded.backend.invoke(tensor), geometry) == reference[name], name
    finally:
        loaded.backend.close()


def test_an_undecided_layout_is_settled_by_the_first_frame_that_tells(tf2_model, photos, reference):
    settings = DetectorSettings(model_file=str(tf2_model), threshold=0.3)
    loaded = load_model(settings, "detector", backend="cpu")
    try:
        undecided = find_layout(loaded.backend.output_details, None)
        postprocessor = Postprocessor(undecided, read_labels(loaded.resolved.labels), Filters(threshold=0.3))
        tensor, geometry = prepare(photos["cat.bmp"], InputSpec.from_detail(loaded.backend.input_detail))
        outputs = loaded.backend.invoke(tensor)
    finally:
        loaded.backend.close()
    nothing = [outputs[0], outputs[1], np.zeros_like(outputs[2]), outputs[3]]  # count 0: values cannot tell
    assert settle_classes(undecided, nothing, 90) is None
    assert postprocessor(nothing, geometry) == [] and not postprocessor.layout.classes_known
    assert postprocessor(outputs, geometry) == reference["cat.bmp"]
    assert postprocessor.layout.classes_known and postprocessor.layout.classes == 3


def test_outputs_that_hold_no_class_ids_are_not_an_ssd_layout():
    layout = OpLayout(0, 1, 2, 3, None, classes_known=False)
    boxes, count = np.zeros((1, 2, 4), np.float32), np.array([2.0], np.float32)
    fractions = np.array([[0.5, 0.25]], np.float32)
    with pytest.raises(LayoutError, match="class ids"):
        settle_classes(layout, [boxes, fractions, fractions, count], 90)
    ids = np.array([[3.0, 7.0]], np.float32)
    assert settle_classes(layout, [boxes, fractions, ids, count], 90).classes == 2
    assert settle_classes(layout, [boxes, ids, fractions, count], 90).classes == 1
    with pytest.raises(LayoutError):  # 7 is no class id of a 5-label model, and 0.5 is none either
        settle_classes(layout, [boxes, ids, fractions, count], 5)
