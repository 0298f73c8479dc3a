"""`edged models add`: your own model, vetted by the code that runs it, pinned, and then usable by name.

The files are the real ones from ../shared/models (and its zoo/): the default
SSD detector added under another name must detect exactly what the built-in
model detects, a zoo classifier added must classify, and every refusal is one
line with its exit code. The pins are checked by changing a stored file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged import cli
from edged.errors import EX_CANTCREAT, EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_USAGE
from tests.edged_process import EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Subscriber
from tests.tflite_models import with_edgetpu_op

SSD = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
CLASSIFIER = "zoo/mobilenet_v2_1.0_224_quant.tflite"
SEGMENTER = "zoo/deeplabv3_mnv2_pascal_quant.tflite"
GROUND_TRUTH = Path(__file__).parent / "data" / "samples_ground_truth.json"


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def error_lines(stderr: str) -> list[str]:
    """stderr without the runtime's banner and the Edge TPU fallback notice."""
    return [line for line in stderr.splitlines()
            if line and not line.startswith(("INFO:", "INFO edged.detect.loading: Edge TPU not used"))]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, list[str]]:
    """`edged ARGS` in this process: (exit code, stdout, stderr lines)."""
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, error_lines(captured.err)


def add_args(name: str, mirror: Path, model: str = SSD, labels: str = "coco_labels.txt", *extra: str) -> list[str]:
    return ["models", "add", name, "--file", str(mirror / model), "--labels", str(mirror / labels), *extra]


@pytest.fixture(scope="module")
def data_dir(fetched_data_dir: Path, model_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the built-in default model and the samples, plus `mine` (the default SSD file under
    a name of its own) and `birds` (a zoo classifier), added through the command line."""
    data = tmp_path_factory.mktemp("models-add")
    shutil.copytree(fetched_data_dir / "models", data / "models")
    shutil.copytree(fetched_data_dir / "samples", data / "samples")
    for args in (add_args("mine", model_mirror),
                 add_args("birds", model_mirror, CLASSIFIER, "zoo/imagenet_labels.txt", "--kind", "classifier")):
        result = edged(*args, data_dir=data)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{args[2]}: added ("), result.stdout
    return data


@pytest.fixture
def empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGED_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def detections(result: subprocess.CompletedProcess[str]) -> list[tuple[str, list]]:
    assert result.returncode == 0, result.stderr
    return [(json.loads(line)["image"], json.loads(line)["detections"]) for line in result.stdout.splitlines()]


def test_an_added_detector_detects_what_the_built_in_model_detects(data_dir: Path):
    built_in = detections(edged("detect", "--json", "--backend", "cpu", data_dir=data_dir))
    added = detections(edged("detect", "--json", "--backend", "cpu", "--model", "mine", data_dir=data_dir))
    assert added == built_in
    assert sum(len(found) for _, found in added) >= 5  # the sample photos' dogs, cats, people …


def test_an_added_model_is_scored_by_evaluate_like_the_built_in_one(data_dir: Path):
    pytest.importorskip("pycocotools", reason="pycocotools (the `evaluate` extra) is not installed")
    result = edged("evaluate", "--json", "--backend", "cpu", "--dataset", str(GROUND_TRUTH), "--images",
                   str(data_dir / "samples"), "--model", "ssd_mobilenet_v1_coco_quant", "--model", "mine",
                   data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    built_in, mine = json.loads(result.stdout)["models"]
    assert mine["model"] == "mine" and mine["map50"] == built_in["map50"] > 0.5
    assert mine["per_class"] == built_in["per_class"]


def test_edged_run_publishes_the_added_models_detections_under_its_name(data_dir: Path, mosquitto, tmp_path: Path):
    broker = mosquitto()
    notify = NotifyListener(tmp_path)
    subscriber = Subscriber("::1", broker.port, ("edged/#",))
    run = EdgedRun(["--backend", "cpu", "--model", "mine", "--broker", broker_url(broker), "--device-id", "own"],
                   data_dir=data_dir, notify=notify)
    try:
        notify.wait_for("READY=1")
        subscriber.wait_for(lambda ms: any(m.topic == "edged/own/cam0/detections" and m.json()["detections"]
                                           for m in ms), timeout=30)
        payload = next(m.json() for m in subscriber.on("edged/own/cam0/detections") if m.json()["detections"])
        assert payload["model"] == "mine"
        assert subscriber.on("edged/own/status")[-1].json()["model"] == "mine"
    finally:
        run.stop()
        subscriber.stop()
        notify.close()


@pytest.mark.parametrize(("detector", "code", "error"), [
    ('model = "mine"\nallow_labels = ["dog", "cat"]', 0, None),
    ('model = "mine"\nallow_labels = ["unicorn"]', EX_CONFIG,
     "detector.allow_labels: unknown label(s) 'unicorn' (not in mine-"),
    ('model = "birds"', EX_CONFIG, "detector.model: birds is a classifier, not a detector"),
    ('model = "nobody"', EX_CONFIG, "detector.model: unknown model 'nobody' (known: ssd_mobilenet_v1_coco_quant"),
])
def test_config_check_knows_the_added_models(detector: str, code: int, error: str | None, data_dir: Path,
                                              tmp_path: Path):
    config = tmp_path / "edged.toml"
    config.write_text(f"[detector]\n{detector}\n")
    result = edged("config", "check", str(config), data_dir=data_dir)
    assert result.returncode == code, result.stderr
    if error is None:
        assert result.stderr == ""
    else:
        [line] = error_lines(result.stderr)
        assert line.startswith(f"edged config: error: {config}: {error}"), line
        assert "nobody" not in detector or line.endswith("; added here: mine, birds)")


def test_an_added_classifier_classifies_and_detect_refuses_it(data_dir: Path, image_mirror: Path,
                                                              model_mirror: Path):
    cat = str(image_mirror / "cat.bmp")
    result = edged("classify", "--json", "--backend", "cpu", "--model", "birds", cat, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)["classes"][0]
    direct = edged("classify", "--json", "--backend", "cpu", "--model-file", str(model_mirror / CLASSIFIER),
                   "--labels", str(model_mirror / "zoo" / "imagenet_labels.txt"), cat, data_dir=data_dir)
    assert direct.returncode == 0, direct.stderr
    assert best["label"] == "Egyptian cat" and best == json.loads(direct.stdout)["classes"][0]  # same file
    refused = edged("detect", "--model", "birds", cat, data_dir=data_dir)
    assert refused.returncode == EX_DATAERR
    assert error_lines(refused.stderr) == [
        "edged detect: error: model birds is a classifier, not a detector: use `edged classify --model birds`"]


def test_models_list_shows_built_in_and_local_models_with_their_source(data_dir: Path):
    result = edged("models", "list", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert rows["ssd_mobilenet_v1_coco_quant"][2:5] == ["detector", "cpu", "verified"]
    assert "built-in" in rows["ssd_mobilenet_v1_coco_quant"]
    assert rows["mine"][1:4] == ["detector", "cpu", "verified"] and rows["mine"][6] == "local"
    assert rows["birds"][1:4] == ["classifier", "cpu", "verified"] and rows["birds"][6] == "local"


def test_adding_the_same_files_again_changes_nothing(data_dir: Path, model_mirror: Path):
    manifest = data_dir / "models" / "models.local.toml"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    result = edged(*add_args("mine", model_mirror), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mine: unchanged (detector, 300x300 uint8 input, postprocess outputs")
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before


@pytest.mark.parametrize(("case", "code", "fragment"), [
    ("not_tflite", EX_DATAERR, "is not a TFLite model (no TFL3 flatbuffer identifier)"),
    ("labels_too_long", EX_DATAERR, "has 1001 labels but ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess"
                                    ".tflite scores 90 classes (+ background)"),
    ("labels_too_short", EX_DATAERR, "has 90 labels but mobilenet_v2_1.0_224_quant.tflite scores 1001 classes"),
    ("classifier_as_detector", EX_DATAERR, "is not an SSD detection model: its outputs [(1, 1001)] are those of "
                                           "a classifier (one output of class scores) (add it with --kind "
                                           "classifier"),
    ("detector_as_classifier", EX_DATAERR, "is not a classifier (one output of class scores): its outputs "
                                           "[(1, 10, 4), (1, 10), (1, 10), (1,)] are those of an SSD detection "
                                           "model (add it with --kind detector"),
    ("anchors_for_a_segmenter", EX_USAGE, "--anchors is for a raw SSD detector"),
    ("built_in_name", EX_USAGE, "ssd_mobilenet_v1_coco_quant is a built-in model: choose another name"),
    ("bad_name", EX_USAGE, "model name '../up': use 1-64 letters"),
    ("missing_file", EX_NOINPUT, "model file /nonexistent/model.tflite does not exist"),
])
def test_bad_files_are_refused_with_one_line_and_nothing_added(case: str, code: int, fragment: str,
                                                               empty_data_dir: Path, model_mirror: Path,
                                                               capsys: pytest.CaptureFixture[str]):
    args = {
        "not_tflite": add_args("x", model_mirror, "coco_labels.txt"),
        "labels_too_long": add_args("x", model_mirror, SSD, "zoo/imagenet_labels.txt"),
        "labels_too_short": add_args("x", model_mirror, CLASSIFIER),
        "classifier_as_detector": add_args("x", model_mirror, CLASSIFIER, "zoo/imagenet_labels.txt",
                                           "--kind", "detector"),
        "detector_as_classifier": add_args("x", model_mirror, SSD, "coco_labels.txt", "--kind", "classifier"),
        "anchors_for_a_segmenter": add_args("x", model_mirror, SEGMENTER,
                                              "zoo/pascal_voc_segmentation_labels.txt", "--anchors",
                                              str(model_mirror / "coco_labels.txt")),
        "built_in_name": add_args("ssd_mobilenet_v1_coco_quant", model_mirror),
        "bad_name": add_args("../up", model_mirror),
        "missing_file": ["models", "add", "x", "--file", "/nonexistent/model.tflite", "--labels",
                         str(model_mirror / "coco_labels.txt")],
    }[case]
    exit_code, out, errors = run(capsys, *args)
    assert exit_code == code, errors
    assert len(errors) == 1 and errors[0].startswith("edged models: error: "), errors
    assert fragment in errors[0], errors[0]
    assert out == "" and not (empty_data_dir / "models" / "models.local.toml").exists()


def test_the_pins_catch_a_file_changed_after_adding_and_adding_again_repairs_it(
        empty_data_dir: Path, model_mirror: Path, image_mirror: Path, capsys: pytest.CaptureFixture[str]):
    assert run(capsys, *add_args("mine", model_mirror))[0] == 0
    stored = next((empty_data_dir / "models" / "local").glob("mine-*.tflite"))
    pinned = stored.name.split("-")[1].split(".")[0]
    with stored.open("ab") as handle:
        handle.write(b"\0")
    result = edged("detect", "--model", "mine", str(image_mirror / "pets.jpg"), data_dir=empty_data_dir)
    assert result.returncode == EX_DATAERR
    [line] = error_lines(result.stderr)
    assert line.startswith(f"edged detect: error: {stored} is corrupt or not the pinned file: sha256 ")
    found = line.split("sha256 ")[1].split()[0]
    assert found != pinned and "but the manifest pins sha256 " + pinned in line

    labels = next((empty_data_dir / "models" / "local").glob("mine-*.labels.txt"))
    labels.write_text(labels.read_text().replace("person", "intruder"))
    exit_code, out, _ = run(capsys, *add_args("mine", model_mirror))
    assert exit_code == 0 and out.startswith("mine: repaired (")
    assert run(capsys, "detect", "--backend", "cpu", "--model", "mine", str(image_mirror / "pets.jpg"))[0] == 0


def test_replace_needs_to_be_asked_for_and_remove_deletes_the_files(
        empty_data_dir: Path, model_mirror: Path, capsys: pytest.CaptureFixture[str]):
    local = empty_data_dir / "models" / "local"
    assert run(capsys, *add_args("mine", model_mirror))[0] == 0
    first = sorted(path.name for path in local.iterdir())
    segmenter = add_args("mine", model_mirror, SEGMENTER, "zoo/pascal_voc_segmentation_labels.txt")
    exit_code, _, errors = run(capsys, *segmenter)
    assert exit_code == EX_USAGE and "a local model mine already exists" in errors[0] and "--replace" in errors[0]
    assert sorted(path.name for path in local.iterdir()) == first  # untouched
    exit_code, out, _ = run(capsys, *segmenter, "--replace")
    assert exit_code == 0 and out.startswith("mine: replaced (segmenter, 513x513 uint8 input, class_map outputs")
    assert not set(first) & {path.name for path in local.iterdir()}  # the detector's files are gone
    assert run(capsys, "models", "remove", "mine")[:2] == (0, "mine: removed\n")
    assert list(local.iterdir()) == []
    assert "mine" not in (empty_data_dir / "models" / "models.local.toml").read_text()
    assert run(capsys, "models", "remove", "mine")[:2] == (0, "mine: no local model of that name, nothing removed\n")


def test_an_edge_tpu_build_must_hold_the_custom_op_and_runs_by_name(
        empty_data_dir: Path, model_mirror: Path, image_mirror: Path, tmp_path: Path, edgetpu_standin,
        capsys: pytest.CaptureFixture[str]):
    cpu = model_mirror / SSD
    exit_code, _, errors = run(capsys, *add_args("tpu", model_mirror), "--edgetpu", str(cpu))
    assert exit_code == EX_DATAERR
    assert errors == [f"edged models: error: Edge TPU model file {cpu} holds no edgetpu-custom-op: it is not "
                      "compiled for the Edge TPU (run edgetpu_compiler on the CPU file)"]
    compiled = tmp_path / "mine_edgetpu.tflite"  # see with_edgetpu_op: no edgetpu_compiler on this machine
    compiled.write_bytes(with_edgetpu_op(cpu.read_bytes()))
    other = add_args("tpu", model_mirror, CLASSIFIER, "zoo/imagenet_labels.txt", "--edgetpu", str(compiled))
    exit_code, _, errors = run(capsys, *other)
    assert exit_code == EX_DATAERR and "they are not builds of the same network" in errors[0]
    exit_code, out, _ = run(capsys, *add_args("tpu", model_mirror), "--edgetpu", str(compiled))
    assert exit_code == 0 and "; cpu, edgetpu) in " in out
    result = edged("detect", "--json", "--model", "tpu", "--backend", "edgetpu", "--edgetpu-library",
                   str(edgetpu_standin("ok")), str(image_mirror / "pets.jpg"), data_dir=empty_data_dir)
    assert result.returncode == 0, result.stderr
    picture = json.loads(result.stdout)
    assert picture["backend"] == "edgetpu:usb" and [d["label"] for d in picture["detections"]] == ["dog", "dog"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs: room for the segmenter (2.2 MB), not for a classifier beside it."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): no way to fill a disk safely")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_or_read_only_data_dir_is_one_line_and_loses_nothing(
        small_disk: Path, model_mirror: Path, image_mirror: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("EDGED_DATA_DIR", str(small_disk))
    assert run(capsys, *add_args("seg", model_mirror, SEGMENTER, "zoo/pascal_voc_segmentation_labels.txt"))[0] == 0
    manifest = (small_disk / "models" / "models.local.toml").read_bytes()
    kept = sorted(path.name for path in (small_disk / "models" / "local").iterdir())
    exit_code, _, errors = run(capsys, *add_args("cls", model_mirror, CLASSIFIER, "zoo/imagenet_labels.txt"))
    assert exit_code == EX_CANTCREAT
    assert len(errors) == 1 and "disk full; nothing was added" in errors[0], errors
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    exit_code, _, errors = run(capsys, *add_args("cls", model_mirror, CLASSIFIER, "zoo/imagenet_labels.txt"))
    assert exit_code == EX_CANTCREAT
    assert len(errors) == 1 and "read-only file system; nothing was added" in errors[0], errors
    assert (small_disk / "models" / "models.local.toml").read_bytes() == manifest
    assert sorted(path.name for path in (small_disk / "models" / "local").iterdir()) == kept
    assert run(capsys, "segment", "--backend", "cpu", "--model", "seg",
               str(image_mirror / "zoo" / "bird_segmentation.bmp"))[0] == 0
