"""A stage of `edged run` that dies stops the daemon with exit 70 — systemd restarts it — never silently.

Each case kills one internal thread of a real `edged run` (real model, real
mosquitto) by raising an exception inside it (tests/thread_killer.py), and
expects: one line naming the thread, a clean exit with code 70 within a few
seconds, no traceback, and the retained status `offline` (the stop was clean).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from edged.errors import EX_SOFTWARE
from edged.service.systemd import Notifier, Watchdog
from tests.edged_process import EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Subscriber

# thread role → the names it has (the inference thread is `dispatch` in the pipelined protocol)
THREADS = {
    "capture": r"capture-cam0",
    "inference": r"inference|dispatch",
    "publish": r"publish",
    "mqtt": r"paho-mqtt-client-.*",
}


@pytest.fixture
def notify(tmp_path: Path):
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


@pytest.mark.parametrize("role", THREADS)
def test_a_dead_thread_stops_edged_with_exit_70(role: str, fetched_data_dir: Path, mosquitto, notify,
                                                 tmp_path: Path):
    broker = mosquitto()
    device = f"pi-kill-{role}"
    config = tmp_path / "edged.toml"
    config.write_text('[[cameras]]\nfps = 5\n')
    subscriber = Subscriber("::1", broker.port, (f"edged/{device}/#",))
    run = EdgedRun(["--config", str(config), "--backend", "cpu", "--broker", broker_url(broker),
                    "--device-id", device], data_dir=fetched_data_dir, notify=notify, watchdog_usec=3_000_000,
                   command=[sys.executable, "-m", "tests.thread_killer", THREADS[role], "run"])
    try:
        subscriber.wait_topic(f"edged/{device}/cam0/detections", count=2, timeout=30)
        run.signal(signal.SIGUSR1)
        killed = run.wait_log(r"test: (killed thread|no thread matches|could not kill) .*")[0].group(0)
        assert killed.startswith("test: killed thread"), killed
        started = time.monotonic()
        code = run.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        run.stop()
        subscriber.stop()
    print(f"{role}: exit {code} {took:.1f} s after the kill")
    assert code == EX_SOFTWARE, run.text[-3000:]
    assert took < 8.0
    assert "Traceback" not in run.text
    error = run.text.strip().splitlines()[-1]
    assert error.startswith("edged run: error: ") and "died" in error and "systemd restarts edged" in error
    if role != "mqtt":  # with its network thread dead, the broker publishes the Last Will instead
        late = Subscriber("::1", broker.port, (f"edged/{device}/status",))
        try:
            assert late.wait_topic(f"edged/{device}/status")[0].json()["state"] == "offline"
        finally:
            late.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_pings_only_while_the_main_loop_vouches(tmp_path: Path, monkeypatch):
    """Progress pings WATCHDOG=1 only within `vouch_seconds` of the main loop's last healthy check."""
    listener = NotifyListener(tmp_path)
    clock = FakeClock()
    monkeypatch.setattr("edged.service.systemd.time.monotonic", clock)
    try:
        watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"}),
                            vouch_seconds=3.0)
        assert not watchdog.kick()  # not armed before READY
        watchdog.arm()
        assert watchdog.kick()
        clock.now += 1.5
        assert watchdog.kick()  # every half WatchdogSec at most, while vouched
        clock.now += 2.0  # the main loop has not vouched for 3.5 s: stuck
        assert not watchdog.kick()
        watchdog.vouch()
        assert watchdog.kick()
        watchdog.withdraw()  # a dead stage
        clock.now += 1.5
        assert not watchdog.kick()
        listener.wait_for("WATCHDOG=1", count=3, timeout=5)
        time.sleep(0.2)
        assert listener.count("WATCHDOG=1") == 3
    finally:
        listener.close()
