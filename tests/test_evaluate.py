"""`edged evaluate` on the hand-made ground truth: the same mAP pycocotools gives on `edged detect --json`.

The ground truth (tests/data/samples_ground_truth.json) is checked against the
real photos first; then the default model is scored by `edged evaluate` and,
independently, by pycocotools on `edged detect --json` output converted the
documented way (boxes clipped to the picture, labels matched by name). The
ground truth fed back as detections must score 1.0, and bad input gets one
line and its exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edged.dataset.coco import load_coco
from edged.dataset.evaluate import coco_metrics

pytest.importorskip("pycocotools", reason="pycocotools (the `evaluate` extra) is not installed")

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

GROUND_TRUTH = Path(__file__).parent / "data" / "samples_ground_truth.json"
MODEL = "ssd_mobilenet_v1_coco_quant"


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def error_lines(stderr: str) -> list[str]:
    """stderr without the runtime's own banner (XNNPACK's INFO line)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("INFO:")]


@pytest.fixture(scope="module")
def samples(fetched_data_dir: Path) -> Path:
    return fetched_data_dir / "samples"


@pytest.fixture(scope="module")
def evaluated(fetched_data_dir: Path, samples: Path) -> dict:
    result = edged("evaluate", "--json", "--backend", "cpu", "--dataset", str(GROUND_TRUTH), "--images",
                   str(samples), "--model", MODEL, data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def pycocotools_map(truth_file: Path, results: list[dict]) -> tuple[float, float, COCOeval]:
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(truth_file))
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[1], evaluation.stats[0], evaluation


def test_ground_truth_fits_the_real_photos_and_cocos_label_ids(image_mirror: Path):
    truth = json.loads(GROUND_TRUTH.read_text())
    labels = (Path(__file__).parents[1] / "models" / "coco_labels.txt").read_text().splitlines()
    assert {c["id"]: c["name"] for c in truth["categories"]} == {
        i + 1: name for i, name in enumerate(labels) if name != "n/a"}  # COCO's 90 ids with gaps
    sizes = {}
    for image in truth["images"]:
        with Image.open(image_mirror / image["file_name"]) as photo:
            assert photo.size == (image["width"], image["height"])
        sizes[image["id"]] = photo.size
    for a in truth["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
    used = {a["category_id"] for a in truth["annotations"]}
    labelled = sorted(c["name"] for c in truth["categories"] if c["id"] in used)
    assert labelled == ["bird", "cat", "dog", "person", "tie"]
    assert len(truth["annotations"]) == 7


def test_evaluate_gives_the_map_pycocotools_gives_on_detect_json(evaluated: dict, fetched_data_dir: Path,
                                                                  samples: Path):
    truth = json.loads(GROUND_TRUTH.read_text())
    images = [samples / image["file_name"] for image in truth["images"]]
    detect = edged("detect", "--json", "--backend", "cpu", "--threshold", "0.01", *map(str, images),
                   data_dir=fetched_data_dir)
    assert detect.returncode == 0, detect.stderr
    ids = {image["file_name"]: image["id"] for image in truth["images"]}
    categories = {c["name"]: c["id"] for c in truth["categories"]}
    results = []
    for line in detect.stdout.splitlines():
        record = json.loads(line)
        w, h = record["width"], record["height"]
        for d in record["detections"]:
            b = {k: min(max(v, 0.0), 1.0) for k, v in d["box"].items()}  # clipped, as documented
            box = [b["xmin"] * w, b["ymin"] * h, (b["xmax"] - b["xmin"]) * w,
                   (b["ymax"] - b["ymin"]) * h]
            image_id = ids[Path(record["image"]).name]
            results.append({"image_id": image_id, "category_id": categories[d["label"]], "bbox": box,
                            "score": d["score"]})
    map50, map_all, _ = pycocotools_map(GROUND_TRUTH, results)
    (model,) = evaluated["models"]
    assert model["map50"] == round(map50, 6)
    assert model["map"] == round(map_all, 6)
    assert 0.5 < model["map50"] < 1.0  # finds the people, the cat, the dogs and the owl; misses the tie's box
    assert model["per_class"]["cat"] == 1.0 and model["per_class"]["tie"] < 0.5


def test_json_report_has_the_documented_fields(evaluated: dict, fetched_data_dir: Path):
    assert set(evaluated) == {"dataset", "images", "models"}
    assert evaluated["images"] == 5
    (model,) = evaluated["models"]
    assert {"model", "map50", "map", "per_class", "invoke_ms", "fps", "size_bytes"} <= set(model)
    assert model["model"] == MODEL
    assert set(model["per_class"]) == {"bird", "cat", "dog", "person", "tie"}
    assert model["invoke_ms"] > 0 and model["fps"] == pytest.approx(1000 / model["invoke_ms"], rel=0.01)
    model_file = fetched_data_dir / "models" / "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
    assert model["size_bytes"] == model_file.stat().st_size
    assert model["backend"].startswith("cpu:")


def test_ground_truth_fed_as_detections_scores_one():
    truth = load_coco(GROUND_TRUTH)
    perfect = [{"image_id": a.image_id, "category_id": a.category_id, "bbox": list(a.bbox), "score": 1.0}
               for a in truth.annotations]
    map50, map_all, per_class = coco_metrics(truth, perfect, [c.id for c in truth.categories])
    assert (map50, map_all) == (pytest.approx(1.0), pytest.approx(1.0))
    assert per_class == {label: pytest.approx(1.0) for label in ("bird", "cat", "dog", "person", "tie")}
    assert pycocotools_map(GROUND_TRUTH, perfect)[:2] == (pytest.approx(1.0), pytest.approx(1.0))


def test_labels_are_matched_by_name_not_by_id(evaluated: dict, fetched_data_dir: Path, samples: Path,
                                              tmp_path: Path):
    """The same boxes under a custom contiguous numbering (as a labelling tool writes it) score the same."""
    truth = json.loads(GROUND_TRUTH.read_text())
    used = sorted({a["category_id"] for a in truth["annotations"]}, reverse=True)
    renumber = {old: new for new, old in enumerate(used, 1)}  # tie=1 … person=5: no COCO id survives
    truth["categories"] = [{"id": renumber[c["id"]], "name": c["name"].upper()} for c in truth["categories"]
                           if c["id"] in renumber]
    for a in truth["annotations"]:
        a["category_id"] = renumber[a["category_id"]]
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps(truth))
    result = edged("evaluate", "--json", "--backend", "cpu", "--dataset", str(custom), "--images",
                   str(samples), "--model", MODEL, data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    (model,) = json.loads(result.stdout)["models"]
    assert model["map50"] == evaluated["models"][0]["map50"]
    assert model["map"] == evaluated["models"][0]["map"]


def test_text_report_is_a_table_with_a_row_per_label(fetched_data_dir: Path, samples: Path):
    result = edged("evaluate", "--backend", "cpu", "--dataset", str(GROUND_TRUTH), "--images", str(samples),
                   "--model", MODEL, data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:3] == ["MODEL", "mAP@.5", "mAP@.5:.95"]
    assert lines[2].startswith(MODEL)
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:]}
    assert set(rows) >= {"bird", "cat", "dog", "person", "tie"} and rows["cat"] == ["1.000"]
    assert float(lines[2].split()[1]) == pytest.approx(0.8, abs=0.2)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, code", [("missing file", 66), ("not JSON", 65), ("not COCO", 65),
                                        ("dangling category", 65), ("images missing", 66),
                                        ("no label in common", 65), ("unknown model", 78)])
def test_bad_input_gets_one_line_and_its_exit_code(case: str, code: int, fetched_data_dir: Path,
                                                   samples: Path, tmp_path: Path):
    truth = json.loads(GROUND_TRUTH.read_text())
    dataset, images, model = GROUND_TRUTH, samples, MODEL
    if case == "missing file":
        dataset = tmp_path / "nothing.json"
    elif case == "not JSON":
        dataset = write(tmp_path / "broken.json", '{"images": [')
    elif case == "not COCO":
        not_coco = {"images": 5, "annotations": [], "categories": []}
        dataset = write(tmp_path / "not-coco.json", json.dumps(not_coco))
    elif case == "dangling category":
        truth["annotations"][0]["category_id"] = 999
        dataset = write(tmp_path / "dangling.json", json.dumps(truth))
    elif case == "images missing":
        images = tmp_path
    elif case == "no label in common":
        truth["categories"] = [{"id": c["id"], "name": f"widget {c['id']}"} for c in truth["categories"]]
        dataset = write(tmp_path / "widgets.json", json.dumps(truth))
    elif case == "unknown model":
        model = "no_such_model"
    result = edged("evaluate", "--backend", "cpu", "--dataset", str(dataset), "--images", str(images),
                   "--model", model, data_dir=fetched_data_dir)
    assert result.returncode == code, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith("edged evaluate: error:") and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_model_that_is_not_fetched_is_reported_and_the_others_still_scored(fetched_data_dir: Path,
                                                                            samples: Path):
    result = edged("evaluate", "--json", "--backend", "cpu", "--dataset", str(GROUND_TRUTH), "--images",
                   str(samples), "--model", "ssd_mobilenet_v2_coco_quant", "--model", MODEL,
                   data_dir=fetched_data_dir)
    assert result.returncode == 69
    (line,) = error_lines(result.stderr)
    assert "ssd_mobilenet_v2_coco_quant" in line and "edged models fetch" in line
    assert [m["model"] for m in json.loads(result.stdout)["models"]] == [MODEL]
