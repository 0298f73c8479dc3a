"""Bad input to `edged detect` ends in one clear line and a documented exit code, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.detect.detector import Detector
from edged.detect.settings import DetectorSettings
from edged.errors import EX_CONFIG, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE, ConfigError

CPU_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
RAW_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_no_nms.tflite"


def edged_detect(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "edged", "detect", "--backend", "cpu", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def edged_lines(stderr: str) -> list[str]:
    """What edged itself printed (the C++ runtime's XNNPACK banner is not ours)."""
    return [line for line in stderr.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    lines = edged_lines(result.stderr)
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("edged detect: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def tiny_classifier() -> bytes:
    """A valid TFLite model that is not a detector: uint8 [1,8,8,3] → RESHAPE → [1,192] "logits".

    Built with the flatbuffer schema that ships with ai-edge-litert, so the test
    needs no TensorFlow.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name: bytes, shape: list[int]):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.UINT8, 0
        return t

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    code.version = 1
    options = schema.ReshapeOptionsT()
    options.newShape = [1, 192]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
    graph = schema.SubGraphT()
    graph.tensors = [tensor(b"image", [1, 8, 8, 3]), tensor(b"logits", [1, 192])]
    graph.inputs, graph.outputs, graph.operators = [0], [1], [op]
    model = schema.ModelT()
    model.version, model.buffers, model.operatorCodes, model.subgraphs = 3, [schema.BufferT()], [code], [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def cat(fetched_data_dir: Path) -> str:
    return str(fetched_data_dir / "samples" / "cat.bmp")


def test_model_not_fetched_says_which_fetch_to_run(tmp_path, cat):
    result = edged_detect(cat, data_dir=tmp_path / "empty")
    assert_one_line(result, EX_UNAVAILABLE, CPU_FILE, "run `edged models fetch ssd_mobilenet_v1_coco_quant`")
    raw = edged_detect("--raw", cat, data_dir=tmp_path / "empty")
    assert_one_line(raw, EX_UNAVAILABLE, "edged models fetch ssd_mobilenet_v1_coco_quant --variant raw")


def test_model_file_that_does_not_exist(tmp_path, fetched_data_dir, cat):
    result = edged_detect("--model-file", str(tmp_path / "nope.tflite"), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_NOINPUT, "model file", "nope.tflite", "does not exist")


@pytest.mark.parametrize("content", ["truncated", "empty", "text", "jpeg"])
def test_corrupt_or_non_tflite_model_file(tmp_path, fetched_data_dir, cat, content):
    model = tmp_path / f"{content}.tflite"
    full = (fetched_data_dir / "models" / CPU_FILE).read_bytes()
    model.write_bytes({"truncated": full[: len(full) // 3], "empty": b"", "text": b"hello, model\n",
                       "jpeg": (fetched_data_dir / "samples" / "owl.jpg").read_bytes()}[content])
    result = edged_detect("--model-file", str(model), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_DATAERR, str(model), "not a usable TFLite model")


def test_corrupt_fetched_model_names_the_digests_and_the_fix(tmp_path, fetched_data_dir, cat):
    data = tmp_path / "data"
    shutil.copytree(fetched_data_dir / "models", data / "models")
    damaged = bytearray((data / "models" / CPU_FILE).read_bytes())
    damaged[-100] ^= 1
    (data / "models" / CPU_FILE).write_bytes(damaged)
    result = edged_detect(cat, data_dir=data)
    assert_one_line(result, EX_DATAERR, "corrupt or not the pinned file",
                    "e4b118e5e4531945de2e659742c7c590f7536f8d0ed26d135abcfe83b4779d13",
                    "run `edged models fetch ssd_mobilenet_v1_coco_quant`")


def test_a_model_that_is_not_a_detector(tmp_path, fetched_data_dir, cat):
    model = tmp_path / "classifier.tflite"
    model.write_bytes(tiny_classifier())
    result = edged_detect("--model-file", str(model), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_DATAERR, "not an SSD detection model", "[(1, 192)]")


def test_raw_model_without_anchors(fetched_data_dir, cat):
    result = edged_detect("--model-file", str(fetched_data_dir / "models" / RAW_FILE), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_DATAERR, "raw SSD outputs (1917 anchors) need an anchors file")


def test_raw_model_file_with_its_anchors_works(fetched_data_dir, cat):
    anchors = fetched_data_dir / "models" / "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_no_nms_anchors.npy"
    result = edged_detect("--json", "--model-file", str(fetched_data_dir / "models" / RAW_FILE), "--anchors",
                          str(anchors), cat, data_dir=fetched_data_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == Path(RAW_FILE).stem  # a user file reports itself, not the manifest default
    assert record["detections"][0]["label"] == "cat"


@pytest.mark.parametrize("variant", ["cpu", "raw"])
def test_label_file_of_the_wrong_length(tmp_path, fetched_data_dir, cat, variant):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing{i}" for i in range(80)) + "\n")
    result = edged_detect("--labels", str(labels), *(["--raw"] if variant == "raw" else []), cat,
                          data_dir=fetched_data_dir)
    assert_one_line(result, EX_DATAERR, str(labels), "has 80 labels", "90 classes")


def test_label_file_that_does_not_exist(tmp_path, fetched_data_dir, cat):
    result = edged_detect("--labels", str(tmp_path / "labels.txt"), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_NOINPUT, "labels file", "does not exist")


def test_unreadable_image_is_reported_and_the_others_still_processed(tmp_path, fetched_data_dir, cat):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    result = edged_detect("--json", str(broken), cat, str(tmp_path / "missing.png"), data_dir=fetched_data_dir)
    assert result.returncode == EX_DATAERR  # the first error's code
    lines = edged_lines(result.stderr)
    assert lines == [f"edged detect: error: image {broken} cannot be decoded " + lines[0].split("decoded ", 1)[1],
                     f"edged detect: error: image {tmp_path / 'missing.png'} does not exist"]
    assert '"label":"cat"' in result.stdout and len(result.stdout.splitlines()) == 1


def test_unknown_model_name(fetched_data_dir, cat):
    result = edged_detect("--model", "ssd_mobilenet_v9", cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_CONFIG, "unknown model 'ssd_mobilenet_v9'", "ssd_mobilenet_v1_coco_quant")


def test_out_of_range_option(fetched_data_dir, cat):
    result = edged_detect("--threshold", "1.5", cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_USAGE, "invalid option", "$.threshold")


def test_unknown_label_in_a_filter(fetched_data_dir):
    with pytest.raises(ConfigError, match="detector.allow_labels: unknown label.*'persn'"):
        Detector.open(DetectorSettings(allow_labels=["persn"]), backend="cpu")


def test_annotate_to_an_unknown_image_type(tmp_path, fetched_data_dir, cat):
    result = edged_detect("--annotate", str(tmp_path / "out.xyz"), cat, data_dir=fetched_data_dir)
    assert_one_line(result, EX_USAGE, "out.xyz", "unknown image type")


def test_no_image_and_no_sample_photos(tmp_path, fetched_data_dir):
    data = tmp_path / "data"
    shutil.copytree(fetched_data_dir / "models", data / "models")
    result = edged_detect(data_dir=data)
    assert_one_line(result, EX_UNAVAILABLE, "no IMAGE given", "run `edged models fetch samples`")
