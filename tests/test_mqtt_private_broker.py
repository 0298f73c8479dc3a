"""The quick start's private mosquitto: never root, nothing on disk, gone when edged is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edged.errors import UnavailableError
from edged.publish.mosquitto import find_mosquitto, free_port, is_listening
from tests.edged_process import REPO
from tests.fixtures.broker import Subscriber

EDGED_STAND_IN = """
import sys, time
from edged.publish.private_broker import PrivateBroker
broker = PrivateBroker("::1", int(sys.argv[1])).start()
print(broker.pid, broker.user, flush=True)
time.sleep(600)
"""


def process_state(pid: int) -> str:
    """The kernel's state letter; "gone" once reaped (a zombie, Z, is dead too)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def test_the_private_broker_is_unprivileged_and_dies_with_its_parent():
    try:
        find_mosquitto()
    except UnavailableError as exc:
        pytest.skip(str(exc))
    port = free_port()
    temp_before = set(os.listdir(tempfile.gettempdir()))
    parent = subprocess.Popen([sys.executable, "-c", EDGED_STAND_IN, str(port)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pid_text, user = parent.stdout.readline().split()
        pid = int(pid_text)
        if os.geteuid() == 0:
            assert user in ("mosquitto", "nobody") and process_uid(pid) != 0
        else:
            assert user == "None" and process_uid(pid) == os.geteuid()
        subscriber = Subscriber("::1", port, ("#",))  # anonymous, on the loopback address
        subscriber.stop()
        parent.kill()  # edged killed with SIGKILL: no chance to stop its broker itself
        parent.wait(10)
        deadline = time.monotonic() + 5
        while process_state(pid) not in ("gone", "Z") or is_listening("::1", port):
            assert time.monotonic() < deadline, f"mosquitto {pid} outlived its parent: {process_state(pid)}"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        parent.stderr.close()
    left = {name for name in set(os.listdir(tempfile.gettempdir())) - temp_before if "mosquitto" in name}
    assert not left, f"left behind in {tempfile.gettempdir()}: {left}"
