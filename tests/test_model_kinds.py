"""Model kinds: the manifest pins the zoo, fetch finds it in the mirror, each command refuses other kinds.

A classifier given to `detect`, a detector given to `classify`, a model with
more than one input: one line on stderr, exit 65, nothing run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.detect import fetch
from edged.detect.models import load_manifest
from edged.errors import EX_DATAERR
from tests.tflite_models import with_state_input

REPO = Path(__file__).parents[1]
CORAL = "https://raw.githubusercontent.com/google-coral/test_data/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
SSD_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
OUTPUTS = {"detector": {"postprocess", "raw_ssd"}, "classifier": {"scores"},
           "segmenter": {"class_map", "pixel_scores"}}
# Coral's label files, by git blob id (shared/models/zoo/README.md): committed byte-identical.
LABEL_BLOBS = {"imagenet_labels.txt": "0f975ffd415baaea2267b4363717daff56451ad0",
               "inat_bird_labels.txt": "dfe4777e80d5086d4dfc047c2ee251924a58a401",
               "pascal_voc_segmentation_labels.txt": "00838d4c61875e7c06e89318e02b4c32c193aab7"}


def edged(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def one_line(result: subprocess.CompletedProcess[str], command: str, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("INFO: Created TensorFlow Lite")]
    assert result.returncode == EX_DATAERR, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"edged {command}: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_every_model_has_outputs_of_its_kind_and_every_kind_a_default():
    manifest = load_manifest()
    for name, model in manifest.models.items():
        assert {variant.output for variant in model.variants().values()} <= OUTPUTS[model.kind], name
    for kind in OUTPUTS:
        assert manifest.model(manifest.default_for(kind)).kind == kind


@pytest.mark.parametrize("name", ["mobilenet_v2_1.0_224_quant", "mobilenet_v2_1.0_224_inat_bird_quant",
                                  "deeplabv3_mnv2_pascal_quant"])
def test_zoo_models_are_pinned_to_coral_files_with_edge_tpu_builds(name):
    model = load_manifest().model(name)
    assert model.cpu and model.cpu.git_blob and model.cpu.sha256 and model.cpu.size
    assert model.edgetpu and model.edgetpu.git_blob and model.edgetpu.file == f"{name}_edgetpu.tflite"
    for variant in (model.cpu, model.edgetpu):
        assert variant.url == CORAL + variant.file


@pytest.mark.parametrize(("name", "blob"), LABEL_BLOBS.items())
def test_label_files_are_coral_files_byte_for_byte(name, blob):
    data = (REPO / "models" / name).read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob


def test_models_fetch_finds_the_zoo_one_folder_down_in_a_mirror(model_mirror, tmp_path):
    names = ["mobilenet_v2_1.0_224_quant", "mobilenet_v2_1.0_224_inat_bird_quant",
             "deeplabv3_mnv2_pascal_quant"]
    result = edged("models", "fetch", *names, "--offline", "--mirror", str(model_mirror), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"from {model_mirror / 'zoo'}/") == 3
    listing = edged("models", "list", data_dir=tmp_path).stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in listing if line.split() and line.split()[0] in names}
    assert rows["mobilenet_v2_1.0_224_quant"][2:5] == ["classifier", "cpu", "verified"]
    assert rows["deeplabv3_mnv2_pascal_quant"][2:5] == ["segmenter", "cpu", "verified"]


def test_a_wrong_copy_one_folder_down_is_skipped_for_the_right_one(model_mirror, tmp_path):
    entry = load_manifest().model("deeplabv3_mnv2_pascal_quant").cpu
    mirror = tmp_path / "mirror"
    (mirror / "a-older").mkdir(parents=True)
    (mirror / "a-older" / entry.file).write_bytes(b"an older export of the same name")
    (mirror / "zoo").mkdir()
    shutil.copy(model_mirror / "zoo" / entry.file, mirror / "zoo" / entry.file)
    path, origin = fetch.fetch_file(entry, tmp_path / "data", [str(mirror)], offline=True,
                                    progress_stream=open(os.devnull, "w"))
    assert origin == str(mirror / "zoo" / entry.file)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256


def test_a_classifier_given_to_detect_is_refused(zoo_data_dir, image_mirror):
    cat = str(image_mirror / "cat.bmp")
    by_name = edged("detect", "--backend", "cpu", "--model", "mobilenet_v2_1.0_224_quant", cat,
                    data_dir=zoo_data_dir)
    one_line(by_name, "detect", "is a classifier, not a detector", "edged classify")
    file = zoo_data_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"
    by_file = edged("detect", "--backend", "cpu", "--model-file", str(file), cat, data_dir=zoo_data_dir)
    one_line(by_file, "detect", "not an SSD detection model", "[(1, 1001)]", "classifier", "edged classify")


def test_a_detector_given_to_classify_or_segment_is_refused(zoo_data_dir, image_mirror):
    cat = str(image_mirror / "cat.bmp")
    by_name = edged("classify", "--backend", "cpu", "--model", "ssd_mobilenet_v1_coco_quant", cat,
                    data_dir=zoo_data_dir)
    one_line(by_name, "classify", "is a detector, not a classifier", "edged detect")
    ssd = str(zoo_data_dir / "models" / SSD_FILE)
    by_file = edged("classify", "--backend", "cpu", "--model-file", ssd, cat, data_dir=zoo_data_dir)
    one_line(by_file, "classify", "not a classifier", "SSD detection model", "edged detect")
    segmenting = edged("segment", "--backend", "cpu", "--model", "mobilenet_v2_1.0_224_quant", cat,
                       data_dir=zoo_data_dir)
    one_line(segmenting, "segment", "is a classifier, not a segmenter", "edged classify")


@pytest.mark.parametrize("command", ["detect", "classify"])
def test_a_model_with_a_state_input_is_refused_not_run_with_zeroed_state(zoo_data_dir, image_mirror, tmp_path,
                                                                         command):
    model = tmp_path / "recurrent.tflite"
    model.write_bytes(with_state_input())
    result = edged(command, "--backend", "cpu", "--model-file", str(model), str(image_mirror / "cat.bmp"),
                   data_dir=zoo_data_dir)
    one_line(result, command, str(model), "2 inputs (image, state)")
