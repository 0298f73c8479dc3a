"""Bad input ends in one clear line and a documented exit code, never a traceback.

The corpus (tests/bad_inputs.txt, one row per bad input: exit code, phrase,
command line, TOML) runs through `edged config check` (in-process), `edged run`
and `edged detect` (subprocesses, a few at a time); the tests below it cover
what needs more than a row.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from edged import cli
from edged.detect.detector import Detector
from edged.detect.settings import DetectorSettings
from edged.errors import EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_USAGE, ConfigError
from tests import bad_files

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).with_name("bad_inputs.txt")
PLACEHOLDER = re.compile(r"\{(config|tmp|samples)\}|\{(image|model|video|images):([\w,]+)\}")
ERROR_LINE = re.compile(r"^edged(?: [a-z ]+)?: error: ")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ")  # edged run's log


@dataclass(frozen=True)
class Row:
    line: int
    exit_code: int
    phrase: str
    command: str
    toml: str

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.command.split()[0]}"

    @property
    def in_process(self) -> bool:
        return self.command.startswith("config check")


def corpus() -> list[Row]:
    rows = []
    for number, text in enumerate(CORPUS.read_text().splitlines(), start=1):
        if not text.strip() or text.startswith("#"):
            continue
        fields = [field.strip() for field in re.split(r" \|(?: |$)", text, maxsplit=3)]
        code, phrase, command, toml = fields + [""] * (4 - len(fields))
        rows.append(Row(number, int(code), phrase, command, toml))
    return rows


ROWS = corpus()


def materialize(row: Row, tmp: Path, data: Path) -> tuple[list[str], str]:
    """The row's argv (without `edged`) and its phrase, with every placeholder made real under `tmp`."""

    def real(match: re.Match) -> str:
        name, kind, which = match.groups()
        if name == "config":
            config = tmp / "edged.toml"
            config.write_text(PLACEHOLDER.sub(real, row.toml) + "\n")
            return str(config)
        if name == "tmp":
            return str(tmp)
        if name == "samples":
            return str(data / "samples")
        if kind == "images":
            directory = tmp / ("pictures-" + which.replace(",", "-"))
            for picture in which.split(","):
                bad_files.make("image", picture, directory, data)
            return str(directory)
        return str(bad_files.make(kind, which, tmp, data))

    argv = [PLACEHOLDER.sub(real, word) for word in shlex.split(row.command)]
    return argv, PLACEHOLDER.sub(real, row.phrase)


def run_in_process(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return code, err.getvalue()


def run_subprocess(argv: list[str], data: Path) -> tuple[int, str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data)}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    try:
        done = subprocess.run([sys.executable, "-m", "edged", *argv], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:  # it passed every check and ran: that row fails, not the others
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return -1, stderr + "\n(still running after 60 s: killed)"
    return done.returncode, done.stderr


@pytest.fixture(scope="module")
def corpus_results(fetched_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[int, tuple[int, str, str]]:
    """line → (exit code, stderr, phrase) for every row; the subprocess rows run three at a time."""
    results: dict[int, tuple[int, str, str]] = {}
    jobs = []
    for row in ROWS:
        argv, phrase = materialize(row, tmp_path_factory.mktemp(row.id), fetched_data_dir)
        if row.in_process:
            results[row.line] = (*run_in_process(argv), phrase)
        else:
            jobs.append((row, argv, phrase))
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {row.line: (pool.submit(run_subprocess, argv, fetched_data_dir), phrase)
                   for row, argv, phrase in jobs}
        for line, (future, phrase) in futures.items():
            results[line] = (*future.result(), phrase)
    return results


def test_the_corpus_is_well_formed():
    assert len(ROWS) > 60
    assert all(row.exit_code in (2, 65, 66, 69, 73, 78) for row in ROWS)
    assert len({(row.command, row.toml) for row in ROWS}) == len(ROWS), "a row is listed twice"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_bad_input_gets_one_clear_line_and_its_exit_code(row: Row, corpus_results):
    code, stderr, phrase = corpus_results[row.line]
    shown = f"line {row.line}: edged {row.command} | {row.toml}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and "internal error" not in stderr, shown
    lines = [line for line in stderr.splitlines()
             if line.strip() and not line.startswith("INFO: Created TensorFlow Lite")]  # the runtime's banner
    assert lines and ERROR_LINE.match(lines[-1]) and phrase in lines[-1], shown
    assert code == row.exit_code, shown
    if row.exit_code == EX_USAGE:
        return  # argparse prints its usage lines first
    others = [line for line in lines[:-1] if not LOG_LINE.match(line)]
    assert others == [], shown

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
