"""The broker link tells the truth: silent rejections and missing brokers are logged (at a low rate,
never silent) and counted; `health()` notices a dead network thread or a stuck session; a clean stop
never leaves a retained `online`."""

from __future__ import annotations

import ctypes
import logging
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from edged.publish import link
from edged.publish.link import Backoff
from edged.publish.mosquitto import free_port
from edged.publish.publisher import Publisher
from edged.publish.settings import MqttSettings, PublishSettings
from tests.edged_process import EdgedRun, NotifyListener
from tests.fixtures.broker import Subscriber
from tests.fixtures.publisher_proc import PERSON, frame
from tests.fixtures.rawbroker import DISCONNECT, EOF, PUBLISH, raw_server


def publisher_for(url: str, **mqtt) -> Publisher:
    mqtt.setdefault("reconnect_min_seconds", 0.2)
    mqtt.setdefault("reconnect_max_seconds", 1.0)
    publisher = Publisher(MqttSettings(brokers=[url], **mqtt), PublishSettings(), device_id="pi1",
                          version="1.0")
    publisher.start(backend="cpu:test", model="m")
    return publisher


def wait_record(caplog, phrase: str, timeout: float) -> logging.LogRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if phrase in record.getMessage():
                return record
        time.sleep(0.05)
    raise AssertionError(f"{phrase!r} not logged in {timeout} s: {[r.getMessage() for r in caplog.records]}")


@pytest.mark.parametrize(("protocol", "hint"), [("5", 'set mqtt.protocol = "3.1.1"'),
                                                ("3.1.1", "see the broker's log")])
def test_a_broker_closing_after_connect_is_a_warning_within_10_s_and_counted(caplog, protocol, hint):
    caplog.set_level(logging.INFO, logger="edged.mqtt")
    with raw_server("closes") as server:
        publisher = publisher_for(server.url, protocol=protocol)
        try:
            record = wait_record(caplog, "without a CONNACK", timeout=10)
            stats, status = publisher.link_stats(), publisher.link
        finally:
            publisher.stop(timeout=0.5)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert server.url in message and f"MQTT {protocol} CONNECT" in message and hint in message
    assert stats.closed_before_connack >= 1 and stats.state == "rejected" and stats.connects == 0
    assert status.startswith(f"MQTT rejected ({server.url}: the broker closed the connection")


def test_a_broker_that_never_answers_connect_is_reported_after_keepalive(caplog):
    caplog.set_level(logging.INFO, logger="edged.mqtt")
    with raw_server("silent") as server:
        publisher = publisher_for(server.url, keepalive_seconds=5)
        try:
            record = wait_record(caplog, "no CONNACK within 5 s of the MQTT 5 CONNECT", timeout=12)
            stats = publisher.link_stats()
        finally:
            publisher.stop(timeout=0.5)
    assert server.url in record.getMessage() and stats.closed_before_connack >= 1


def test_no_broker_is_reminded_at_a_low_rate_not_per_attempt(caplog, monkeypatch):
    monkeypatch.setattr(link, "REMINDER_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger="edged.mqtt")
    url = f"mqtt://[::1]:{free_port()}"
    publisher = publisher_for(url, reconnect_min_seconds=0.05, reconnect_max_seconds=0.1)
    time.sleep(3.5)
    stats, status = publisher.link_stats(), publisher.link
    publisher.stop(timeout=0.5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[0] == f"MQTT {url}: connection refused"
    reminders = [w for w in warnings if w.startswith("MQTT still no broker session after")]
    assert 2 <= len(reminders) <= 4 and f"last: {url}: connection refused" in reminders[-1]
    assert stats.failed_attempts > 10 > len(warnings)  # attempts every ~0.1 s, a line every second
    assert stats.state == "no_broker" and status == f"no broker ({url}: connection refused)"


def test_edged_run_without_a_broker_says_so_in_its_status(fetched_data_dir: Path, tmp_path: Path):
    notify = NotifyListener(tmp_path)
    url = f"mqtt://[::1]:{free_port()}"
    run = EdgedRun(["--backend", "cpu", "--broker", url, "--device-id", "pi-nobroker"],
                   data_dir=fetched_data_dir, notify=notify)
    try:
        notify.wait_for("READY=1", timeout=30)
        deadline = time.monotonic() + 15
        while not any(f"no broker ({url}: connection refused)" in line for line in notify.lines()):
            assert time.monotonic() < deadline, notify.lines()[-5:]
            time.sleep(0.1)
        run.wait_log(re.escape(f"WARNING edged.mqtt: MQTT {url}: connection refused"))
        run.signal(signal.SIGTERM)
        assert run.wait(10) == 0
        assert "MQTT stopping while disconnected" in run.text
    finally:
        run.stop()
        notify.close()


class Injected(Exception):
    """Raised inside paho's network thread, as a bug in a callback would."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_reports_a_dead_network_thread(mosquitto):
    broker = mosquitto()
    publisher = publisher_for(f"mqtt://[::1]:{broker.port}")
    assert publisher.wait_connected(10) and publisher.health() is None
    thread = next(t for t in threading.enumerate() if t.name == "paho-mqtt-client-edged-pi1")
    raise_in = ctypes.pythonapi.PyThreadState_SetAsyncExc
    for _ in range(10):  # an injection that lands inside one of paho's own `except Exception` blocks is swallowed
        assert raise_in(ctypes.c_ulong(thread.ident), ctypes.py_object(Injected)) == 1
        thread.join(1)
        if not thread.is_alive():
            break
    problem = publisher.health()
    publisher.stop(timeout=0.5)
    assert problem is not None and problem.startswith("MQTT network thread died")


def test_health_reports_a_session_that_confirms_nothing():
    """A broker that answers CONNECT and pings but acknowledges no PUBLISH: paho stays "connected"."""
    with raw_server("stuck") as server:
        publisher = publisher_for(server.url, keepalive_seconds=5)
        try:
            assert publisher.wait_connected(5)
            started, problem = time.monotonic(), None
            while problem is None and time.monotonic() - started < 25:
                publisher.publish_frame("cam0", frame(1), [PERSON], inference_ms=1, backend="cpu", model="m")
                if time.monotonic() - started < 2 * 5 - 1:
                    assert publisher.health() is None  # within paho's own keepalive reach: not yet a stall
                problem = publisher.health()
                time.sleep(0.5)
            assert publisher.connected
        finally:
            publisher.stop(timeout=0.5)
    assert problem is not None and "confirmed nothing for" in problem and "limit 15 s" in problem, problem


def late_status(broker) -> dict:
    late = Subscriber("::1", broker.port, ("edged/pi1/status",))
    try:
        return late.wait_topic("edged/pi1/status")[-1].json()
    finally:
        late.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_an_unconfirmed_offline_ends_the_session_with_the_will(caplog, protocol):
    """A normal DISCONNECT makes the broker discard the Will: when `offline` was not confirmed (stuck
    behind unacknowledged messages), that would leave the retained `online` for good. So edged ends such a
    session the way that publishes the Will: MQTT 5 DISCONNECT reason 0x04, or (3.1.1) no DISCONNECT."""
    caplog.set_level(logging.INFO, logger="edged.mqtt")
    with raw_server("stuck") as server:
        publisher = publisher_for(server.url, protocol=protocol)
        assert publisher.wait_connected(5)
        publisher.publish_frame("cam0", frame(0), [PERSON], inference_ms=1.0, backend="cpu:test", model="m")
        publisher.stop(timeout=0.5)
        deadline = time.monotonic() + 5
        while not server.packets or server.packets[-1][0] not in (DISCONNECT, EOF):
            assert time.monotonic() < deadline, server.packets
            time.sleep(0.05)
    assert any("offline status not confirmed" in r.getMessage() for r in caplog.records)
    published = [body for kind, body in server.packets if kind == PUBLISH]
    assert any(b'"state":"offline"' in body for body in published)  # it was sent, just never acknowledged
    if protocol == "5":
        disconnects = [body[:1] for kind, body in server.packets if kind == DISCONNECT]
        assert disconnects == [b"\x04"]  # reason code 0x04, "Disconnect with Will Message"
    else:
        assert server.packets[-1] == (EOF, b"") and DISCONNECT not in [kind for kind, _ in server.packets]


def test_mosquitto_publishes_the_will_when_the_broker_froze_during_the_stop(mosquitto, caplog):
    """The same end to end: the broker frozen (SIGSTOP) while edged stops with messages in flight."""
    caplog.set_level(logging.INFO, logger="edged.mqtt")
    broker = mosquitto()
    publisher = publisher_for(f"mqtt://[::1]:{broker.port}")
    assert publisher.wait_connected(10)
    publisher.publish_frame("cam0", frame(0), [PERSON], inference_ms=1.0, backend="cpu:test", model="m")
    assert late_status(broker)["state"] == "online"
    broker_pid = broker.pid
    assert broker_pid is not None
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        for seq in range(1, 30):
            publisher.publish_frame("cam0", frame(seq), [PERSON], inference_ms=1, backend="cpu", model="m")
        publisher.stop(timeout=1.0)
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    assert any("offline status not confirmed" in r.getMessage() for r in caplog.records)
    status = late_status(broker)
    assert status["state"] == "offline" and status["since"] is None  # the Will's payload


def test_a_stop_while_disconnected_leaves_offline_too(mosquitto):
    """The broker restarts while edged is between attempts: it published edged's Will when it went down
    (mosquitto sends its clients' Wills at shutdown), so stopping then cannot leave `online` behind."""
    broker = mosquitto(persistence=True)
    publisher = publisher_for(f"mqtt://[::1]:{broker.port}", reconnect_min_seconds=30,
                              reconnect_max_seconds=30)
    assert publisher.wait_connected(10)
    assert late_status(broker)["state"] == "online"
    broker.stop()
    while publisher.connected:
        time.sleep(0.05)
    publisher.stop(timeout=0.5)
    broker.start()
    assert late_status(broker)["state"] == "offline"


def test_backoff_doubles_to_the_cap_with_jitter_and_resets():
    backoff = Backoff(1.0, 10.0, rng=random.Random(7))
    waits = [backoff.next_wait() for _ in range(8)]
    for wait, base in zip(waits, [1, 2, 4, 8, 10, 10, 10, 10]):
        assert base / 2 <= wait <= base
    assert len({round(w, 6) for w in waits[4:]}) == 4  # jittered at the cap, not lockstep
    backoff.reset()
    assert 0.5 <= backoff.next_wait() <= 1.0
