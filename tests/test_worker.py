"""The inference worker with the real model: shared-memory input slots, results matched to their jobs,
crashes contained. SIGSTOP holds a worker between two jobs, so a test can see a job queued but not started."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.detect.detector import Detector
from edged.detect.preprocess import prepare
from edged.detect.settings import DetectorSettings
from edged.detect.worker import InferenceWorker, WorkerFailed, WorkerResult, WorkerStartError
from edged.errors import EX_UNAVAILABLE
from edged.types import Geometry


def load(image_mirror: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(image_mirror / name).convert("RGB"))


@pytest.fixture
def cpu_worker(fetched_data_dir: Path):
    worker = InferenceWorker(DetectorSettings(backend="cpu"), "cpu")
    worker.start()
    yield worker
    worker.close()


def test_worker_detects_what_the_detector_detects_in_process(cpu_worker: InferenceWorker, image_mirror: Path):
    info = cpu_worker.info
    assert info.backend.startswith("cpu:") and info.model == "ssd_mobilenet_v1_coco_quant"
    assert (info.input_spec.width, info.input_spec.height) == (300, 300)
    assert info.pid == cpu_worker.pid != os.getpid()
    with Detector.open(DetectorSettings(backend="cpu")) as detector:
        for seq, name in enumerate(["cat.bmp", "grace_hopper.bmp", "pets.jpg"], start=1):
            image = load(image_mirror, name)
            tensor, geometry = prepare(image, info.input_spec, "stretch")
            result = cpu_worker.infer(tensor, geometry, seq=seq, timeout=30)
            expected = detector.detect(image).detections
            assert result.seq == seq
            assert [(d.label, d.score) for d in result.detections] == [(d.label, d.score) for d in expected]
            assert result.started_ns < result.invoked_ns <= result.ended_ns
            assert result.inference_ms > 0


def test_letterbox_geometry_travels_to_the_worker(cpu_worker: InferenceWorker, image_mirror: Path):
    image = load(image_mirror, "squat.bmp")
    tensor, geometry = prepare(image, cpu_worker.info.input_spec, "letterbox")
    assert geometry.content_width < 1.0
    result = cpu_worker.infer(tensor, geometry, seq=1, timeout=30)
    assert result.detections and result.detections[0].label == "person"
    assert max(d.box.xmax for d in result.detections) <= 1.05  # mapped to the image, not the padded tensor


def receive_all(worker: InferenceWorker, count: int, timeout: float = 30) -> dict[object, WorkerResult]:
    results: dict[object, WorkerResult] = {}
    while len(results) < count:
        results.update(worker.receive(timeout, hang_after=timeout))
    return results


def labels(result: WorkerResult) -> list[str]:
    return [d.label for d in result.detections]


def test_two_jobs_in_flight_come_back_matched_to_their_tags(cpu_worker: InferenceWorker, image_mirror: Path):
    spec = cpu_worker.info.input_spec
    cat, _ = prepare(load(image_mirror, "cat.bmp"), spec)
    owl, _ = prepare(load(image_mirror, "owl.jpg"), spec)
    assert cpu_worker.submit(cat, Geometry(), seq=1, tag="cat")
    assert cpu_worker.submit(owl, Geometry(), seq=2, tag="owl")
    assert cpu_worker.free_slots == 0
    assert not cpu_worker.submit(cat, Geometry(), seq=3, tag="third")  # two slots: the third must wait
    results = receive_all(cpu_worker, 2)
    assert labels(results["cat"])[0] == "cat" and results["cat"].seq == 1
    assert labels(results["owl"])[0] == "bird" and results["owl"].seq == 2
    assert results["cat"].ended_ns <= results["owl"].started_ns  # one after the other, in the order queued
    assert cpu_worker.free_slots == 2 and cpu_worker.outstanding == 0


def test_a_queued_job_is_replaced_by_a_newer_frame_of_its_camera(cpu_worker: InferenceWorker,
                                                                  image_mirror: Path):
    spec = cpu_worker.info.input_spec
    cat, _ = prepare(load(image_mirror, "cat.bmp"), spec)
    owl, _ = prepare(load(image_mirror, "owl.jpg"), spec)
    os.kill(cpu_worker.pid, signal.SIGSTOP)  # held between jobs: whatever is submitted now waits, unstarted
    try:
        assert cpu_worker.submit(cat, Geometry(), seq=1, tag="old", stream="door")
        assert cpu_worker.has_queued("door") and not cpu_worker.has_queued("yard")
        assert cpu_worker.replace("yard", owl, Geometry(), seq=1, tag="other camera") == (False, None)
        assert cpu_worker.replace("door", owl, Geometry(), seq=2, tag="new") == (True, "old")
    finally:
        os.kill(cpu_worker.pid, signal.SIGCONT)
    (tag, result), = cpu_worker.receive(30, hang_after=30)
    assert (tag, result.seq, labels(result)[0]) == ("new", 2, "bird")  # the newer frame ran in its place
    assert cpu_worker.outstanding == 0 and not cpu_worker.has_queued("door")
    assert cpu_worker.replace("door", cat, Geometry(), seq=3, tag="late") == (False, None)  # none waiting


def test_jobs_in_flight_when_the_worker_is_killed_are_all_handed_back_as_lost(cpu_worker: InferenceWorker,
                                                                              image_mirror: Path):
    tensor, geometry = prepare(load(image_mirror, "cat.bmp"), cpu_worker.info.input_spec)
    os.kill(cpu_worker.pid, signal.SIGSTOP)
    cpu_worker.submit(tensor, geometry, seq=7, tag="a")
    cpu_worker.submit(tensor, geometry, seq=8, tag="b")
    os.kill(cpu_worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerFailed, match=r"died while running frame 7 \(\+1 queued\) \(killed by SIGKILL"):
        cpu_worker.receive(30, hang_after=30)
    assert cpu_worker.take_lost() == ["a", "b"] and cpu_worker.take_lost() == []
    assert cpu_worker.free_slots == 0  # a failed worker takes no more jobs


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV])
def test_a_worker_killed_by_a_signal_is_noticed_by_the_parent(cpu_worker: InferenceWorker, image_mirror: Path,
                                                              signum: int):
    tensor, geometry = prepare(load(image_mirror, "cat.bmp"), cpu_worker.info.input_spec)
    cpu_worker.infer(tensor, geometry, seq=1, timeout=30)
    os.kill(cpu_worker.pid, signum)
    cpu_worker._process.join(10)  # it dies between frames, as libedgetpu's USB errors can strike
    with pytest.raises(WorkerFailed, match=f"died while idle .killed by {signal.Signals(signum).name}"):
        cpu_worker.infer(tensor, geometry, seq=2, timeout=30)


def test_a_hung_worker_times_out_and_is_killed_on_close(cpu_worker: InferenceWorker, image_mirror: Path):
    tensor, geometry = prepare(load(image_mirror, "cat.bmp"), cpu_worker.info.input_spec)
    pid = cpu_worker.pid
    os.kill(pid, signal.SIGSTOP)
    with pytest.raises(WorkerFailed, match="no answer within 1 s"):
        cpu_worker.infer(tensor, geometry, seq=1, timeout=1)
    cpu_worker.close(timeout=0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_native_abort_while_loading_on_the_tpu_kills_only_the_worker(fetched_data_dir: Path, edgetpu_standin,
                                                                     model_file: Path):
    settings = DetectorSettings(backend="edgetpu", edgetpu_library=str(edgetpu_standin("abort_on_prepare")),
                                edgetpu_model_file=str(model_file))
    worker = InferenceWorker(settings, "edgetpu")
    with pytest.raises(WorkerFailed, match="died while loading the model .killed by SIGABRT"):
        worker.start()
    worker.close()


def test_no_tpu_and_missing_model_are_start_errors_with_exit_codes(fetched_data_dir: Path, edgetpu_standin,
                                                                   tmp_path: Path, monkeypatch):
    settings = DetectorSettings(backend="edgetpu", edgetpu_library=str(edgetpu_standin("no_device")))
    with pytest.raises(WorkerStartError, match="Edge TPU unavailable") as no_tpu:
        InferenceWorker(settings, "edgetpu").start()
    assert no_tpu.value.exit_code == EX_UNAVAILABLE
    monkeypatch.setenv("EDGED_DATA_DIR", str(tmp_path))
    with pytest.raises(WorkerStartError, match="edged models fetch") as missing:
        InferenceWorker(DetectorSettings(backend="cpu"), "cpu").start()
    assert missing.value.exit_code == EX_UNAVAILABLE


@pytest.fixture
def model_file(fetched_data_dir: Path) -> Path:
    """The CPU model file, which the stand-in 'Edge TPU' runs through its do-nothing delegate."""
    files = sorted((fetched_data_dir / "models").glob("*postprocess*.tflite"))
    assert files, list((fetched_data_dir / "models").iterdir())
    return files[0]
