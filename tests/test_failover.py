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


# -- the pipelined protocol under failure, on the CPU (two cameras, unpaced: both slots always busy) ---------

def cpu_daemon(broker, data_dir: Path, tmp_path: Path, *, frame_timeout: float = 5.0,
               cameras: tuple[str, ...] = ("cam0", "cam1")) -> tuple[EdgedRun, Subscriber]:
    config = tmp_path / "edged.toml"
    config.write_text(
        '[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
        f'[service]\nframe_timeout_seconds = {frame_timeout}\n'
        + "".join(f'[[cameras]]\nname = "{name}"\nfps = 0\n' for name in cameras))
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=data_dir)
    return run, subscriber


def per_camera(subscriber: Subscriber, cameras: tuple[str, ...] = ("cam0", "cam1")) -> dict[str, list[int]]:
    return {name: [m.json()["seq"] for m in subscriber.on(f"edged/{DEVICE}/{name}/detections")]
            for name in cameras}


def gaps(seqs: list[int]) -> int:
    return sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))


def total_detections(ms) -> int:
    return sum(1 for m in ms if m.topic.endswith("/detections"))


def test_frames_in_flight_when_the_worker_is_killed_are_lost_once_and_order_holds(fetched_data_dir: Path,
                                                                               broker, tmp_path: Path):
    run, subscriber = cpu_daemon(broker, fetched_data_dir, tmp_path)
    try:
        pid = run.worker_pid("cpu:")
        subscriber.wait_for(lambda ms: total_detections(ms) >= 30, 30)
        os.kill(pid, signal.SIGKILL)
        killed_at = len(subscriber.messages)
        replacement = run.worker_pid("cpu:", nth=2)
        assert replacement != pid
        subscriber.wait_for(lambda ms: total_detections(ms[killed_at:]) >= 30, 30)
        time.sleep(1.5)  # a stats message counting everything up to now
        stats = [m.json() for m in subscriber.on(f"edged/{DEVICE}/stats")][-1]
    finally:
        run.stop()
        subscriber.stop()
    seqs = per_camera(subscriber)
    for camera, camera_seqs in seqs.items():
        assert camera_seqs == sorted(set(camera_seqs)), camera  # capture order, none published twice
    lost = sum(gaps(camera_seqs) for camera_seqs in seqs.values())
    assert 1 <= lost <= 2  # exactly the jobs in the dead worker's two slots
    assert stats["frames_dropped"] == lost  # and counted as such (files are never dropped otherwise)
    assert "inference worker cpu:litert" in run.text and "killed by SIGKILL" in run.text


def test_a_hung_worker_is_replaced_within_the_frame_timeout(fetched_data_dir: Path, broker, tmp_path: Path):
    run, subscriber = cpu_daemon(broker, fetched_data_dir, tmp_path, frame_timeout=1.0, cameras=("cam0",))
    try:
        pid = run.worker_pid("cpu:")
        subscriber.wait_for(lambda ms: total_detections(ms) >= 10, 30)
        os.kill(pid, signal.SIGSTOP)
        stopped_at, mark = time.monotonic(), len(subscriber.messages)
        run.wait_log(r"inference worker cpu:\S+ failed: worker pid \d+ gave no answer within 1 s", timeout=10)
        detected = time.monotonic() - stopped_at
        subscriber.wait_for(lambda ms: total_detections(ms[mark:]) >= 5, 30)
        resumed = time.monotonic() - stopped_at
        print(f"hang noticed after {detected:.2f} s, detections resumed after {resumed:.2f} s")
        assert detected < 1.0 + 2.0  # the frame timeout, plus what a loaded test machine adds
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung worker was killed, not left behind
    finally:
        run.stop()
        subscriber.stop()
    seqs = per_camera(subscriber, ("cam0",))["cam0"]
    assert seqs == sorted(set(seqs)) and gaps(seqs) <= 2


# -- auto and the hardware it finds ------------------------------------------------------------------------

def test_auto_runs_the_cpu_online_without_an_edge_tpu_and_takes_a_coral_plugged_in_later(
        fetched_data_dir: Path, edgetpu_standin, cpu_model_file, broker, tmp_path: Path):
    hardware = tmp_path / "hardware"
    hardware.mkdir()
    config = write_config(tmp_path / "edged.toml", edgetpu_standin("ok"), cpu_model_file, retry=60,
                          hardware=hardware)
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir)
    try:
        wait_backend(subscriber, "cpu:", 3)
        status = statuses(subscriber)[-1]
        assert status["state"] == "online" and status["backend"].startswith("cpu:")
        assert status["accelerators"] == []  # no accelerator attached: the CPU is the plan, not a fallback
        assert "no Edge TPU attached" in run.text and "Edge TPU worker" not in run.text

        mark = len(subscriber.messages)
        attach_coral(hardware)  # the Coral is plugged in
        wait_backend(subscriber, "edgetpu:usb", 3, after=mark, timeout=30)
        subscriber.wait_for(lambda ms: any(m.topic == STATUS and m.json()["backend"] == "edgetpu:usb"
                                           for m in ms[mark:]))
        status = statuses(subscriber)[-1]
        assert status["state"] == "online" and status["accelerators"] == ["usb:1-1.2"]
        assert "degraded" not in [s["state"] for s in statuses(subscriber)]
        seqs = [d["seq"] for d in detections(subscriber)]
        assert seqs == sorted(set(seqs)) and max_gap(seqs) == 0  # the switch lost nothing
    finally:
        run.stop()
        subscriber.stop()


def test_auto_with_an_attached_edge_tpu_that_fails_is_degraded(fetched_data_dir: Path, edgetpu_standin,
                                                              cpu_model_file, broker, tmp_path: Path):
    with coral_daemon(edgetpu_standin("no_device"), cpu_model_file, broker, fetched_data_dir, tmp_path,
                      retry=0) as (run, subscriber):
        wait_backend(subscriber, "cpu:", 3)
        subscriber.wait_for(lambda ms: any(m.topic == STATUS for m in ms))
        status = statuses(subscriber)[-1]
        assert status["state"] == "degraded" and status["backend"].startswith("cpu:")
        assert status["accelerators"] == ["usb:1-1.2"]
        assert "status degraded: edgetpu:usb: Edge TPU worker could not start" in run.text


def test_one_of_two_edge_tpus_dying_hands_its_share_to_the_other(fetched_data_dir: Path, edgetpu_standin,
                                                                 cpu_model_file, broker, tmp_path: Path):
    config = write_config(tmp_path / "edged.toml", edgetpu_standin("ok"), cpu_model_file, retry=3, fps=0)
    two = config.read_text().replace('[detector]\n', '[detector]\ndevices = ["usb:0", "usb:1"]\n')
    config.write_text(two)
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir)
    try:
        first = run.worker_pid("edgetpu:usb:0")
        wait_backend(subscriber, "edgetpu:usb:1", 3)
        wait_backend(subscriber, "edgetpu:usb:0", 3)
        mark = len(subscriber.messages)
        os.kill(first, signal.SIGKILL)
        run.wait_log(r"status degraded: edgetpu:usb:0: Edge TPU failed at runtime")
        wait_backend(subscriber, "edgetpu:usb:1", 10, after=mark)
        during = [m.json()["backend"] for m in subscriber.messages[mark:] if m.topic == DETECTIONS]
        assert not any(b.startswith("cpu:") for b in during)  # the other TPU took it all, not the CPU
        back = len(subscriber.messages)
        wait_backend(subscriber, "edgetpu:usb:0", 3, after=back, timeout=30)  # retried after 3 s
        subscriber.wait_for(lambda ms: statuses(subscriber)[-1]["state"] == "online")
    finally:
        run.stop()
        subscriber.stop()
    seqs = [d["seq"] for d in detections(subscriber)]
    assert seqs == sorted(set(seqs)) and gaps(seqs) <= 2
