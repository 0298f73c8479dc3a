"""Boxes stay inside the picture in every output, as the detections schema promises (0..1).

On grace_hopper.bmp the model's person box overshoots the frame (x from
-0.009 to 1.014 in images/expected_detections.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
from PIL import Image

from edged.publish.payloads import SCHEMA_DIR


def detect(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-m", "edged", "detect", "--backend", "cpu", *args],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def overshooting_person(photo: np.ndarray, models_dir: Path) -> bool:
    """Whether the model's own best box (before edged clips it) leaves this picture on both sides."""
    from edged.detect.detector import Detector
    from edged.detect.settings import DetectorSettings

    with Detector.open(DetectorSettings(), backend="cpu", models_dir=models_dir) as detector:
        tensor, _ = detector.prepare(photo)
        boxes, classes = detector.invoke(tensor)[:2]
    _, xmin, _, xmax = boxes[0][0]
    return int(classes[0][0]) == 0 and xmin < 0 and xmax > 1  # class 0: person


def test_the_overshooting_person_box_is_clipped_in_json_and_pixels(fetched_data_dir, tmp_path):
    """The premise depends on the resize (Pillow or OpenCV): the photo, or a crop of it where the model
    overshoots either way (EXPECTED.md: x from -0.009 to 1.014 with Pillow)."""
    grace = np.asarray(Image.open(fetched_data_dir / "samples" / "grace_hopper.bmp").convert("RGB"))
    candidates = [grace, grace[20:, 60:452]]
    picture = next((c for c in candidates if overshooting_person(c, fetched_data_dir / "models")), None)
    assert picture is not None, "no candidate picture where the model's person box overshoots: the premise"
    photo = tmp_path / "overshoot.png"
    Image.fromarray(picture).save(photo)
    height, width = picture.shape[:2]
    person = json.loads(detect("--json", str(photo), data_dir=fetched_data_dir).stdout)["detections"][0]
    assert person["label"] == "person"
    assert (person["box"]["xmin"], person["box"]["xmax"]) == (0.0, 1.0)
    assert 0.0 <= person["box"]["ymin"] < person["box"]["ymax"] <= 1.0
    text = detect(str(photo), data_dir=fetched_data_dir).stdout.splitlines()
    assert text[1].split()[0] == "person" and text[1].endswith(
        f"(0, {round(person['box']['ymin'] * height)})-({width}, {round(person['box']['ymax'] * height)})")


def test_every_box_on_every_sample_validates_against_the_schema(fetched_data_dir):
    schema = json.loads((SCHEMA_DIR / "detections.v1.json").read_text())
    box_schema = {**schema["$defs"]["Box"], "$defs": schema["$defs"]}
    samples = sorted(str(p) for p in (fetched_data_dir / "samples").iterdir()
                     if not p.name.endswith(".verified"))
    records = map(json.loads, detect("--json", "--threshold", "0.1", "--resize", "letterbox", *samples,
                                     data_dir=fetched_data_dir).stdout.splitlines())
    boxes = [d["box"] for record in records for d in record["detections"]]
    assert len(boxes) > 20
    for box in boxes:
        jsonschema.validate(box, box_schema)
