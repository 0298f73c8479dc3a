"""The service's small parts with real OS objects: a unix datagram socket as NOTIFY_SOCKET, stderr as a
journal stream, and threads handing frames over."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from edged.service.handoff import LatestSlots
from edged.service.journal import PriorityFormatter, make_handler, stderr_is_journal
from edged.service.stats import PipelineStats
from edged.service.systemd import Notifier, Watchdog


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def test_notifier_speaks_the_datagram_protocol(notify_socket):
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("cpu · 12.5 fps")
    assert sock.recv(4096) == "READY=1\nSTATUS=cpu · 12.5 fps".encode()
    notifier.status("degraded")
    assert sock.recv(4096) == b"STATUS=degraded"
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.reloading()
    assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")


def test_abstract_socket_address():
    name = f"edged-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("x")
        assert sock.recv(100) == b"STATUS=x"


def test_without_systemd_everything_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready("x")
    assert not Watchdog(notifier).kick()


def test_watchdog_pings_only_when_armed_and_at_most_every_half_interval(notify_socket):
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    watchdog = Watchdog(notifier)
    assert watchdog.interval == pytest.approx(0.2)
    assert not watchdog.kick()  # not armed before READY
    watchdog.arm()
    sent = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        sent += watchdog.kick()
        time.sleep(0.01)
    assert 4 <= sent <= 6
    sock.settimeout(0.1)
    received = []
    try:
        while True:
            received.append(sock.recv(100))
    except socket.timeout:
        pass
    assert received == [b"WATCHDOG=1"] * sent


def test_watchdog_for_another_pid_is_ignored(notify_socket):
    path, _ = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_seconds == 0 and not Watchdog(notifier).enabled


def test_journal_stream_detection_and_priority_prefixes(tmp_path: Path):
    log_file = (tmp_path / "stderr").open("w+")
    st = os.fstat(log_file.fileno())
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    assert stderr_is_journal(log_file, env)
    assert not stderr_is_journal(log_file, {"JOURNAL_STREAM": "1:2"})
    assert not stderr_is_journal(log_file, {})
    record = logging.LogRecord("edged.x", logging.WARNING, __file__, 1, "camera %s gone", ("cam0",), None)
    assert PriorityFormatter("%(name)s: %(message)s").format(record) == "<4>edged.x: camera cam0 gone"
    handler = make_handler(device_id="pi", stream=log_file, environ=env)
    assert type(handler).__name__ in ("JournalHandler", "StreamHandler")
    plain = make_handler(device_id="pi", stream=log_file, environ={})
    assert isinstance(plain, logging.StreamHandler) and not isinstance(plain.formatter, PriorityFormatter)


def test_stderr_priority_prefixes_without_systemd_python(tmp_path: Path, monkeypatch):
    log_file = (tmp_path / "stderr").open("w+")
    st = os.fstat(log_file.fileno())
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # as on a machine without systemd-python
    environ = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    handler = make_handler(device_id="pi", stream=log_file, environ=environ)
    logger = logging.getLogger("edged.test.journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("worker died\nsecond line")
    finally:
        logger.removeHandler(handler)
    log_file.seek(0)
    assert log_file.read() == "<3>edged.test.journal: worker died\n<3>second line\n"


def test_latest_slot_drops_stale_items_and_counts_them():
    dropped = []
    slots: LatestSlots[int] = LatestSlots(on_drop=lambda key, item: dropped.append((key, item)))
    assert not slots.put("a", 1)
    assert slots.put("a", 2)
    assert slots.put("a", 3)
    assert slots.take(0) == ("a", 3)
    assert dropped == [("a", 1), ("a", 2)]
    assert slots.take(0.01) is None


def test_the_camera_that_waited_longest_goes_first():
    slots: LatestSlots[int] = LatestSlots()
    slots.put("a", 1)
    slots.put("b", 1)
    slots.put("a", 2)  # a keeps its place in line although its frame was replaced
    assert [slots.take(0)[0], slots.take(0)[0]] == ["a", "b"]


def test_put_wait_blocks_until_taken_without_dropping():
    slots: LatestSlots[int] = LatestSlots(on_drop=lambda *_: pytest.fail("a file source must not drop"))
    stop = threading.Event()
    produced = []

    def produce():
        for item in range(5):
            if slots.put_wait("file", item, stop):
                produced.append(item)

    producer = threading.Thread(target=produce)
    producer.start()
    taken = [slots.take(2)[1] for _ in range(5)]
    producer.join(2)
    assert taken == [0, 1, 2, 3, 4] == produced
    slots.put_wait("file", 9, stop)
    stop.set()
    assert not slots.put_wait("file", 10, stop)  # full and stopping: gives up instead of blocking


def test_stats_window_percentiles_and_per_camera_counts():
    stats = PipelineStats(window_seconds=10)
    now = time.monotonic_ns()
    for index in range(100):
        stats.record("front", float(index + 1), now)
    stats.record("back", 50.0, now)
    stats.add_dropped("front", 3)
    stats.set_state("back", "reconnecting")
    snap = stats.snapshot()
    assert snap.frames_processed == 101 and snap.frames_dropped == 3
    assert snap.inference_p50_ms == pytest.approx(50.0, abs=1)
    assert snap.inference_p95_ms == pytest.approx(95.0, abs=1)
    assert snap.cameras["front"].frames_dropped == 3 and snap.cameras["back"].source_state == "reconnecting"
    old = PipelineStats(window_seconds=0.001)
    old.record("front", 5.0, time.monotonic_ns() - 10**9)
    assert old.snapshot().fps == 0  # outside the window
