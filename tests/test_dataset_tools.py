"""`edged dataset stats | export | import` on a dataset the Recorder wrote from the real model's detections.

Each export is read back by what its users read it with: COCO by pycocotools,
VOC as XML with boxes in pixels, YOLO lines mapped back to pixels (±1 px) with
data.yaml's names; importing our own COCO export restores the frames exactly,
and labels corrected in a tool replace the model's on the right frame.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from edged.dataset.layout import FrameRecord, iter_frames, read_label_map


def edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())


def ok(*args: str) -> str:
    result = edged(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def frames_by_export_name(root: Path) -> dict[str, FrameRecord]:
    return {f"{f.camera}_{f.name}.jpg": f.record for f in iter_frames(root)}


def pixels(record: FrameRecord, box) -> tuple[float, float, float, float]:
    w, h = record.width, record.height
    return (box.xmin * w, box.ymin * h, box.xmax * w, box.ymax * h)


def test_recorded_frames_carry_the_models_detections(recorded_dataset: Path, sample_frames):
    frames = list(iter_frames(recorded_dataset))
    assert [f.record.width for f in frames] == [s.image.shape[1] for s in sample_frames]
    for frame, sample in zip(frames, sample_frames):
        assert [(a.label, a.class_id, a.score) for a in frame.record.detections] == [
            (d.label, d.class_id, d.score) for d in sample.detections]
        assert frame.record.detections[0].track_id is not None
        assert frame.record.model == "ssd_mobilenet_v1_coco_quant" and frame.record.camera == "cam0"
        with Image.open(frame.image_path) as picture:
            assert picture.format == "JPEG" and picture.size == (frame.record.width, frame.record.height)
    assert read_label_map(recorded_dataset)[0] == "person" and 11 not in read_label_map(recorded_dataset)


def test_stats_counts_frames_labels_scores_and_disk(recorded_dataset: Path, sample_frames):
    stats = json.loads(ok("dataset", "stats", "--json", recorded_dataset))
    detections = [d for s in sample_frames for d in s.detections]
    assert stats["frames"] == 5 and stats["cameras"] == {"cam0": 5}
    assert {k: v["objects"] for k, v in stats["labels"].items()} == {
        label: sum(d.label == label for d in detections) for label in {d.label for d in detections}}
    assert sum(stats["score_histogram"]) == len(detections)
    assert sum(stats["score_histogram"][:3]) == 0  # the model ran at threshold 0.3
    assert stats["disk_bytes"] == sum(p.stat().st_size for p in recorded_dataset.rglob("*") if p.is_file())
    text = ok("dataset", "stats", recorded_dataset)
    assert "5 frames" in text and "0.3-0.4" in text and "person" in text


def test_export_coco_loads_in_pycocotools_with_the_boxes_in_pixels(recorded_dataset: Path, tmp_path: Path):
    pytest.importorskip("pycocotools", reason="pycocotools (the `evaluate` extra) is not installed")
    from pycocotools.coco import COCO

    out = tmp_path / "coco"
    ok("dataset", "export", recorded_dataset, "--format", "coco", out)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "labels.json"))
    records = frames_by_export_name(recorded_dataset)
    labels = read_label_map(recorded_dataset)
    categories = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert categories == {i + 1: n for i, n in labels.items()}
    assert len(coco.getImgIds()) == 5
    for image in coco.loadImgs(coco.getImgIds()):
        record = records[image["file_name"]]
        assert (out / "images" / image["file_name"]).is_file()
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(annotations) == len(record.detections)
        for a, expected in zip(annotations, record.detections):
            assert coco.loadCats(a["category_id"])[0]["name"] == expected.label
            x0, y0, x1, y1 = pixels(record, expected.box)
            assert a["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.001)


def test_export_voc_is_valid_voc_xml_with_pixel_boxes(recorded_dataset: Path, tmp_path: Path):
    out = tmp_path / "voc"
    ok("dataset", "export", recorded_dataset, "--format", "voc", out)
    records = frames_by_export_name(recorded_dataset)
    xml_files = sorted((out / "Annotations").glob("*.xml"))
    assert len(xml_files) == 5
    for path in xml_files:
        root = ET.parse(path).getroot()
        assert root.tag == "annotation"
        filename = root.findtext("filename")
        record = records[filename]
        assert (out / "JPEGImages" / filename).is_file()
        size = [int(root.findtext(f"size/{tag}")) for tag in ("width", "height", "depth")]
        assert size == [record.width, record.height, 3]
        objects = root.findall("object")
        assert len(objects) == len(record.detections)
        for element, expected in zip(objects, record.detections):
            assert element.findtext("name") == expected.label and element.findtext("difficult") == "0"
            box = [int(element.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax")]
            assert box == [round(v) for v in pixels(record, expected.box)]
            assert 0 <= box[0] < box[2] <= record.width and 0 <= box[1] < box[3] <= record.height
    stems = (out / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert sorted(stems) == sorted(p.stem for p in xml_files)
    assert "id: 1\n  name: 'person'" in (out / "label_map.pbtxt").read_text()


def test_export_yolo_lines_map_back_to_the_same_boxes(recorded_dataset: Path, tmp_path: Path):
    yaml = pytest.importorskip("yaml", reason="PyYAML (reads data.yaml as Ultralytics does) is not installed")
    out = tmp_path / "yolo"
    ok("dataset", "export", recorded_dataset, "--format", "yolo", out)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert Path(data["path"]) == out.resolve() and data["train"] == "images/train"
    names = data["names"]
    assert list(names) == list(range(len(names))) and names[0] == "person" and "n/a" not in names.values()
    records = frames_by_export_name(recorded_dataset)
    for image in (out / "images" / "train").iterdir():
        record = records[image.name]
        lines = (out / "labels" / "train" / (image.stem + ".txt")).read_text().splitlines()
        assert len(lines) == len(record.detections)
        for line, expected in zip(lines, record.detections):
            index, cx, cy, w, h = line.split()
            assert names[int(index)] == expected.label
            assert all(0.0 <= float(v) <= 1.0 for v in (cx, cy, w, h))
            back = ((float(cx) - float(w) / 2) * record.width, (float(cy) - float(h) / 2) * record.height,
                    (float(cx) + float(w) / 2) * record.width, (float(cy) + float(h) / 2) * record.height)
            assert back == pytest.approx(pixels(record, expected.box), abs=1.0)


def test_min_score_and_split_are_applied_reproducibly(recorded_dataset: Path, tmp_path: Path):
    def export(name: str, *extra: str) -> dict:
        out = tmp_path / name
        ok("dataset", "export", recorded_dataset, "--format", "coco", out, "--min-score", "0.5", *extra)
        return {split: json.loads((out / split / "labels.json").read_text()) for split in ("train", "val")}

    first, again = export("a", "--split", "60/40"), export("b", "--split", "60/40")
    other = export("c", "--split", "3/2", "--seed", "5")
    names = {split: sorted(i["file_name"] for i in doc["images"]) for split, doc in first.items()}
    assert [len(names["train"]), len(names["val"])] == [3, 2]
    assert not set(names["train"]) & set(names["val"])
    assert {s: sorted(i["file_name"] for i in d["images"]) for s, d in again.items()} == names
    assert sum(len(d["images"]) for d in other.values()) == 5
    kept = [a for doc in first.values() for a in doc["annotations"]]
    assert kept and all(a["score"] >= 0.5 for a in kept)
    records = frames_by_export_name(recorded_dataset)
    assert len(kept) == sum(a.score >= 0.5 for r in records.values() for a in r.detections)


def test_import_of_the_coco_export_round_trips(recorded_dataset: Path, tmp_path: Path):
    out = tmp_path / "coco"
    ok("dataset", "export", recorded_dataset, "--format", "coco", out)
    copy = tmp_path / "again"
    assert "5 frames added" in ok("dataset", "import", out / "labels.json", copy)
    original, restored = list(iter_frames(recorded_dataset)), list(iter_frames(copy))
    assert [f.key for f in restored] == [f.key for f in original]
    for before, after in zip(original, restored):
        assert after.image_path.read_bytes() == before.image_path.read_bytes()
        a, b = before.record, after.record
        assert (b.width, b.height, b.camera, b.captured_at, b.model, b.reasons) == \
            (a.width, a.height, a.camera, a.captured_at, a.model, a.reasons)
        assert [(d.label, d.class_id, d.score, d.track_id) for d in b.detections] == \
            [(d.label, d.class_id, d.score, d.track_id) for d in a.detections]
        for x, y in zip(b.detections, a.detections):
            assert pixels(b, x.box) == pytest.approx(pixels(a, y.box), abs=0.001)
    assert read_label_map(copy) == read_label_map(recorded_dataset)


def test_corrected_labels_come_back_to_their_frame(recorded_dataset: Path, tmp_path: Path):
    out = tmp_path / "coco"
    ok("dataset", "export", recorded_dataset, "--format", "coco", out)
    document = json.loads((out / "labels.json").read_text())
    owl = next(i for i in document["images"] if i["frame"].endswith("-000004"))
    cats = {c["name"]: c["id"] for c in document["categories"]}
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] != owl["id"]] + [
        {"id": 999, "image_id": owl["id"], "category_id": cats["bird"], "bbox": [161, 15, 171, 356],
         "area": 1, "iscrowd": 0}]  # a person redrew the owl's box: no score
    (out / "labels.json").write_text(json.dumps(document))
    jpeg_before = (recorded_dataset / "cam0" / (owl["frame"] + ".jpg")).read_bytes()
    assert "0 frames added, 5 relabelled" in ok("dataset", "import", out, recorded_dataset)
    frames = {f.name: f for f in iter_frames(recorded_dataset)}
    assert len(frames) == 5
    owl_frame = frames[owl["frame"]]
    (bird,) = owl_frame.record.detections
    assert (bird.label, bird.score) == ("bird", None)
    assert pixels(owl_frame.record, bird.box) == pytest.approx((161, 15, 332, 371), abs=0.01)
    assert "imported" in owl_frame.record.reasons and owl_frame.image_path.read_bytes() == jpeg_before
    stats = json.loads(ok("dataset", "stats", "--json", recorded_dataset))
    assert stats["labels"]["bird"] == {"objects": 1, "by_person": 1}


def test_import_of_a_voc_set_adds_frames_with_pixel_boxes(recorded_dataset: Path, tmp_path: Path):
    out = tmp_path / "voc"
    ok("dataset", "export", recorded_dataset, "--format", "voc", out)
    copy = tmp_path / "from-voc"
    ok("dataset", "import", out, copy)
    original = {f.key: f.record for f in iter_frames(recorded_dataset)}
    restored = {f.key: f.record for f in iter_frames(copy)}
    assert set(restored) == set(original)
    for key, record in restored.items():
        assert [d.label for d in record.detections] == [d.label for d in original[key].detections]
        for x, y in zip(record.detections, original[key].detections):
            assert x.score is None  # VOC carries no scores: these are a person's labels now
            assert pixels(record, x.box) == pytest.approx(pixels(record, y.box), abs=0.5)


def test_bad_input_gets_one_line_and_its_exit_code(recorded_dataset: Path, tmp_path: Path):
    cases = [
        (["dataset", "stats", tmp_path / "nothing"], 66),
        (["dataset", "export", recorded_dataset, "--format", "coco", tmp_path], 2),  # OUT not empty
        (["dataset", "export", recorded_dataset, "--format", "coco", recorded_dataset / "out"], 2),  # inside
        (["dataset", "export", recorded_dataset, "--format", "coco", tmp_path / "o1", "--split", "80"], 2),
        (["dataset", "import", tmp_path / "missing.json", tmp_path / "d1"], 66),
    ]
    (tmp_path / "list.json").write_text("[1, 2]")
    cases.append((["dataset", "import", tmp_path / "list.json", tmp_path / "d2"], 65))
    for args, code in cases:
        result = edged(*args)
        assert result.returncode == code, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_an_unreadable_frame_is_skipped_with_one_line_and_the_rest_exported(recorded_dataset: Path,
                                                                          tmp_path: Path):
    broken = sorted((recorded_dataset / "cam0").glob("*.json"))[1]
    broken.write_text('{"version": 1, "image": ')
    result = edged("dataset", "export", recorded_dataset, "--format", "yolo", tmp_path / "yolo")
    assert result.returncode == 65
    (line,) = result.stderr.splitlines()
    assert str(broken) in line and "skipped" in line
    assert len(list((tmp_path / "yolo" / "labels" / "train").iterdir())) == 4
