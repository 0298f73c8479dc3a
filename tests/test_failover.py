"""Edge TPU → CPU failover and back, with `edged run` as a subprocess and the libedgetpu stand-in.

The stand-in (tests/fixtures/edgetpu.py) is a real delegate library: in "ok" mode
the model runs "through" it (on the CPU kernels), so the daemon believes it runs
on `edgetpu:usb`; in the abort modes it kills its process with SIGABRT the way a
libedgetpu USB error does. `auto` looks for Edge TPU hardware before it loads
the library, so each daemon gets a hardware root with a USB Coral laid out as
sysfs shows one. The frames come from the sample photos, which are files: they
are never dropped at the hand-off, so every gap in the published sequence
numbers is a frame lost to a failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.edged_process import EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Subscriber, assert_valid_payloads
from tests.fixtures.edgetpu import attach_coral

DEVICE = "pi-coral"
DETECTIONS = f"edged/{DEVICE}/cam0/detections"
STATUS = f"edged/{DEVICE}/status"


@pytest.fixture
def cpu_model_file(fetched_data_dir: Path) -> Path:
    return next((fetched_data_dir / "models").glob("*postprocess*.tflite"))


@pytest.fixture
def broker(mosquitto):
    return mosquitto()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


def write_config(path: Path, library: Path, model_file: Path, *, retry: float, fps: float = 10,
                 hardware: Path | None = None) -> Path:
    """An `auto` config with the stand-in library; `hardware`: its hardware root (default: one Coral)."""
    if hardware is None:
        hardware = path.parent / "hardware"
        attach_coral(hardware)
    path.write_text(
        f'[detector]\nbackend = "auto"\nedgetpu_library = "{library}"\nedgetpu_model_file = "{model_file}"\n'
        f'tpu_retry_seconds = {retry}\nhardware_root = "{hardware}"\n[[cameras]]\nfps = {fps}\n'
        f'[publish]\nstats_interval_seconds = 1.0\n')
    return path


@contextmanager
def coral_daemon(library: Path, model_file: Path, broker, data_dir: Path, tmp_path: Path, *, retry: float,
                 notify: NotifyListener | None = None) -> Iterator[tuple[EdgedRun, Subscriber]]:
    """`edged run` in auto mode with a stand-in libedgetpu, and a subscriber to everything it publishes."""
    config = write_config(tmp_path / "edged.toml", library, model_file, retry=retry)
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=data_dir, notify=notify)
    try:
        yield run, subscriber
    finally:
        run.stop()
        subscriber.stop()


def statuses(subscriber: Subscriber) -> list[dict]:
    return [m.json() for m in subscriber.on(STATUS)]


def detections(subscriber: Subscriber) -> list[dict]:
    return [m.json() for m in subscriber.on(DETECTIONS)]


def wait_backend(subscriber: Subscriber, prefix: str, count: int, after: int = 0,
                 timeout: float = 30) -> None:
    subscriber.wait_for(lambda ms: sum(1 for m in ms[after:] if m.topic == DETECTIONS
                                       and m.json()["backend"].startswith(prefix)) >= count, timeout)


def max_gap(seqs: list[int]) -> int:
    """Frames missing between consecutive published sequence numbers."""
    return max((b - a - 1 for a, b in zip(seqs, seqs[1:])), default=0)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGABRT])
def test_killed_tpu_worker_fails_over_to_cpu_and_comes_back(fetched_data_dir: Path, edgetpu_standin,
                                                            cpu_model_file, broker, tmp_path: Path, notify,
                                                            signum: int):
    with coral_daemon(edgetpu_standin("ok"), cpu_model_file, broker, fetched_data_dir, tmp_path, retry=3,
                      notify=notify) as (run, subscriber):
        notify.wait_for("READY=1")
        tpu_pid = run.worker_pid("edgetpu:usb")
        run.wait_log(r"standby CPU worker pid \d+ ready")
        wait_backend(subscriber, "edgetpu:usb", 3)
        assert statuses(subscriber)[-1]["state"] == "online"
        assert statuses(subscriber)[-1]["backend"] == "edgetpu:usb"

        mark = len(subscriber.messages)
        killed_at = time.monotonic()
        os.kill(tpu_pid, signum)
        wait_backend(subscriber, "cpu:", 3, after=mark)
        print(f"first CPU detections {time.monotonic() - killed_at:.2f} s after the kill")
        subscriber.wait_for(lambda ms: any(m.topic == STATUS and m.json()["state"] == "degraded"
                                           for m in ms[mark:]))
        degraded = [s for s in statuses(subscriber) if s["state"] == "degraded"][-1]
        assert degraded["backend"].startswith("cpu:") and degraded["version"]
        assert f"killed by {signal.Signals(signum).name}" in run.text
        assert run.process.poll() is None  # the daemon itself never noticed more than a failed frame

        back = len(subscriber.messages)
        wait_backend(subscriber, "edgetpu:usb", 3, after=back, timeout=30)  # the retry found the "TPU" again
        assert statuses(subscriber)[-1]["state"] == "online"
        assert "Edge TPU is back" in run.text

        seqs = [d["seq"] for d in detections(subscriber)]
        assert seqs == sorted(seqs)
        assert max_gap(seqs) <= 1  # at most the frame in flight was lost
        assert assert_valid_payloads(subscriber.messages) > 10


def test_native_abort_at_runtime_keeps_detections_coming_from_the_cpu(fetched_data_dir: Path, edgetpu_standin,
                                                                     cpu_model_file, broker, tmp_path: Path):
    library = edgetpu_standin("abort_after_ms", abort_after_ms=2500)
    with coral_daemon(library, cpu_model_file, broker, fetched_data_dir, tmp_path,
                      retry=0) as (run, subscriber):
        wait_backend(subscriber, "edgetpu:usb", 2)
        run.wait_log(r"inference worker edgetpu:usb failed: .*killed by SIGABRT")
        mark = len(subscriber.messages)
        wait_backend(subscriber, "cpu:", 10, after=mark)
        states = [s["state"] for s in statuses(subscriber)]
        assert states[0] == "online" and states[-1] == "degraded"
        stats = [m.json() for m in subscriber.on(f"edged/{DEVICE}/stats")]
        assert stats and stats[-1]["state"] == "degraded" and stats[-1]["backend"].startswith("cpu:")
        seqs = [d["seq"] for d in detections(subscriber)]
        assert max_gap(seqs) <= 1


def test_tpu_crashing_while_loading_starts_degraded_on_the_cpu(fetched_data_dir: Path, edgetpu_standin,
                                                                cpu_model_file, broker, tmp_path: Path):
    library = edgetpu_standin("abort_on_prepare")
    with coral_daemon(library, cpu_model_file, broker, fetched_data_dir, tmp_path,
                      retry=0) as (run, subscriber):
        wait_backend(subscriber, "cpu:", 3)
        subscriber.wait_for(lambda ms: any(m.topic == STATUS for m in ms))
        status = statuses(subscriber)[-1]
        assert status["state"] == "degraded" and status["backend"].startswith("cpu:")
        assert "Edge TPU worker failed while loading the model" in run.text and "SIGABRT" in run.text
