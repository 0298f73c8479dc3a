"""`edged detect --json` on every sample photo finds what EXPECTED.md measured, and --annotate draws it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.types import Box

IMAGES = ["grace_hopper.bmp", "cat.bmp", "pets.jpg", "owl.jpg", "squat.bmp"]


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def detect_json(images: list[Path], data_dir: Path, *extra: str) -> dict[str, dict]:
    result = edged("detect", "--json", "--backend", "cpu", *extra, *map(str, images), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # stdout is JSON lines, nothing else
    return {Path(record["image"]).name: record for record in records}


def as_box(record: dict) -> Box:
    return Box(**record["box"])


@pytest.fixture(scope="module")
def at_default(fetched_data_dir: Path) -> dict[str, dict]:
    return detect_json([fetched_data_dir / "samples" / name for name in IMAGES], fetched_data_dir)


@pytest.fixture(scope="module")
def at_low_threshold(fetched_data_dir: Path) -> dict[str, dict]:
    return detect_json([fetched_data_dir / "samples" / name for name in IMAGES], fetched_data_dir,
                       "--threshold", "0.4")


def test_json_record_has_the_documented_fields(at_default: dict[str, dict]):
    record = at_default["cat.bmp"]
    assert set(record) == {"image", "width", "height", "backend", "model", "inference_ms", "detections"}
    assert (record["width"], record["height"]) == (512, 341)
    assert record["backend"].startswith("cpu:")
    assert record["model"] == "ssd_mobilenet_v1_coco_quant"
    assert record["inference_ms"] > 0
    assert set(record["detections"][0]) == {"label", "class_id", "score", "box"}
    assert set(record["detections"][0]["box"]) == {"xmin", "ymin", "xmax", "ymax"}


@pytest.mark.parametrize("image", IMAGES)
def test_top_detection_matches_expected(image: str, at_default: dict[str, dict], expected_detections):
    top_expected = expected_detections[image][0]
    top = at_default[image]["detections"][0]
    assert top["label"] == top_expected.label
    assert top["class_id"] == top_expected.class_id
    assert abs(top["score"] - top_expected.score) <= 0.03
    assert as_box(top).iou(top_expected.box) >= 0.8
    assert top["score"] * 256 == round(top["score"] * 256)  # uint8 sigmoid output: multiples of 1/256


@pytest.mark.parametrize("image", IMAGES)
def test_every_confident_detection_is_found(image: str, at_low_threshold: dict[str, dict], expected_detections):
    found = at_low_threshold[image]["detections"]
    for expected in expected_detections[image][1:]:
        if expected.score < 0.55:
            continue
        matches = [d for d in found if d["label"] == expected.label and as_box(d).iou(expected.box) >= 0.5]
        assert matches, f"{image}: no {expected.label} near {expected.box} in {found}"


def test_annotate_one_image_writes_a_picture_changed_inside_the_top_box(fetched_data_dir: Path, tmp_path: Path,
                                                                         at_default: dict[str, dict]):
    source = fetched_data_dir / "samples" / "pets.jpg"
    out = tmp_path / "pets-annotated.png"
    result = edged("detect", "--backend", "cpu", "--annotate", str(out), str(source), data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    assert "dog" in result.stdout
    original = np.asarray(Image.open(source).convert("RGB")).astype(int)
    with Image.open(out) as written:
        assert written.format == "PNG" and written.size == (512, 430)
        drawn = np.asarray(written.convert("RGB")).astype(int)
    x0, y0, x1, y1 = as_box(at_default["pets.jpg"]["detections"][0]).to_pixels(512, 430)
    changed = np.any(drawn != original, axis=2)
    edge = changed[max(0, y0 - 3):y0 + 4, x0:x1]  # the box's top edge is drawn over the photo
    assert edge.mean() > 0.3
    assert changed.mean() < 0.2  # boxes and labels drawn over it, not a repainted picture


def test_annotate_several_images_writes_one_jpeg_each_into_a_directory(fetched_data_dir: Path, tmp_path: Path):
    images = [fetched_data_dir / "samples" / name for name in ("cat.bmp", "owl.jpg")]
    out = tmp_path / "annotated"
    result = edged("detect", "--backend", "cpu", "--annotate", str(out), *map(str, images),
                   data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cat.jpg", "owl.jpg"]
    with Image.open(out / "owl.jpg") as written:
        assert written.format == "JPEG" and written.size == (512, 384)


def test_human_output_lists_label_score_and_pixel_box(fetched_data_dir: Path):
    result = edged("detect", "--backend", "cpu", str(fetched_data_dir / "samples" / "owl.jpg"),
                   data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(fetched_data_dir / "samples" / "owl.jpg") + " 512x384 cpu:")
    label, score, *box = lines[1].replace("(", " ").replace(")", " ").replace(",", " ").replace("-", " ").split()
    assert label == "bird" and abs(float(score) - 0.824) <= 0.03
    assert Box(*(int(v) / s for v, s in zip(box, (512, 384, 512, 384)))).iou(
        Box(153 / 512, 8 / 384, 333 / 512, 367 / 384)) >= 0.8


def test_no_image_arguments_runs_the_demo_on_the_fetched_sample_photos(fetched_data_dir: Path, at_default):
    result = edged("detect", "--json", "--backend", "cpu", data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["image"]).name for r in records] == IMAGES
    assert [r["detections"] for r in records] == [at_default[name]["detections"] for name in IMAGES]
