"""Backend choice: auto falls back to the CPU saying why; edgetpu fails clearly; Edge TPU files never hit the CPU.

The Edge TPU side is exercised up to the hardware boundary with stand-in
libedgetpu libraries (tests/fixtures/edgetpu.py) that fail or run the way the
real one does.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.detect.backends import edgetpu_attached, is_edgetpu_compiled
from edged.detect.detector import Detector
from edged.detect.settings import DetectorSettings
from edged.errors import EX_DATAERR, EX_UNAVAILABLE, DataError, UnavailableError

CPU_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"


@pytest.fixture(scope="module")
def cat(fetched_data_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(fetched_data_dir / "samples" / "cat.bmp").convert("RGB"))


def edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))


def error_lines(stderr: str) -> list[str]:
    """stderr without the runtime's own banner (printed by the C++ runtime, not by edged)."""
    return [line for line in stderr.splitlines() if not line.startswith("INFO: Created TensorFlow Lite")]


def test_auto_on_this_machine_falls_back_to_the_cpu_and_says_why(fetched_data_dir, cat, caplog):
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("this machine has a libedgetpu installed")
    with caplog.at_level(logging.INFO, logger="edged.detect"):
        with Detector.open(DetectorSettings()) as detector:
            assert detector.backend_name.startswith("cpu:litert-") and detector.backend_name.endswith(":xnnpack:1")
            assert detector.runtime.startswith("ai-edge-litert ")
            assert detector.input_size == (300, 300)
            assert "libedgetpu.so.1" in detector.fallback_reason
            assert detector.detect(cat).detections[0].label == "cat"
    fallback_lines = [r.getMessage() for r in caplog.records if "Edge TPU not used" in r.getMessage()]
    assert len(fallback_lines) == 1 and "libedgetpu.so.1" in fallback_lines[0] and "CPU" in fallback_lines[0]


@pytest.mark.parametrize("mode, reason", [("no_device", "no Edge TPU found for device 'usb:1'"),
                                          ("no_symbols", "is not an Edge TPU delegate library")])
def test_standin_that_fails_to_load_falls_back_quietly(fetched_data_dir, edgetpu_standin, mode, reason):
    library = edgetpu_standin(mode)
    result = edged("detect", "--json", "--edgetpu-library", str(library), "--edgetpu-device", "usb:1",
                   str(fetched_data_dir / "samples" / "cat.bmp"))
    assert result.returncode == 0, result.stderr
    assert '"label":"cat"' in result.stdout and '"backend":"cpu:' in result.stdout
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and reason in lines[0], result.stderr  # one line; no "Exception ignored" noise


@pytest.mark.parametrize("mode", ["missing", "no_device"])
def test_forced_edgetpu_without_a_device_exits_69_with_one_line(fetched_data_dir, edgetpu_standin, mode):
    library = "libedgetpu.so.1" if mode == "missing" else str(edgetpu_standin(mode))
    if mode == "missing" and ctypes.util.find_library("edgetpu"):
        pytest.skip("this machine has a libedgetpu installed")
    result = edged("detect", "--backend", "edgetpu", "--edgetpu-library", library,
                   str(fetched_data_dir / "samples" / "cat.bmp"))
    assert result.returncode == EX_UNAVAILABLE
    assert result.stdout == ""
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("edged detect: error: Edge TPU unavailable: "), result.stderr


def test_forced_edgetpu_in_process_raises_unavailable(fetched_data_dir, edgetpu_standin):
    with pytest.raises(UnavailableError, match="no Edge TPU found"):
        Detector.open(DetectorSettings(backend="edgetpu", edgetpu_library=str(edgetpu_standin("no_device"))))


def test_ok_standin_runs_a_cpu_file_through_the_delegate(fetched_data_dir, edgetpu_standin, cat, caplog):
    """The combination the daemon's failover tests use: backend=edgetpu, stand-in 'ok', the CPU file."""
    settings = DetectorSettings(backend="edgetpu", edgetpu_library=str(edgetpu_standin("ok")),
                                edgetpu_model_file=str(fetched_data_dir / "models" / CPU_FILE))
    with caplog.at_level(logging.WARNING, logger="edged.detect"):
        with Detector.open(settings) as detector:
            assert detector.backend_name == "edgetpu:usb"
            assert detector.fallback_reason is None
            top = detector.detect(cat).detections[0]
    assert top.label == "cat" and abs(top.score - 0.719) <= 0.03
    assert any("not compiled for the Edge TPU" in r.getMessage() for r in caplog.records)


def test_auto_with_a_working_tpu_but_no_edgetpu_file_says_to_fetch_it(fetched_data_dir, edgetpu_standin):
    with Detector.open(DetectorSettings(edgetpu_library=str(edgetpu_standin("ok")))) as detector:
        assert detector.backend_name.startswith("cpu:")
        assert "--variant edgetpu" in detector.fallback_reason


def test_edgetpu_compiled_files_never_reach_the_cpu(fetched_data_dir, tmp_path):
    by_name = tmp_path / "ssd_edgetpu.tflite"
    shutil.copyfile(fetched_data_dir / "models" / CPU_FILE, by_name)
    by_content = tmp_path / "compiled.tflite"
    by_content.write_bytes((fetched_data_dir / "models" / CPU_FILE).read_bytes() + b"\0edgetpu-custom-op\0")
    assert is_edgetpu_compiled(by_name) and is_edgetpu_compiled(by_content)
    assert not is_edgetpu_compiled(fetched_data_dir / "models" / CPU_FILE)
    for path in (by_name, by_content):
        with pytest.raises(DataError, match="compiled for the Edge TPU and cannot run on the CPU"):
            Detector.open(DetectorSettings(model_file=str(path)), backend="cpu")
        result = edged("detect", "--model-file", str(path), str(fetched_data_dir / "samples" / "cat.bmp"))
        assert result.returncode == EX_DATAERR
        assert error_lines(result.stderr)[-1].endswith("use the CPU file of the same network")


def standin_crash(library: Path, model: Path, loops: int) -> subprocess.CompletedProcess[str]:
    code = ("import sys, numpy as np\n"
            "from edged.detect.detector import Detector\n"
            "from edged.detect.settings import DetectorSettings\n"
            f"d = Detector.open(DetectorSettings(backend='edgetpu', edgetpu_library={str(library)!r}, "
            f"edgetpu_model_file={str(model)!r}))\n"
            "print('loaded', flush=True)\n"
            f"for _ in range({loops}): d.invoke(np.zeros((300, 300, 3), np.uint8))\n"
            "print('survived', flush=True)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_standin_abort_on_prepare_kills_the_process_like_a_driver_crash(fetched_data_dir, edgetpu_standin):
    result = standin_crash(edgetpu_standin("abort_on_prepare"), fetched_data_dir / "models" / CPU_FILE, 1)
    assert result.returncode == -signal.SIGABRT and "loaded" not in result.stdout


def test_standin_abort_after_ms_crashes_while_running(fetched_data_dir, edgetpu_standin):
    result = standin_crash(edgetpu_standin("abort_after_ms", abort_after_ms=300),
                           fetched_data_dir / "models" / CPU_FILE, 10_000)
    assert result.returncode == -signal.SIGABRT
    assert "loaded" in result.stdout and "survived" not in result.stdout


def test_edgetpu_attached_reads_usb_ids_and_apex_nodes(tmp_path):
    sysfs, dev = tmp_path / "usb", tmp_path / "dev"
    for name, ids in {"1-1": ("1a6e", "089a"), "1-2": ("18d1", "9302"), "1-3": ("046d", "c52b")}.items():
        (sysfs / name).mkdir(parents=True)
        (sysfs / name / "idVendor").write_text(ids[0] + "\n")
        (sysfs / name / "idProduct").write_text(ids[1] + "\n")
    dev.mkdir()
    (dev / "apex_0").touch()
    assert edgetpu_attached(sysfs, dev) == [f"pci:{dev / 'apex_0'}", "usb:1-1", "usb:1-2"]
    assert edgetpu_attached(tmp_path / "none", tmp_path / "none") == []


def test_runtime_is_reported_and_selectable(fetched_data_dir):
    with Detector.open(DetectorSettings(runtime="litert"), backend="cpu") as detector:
        assert detector.runtime == f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"
    if importlib.util.find_spec("tflite_runtime") is None:
        with pytest.raises(UnavailableError, match=r"TFLite runtime tflite_runtime is not installed.*edged\[tflite\]"):
            Detector.open(DetectorSettings(cpu_runtime="tflite_runtime"), backend="cpu")
