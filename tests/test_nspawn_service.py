"""The shipped unit under a real systemd 252: readiness, watchdog, bad config, reload, stop.

One container (tests/fixtures/nspawn.py) gets edged installed the way the docs say: a wheel into
a release venv, /opt/edged/current, the sysusers user, the unit from deploy/systemd unchanged,
and models fetched by `edged models fetch` from a mirror. The container shares the host network,
so edged publishes to a mosquitto the test starts on [::1] and a subscriber here checks what a
fleet operator would see: the retained status.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

import edged
from edged.publish.mosquitto import Mosquitto
from tests.fixtures.nspawn import boot_container, build_wheelhouse, install_edged

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(600)]

VERSION = f"{edged.__version__}+nspawn"
DEVICE = "nspawn-edged"  # the machine name, hence the host name edged uses as its device id
WATCHDOG_SEC = 15  # deploy/systemd/edged.service


def good_config(port: int, fps: float = 2) -> str:
    return f"""
[detector]
backend = "cpu"

[mqtt]
brokers = ["mqtt://[::1]:{port}"]

[[cameras]]
name = "door"
source = "samples"
fps = {fps}
"""


@pytest.fixture(scope="module")
def broker():
    with Mosquitto(bind="::1") as mosquitto:
        yield mosquitto


@pytest.fixture(scope="module")
def host(nspawn_rootfs, broker, tmp_path_factory):
    """A booted container with edged installed and configured for `broker`, not yet started."""
    tmp = tmp_path_factory.mktemp("nspawn-service")
    wheelhouse = build_wheelhouse(tmp / "wheelhouse", version=VERSION)
    container = boot_container(DEVICE, tmp=tmp)
    try:
        install_edged(container, wheelhouse, VERSION, config=good_config(broker.port))
        yield container
    finally:
        container.stop()


def retained_status(broker: Mosquitto) -> dict:
    topic = f"edged/{DEVICE}/status"
    argv = ["mosquitto_sub", "-h", "::1", "-p", str(broker.port), "-t", topic, "-C", "1", "-W", "10"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def service(host, broker):
    """The good config, no failed state or start-limit history, the service (re)started and READY."""
    host.exec(["sh", "-c", "cat > /etc/edged/edged.toml"], input=good_config(broker.port))
    host.systemctl("reset-failed", "edged", check=False)
    if host.systemctl("restart", "edged", check=False).returncode != 0:
        pytest.fail(f"edged did not start:\n{host.journal('edged')[-4000:]}")
    return host


def daemon_lines(journal: str) -> list[bool]:
    """Per journal line: True if edged itself wrote it (not systemd about it)."""
    return [bool(re.search(r" edged\[\d+\]: ", line)) for line in journal.splitlines()]


def test_start_returns_only_after_ready(service, broker):
    """`systemctl start` blocks until edged sent READY=1 (model loaded, source open): when it returns,
    the STATUS= text sent with READY=1 is set, and edged had been running before "Started"."""
    assert service.show("edged", "ActiveState") == "active"
    assert service.show("edged", "StatusText"), "no STATUS= yet: active before READY=1?"
    started = int(service.show("edged", "ExecMainStartTimestampMonotonic"))
    assert int(service.show("edged", "ActiveEnterTimestampMonotonic")) > started
    journal = service.journal("edged")
    lines = journal.splitlines()
    starting = max(i for i, line in enumerate(lines) if "Starting edged.service" in line)
    ready = next(i for i, line in enumerate(lines) if i > starting and "Started edged.service" in line)
    assert any(daemon_lines(journal)[starting:ready]), journal[-3000:]
    status = wait_for(lambda: (s := retained_status(broker))["state"] == "online" and s, 30, "status online")
    assert status["version"] == VERSION and status["backend"].startswith("cpu")
    # The hardening held: no capabilities, no new privileges, seccomp on, the static groups,
    # and TFLite still found /proc/cpuinfo (no ProcSubset=pid) to create its XNNPACK delegate.
    proc = service.exec(["cat", f"/proc/{service.show('edged', 'MainPID')}/status"]).stdout
    assert "CapEff:\t0000000000000000" in proc and "NoNewPrivs:\t1" in proc and "Seccomp:\t2" in proc
    assert "Created TensorFlow Lite XNNPACK delegate" in journal
    # Structured fields through apt's python3-systemd, which the release venv sees (--system-site-packages):
    # the journald path the suite's own venv does not install.
    verbose = service.exec(["journalctl", "--no-pager", "-o", "verbose", "-u", "edged"]).stdout
    assert f"EDGED_DEVICE={DEVICE}" in verbose and f"EDGED_VERSION={VERSION}" in verbose, verbose[-2000:]


def test_a_stalled_daemon_is_restarted_by_the_watchdog(service, broker):
    """SIGSTOP freezes the pipeline, so WATCHDOG=1 stops; systemd aborts it (faulthandler dumps the
    stack) and restarts it, and the device is online again."""
    old_pid = service.show("edged", "MainPID")
    restarts = int(service.show("edged", "NRestarts"))
    service.exec(["kill", "-STOP", old_pid])
    # generous on a loaded CI machine: watchdog + SIGABRT + stack dump + stop + RestartSec + start
    wait_for(lambda: int(service.show("edged", "NRestarts")) > restarts, WATCHDOG_SEC + 75, "a restart")
    wait_for(lambda: service.show("edged", "ActiveState") == "active", 60, "active again")
    assert service.show("edged", "MainPID") not in ("0", old_pid)
    journal = service.journal("edged")
    assert f"Watchdog timeout (limit {WATCHDOG_SEC}s)!" in journal
    assert "Failed with result 'watchdog'" in journal
    assert "Fatal Python error: Aborted" in journal  # PYTHONFAULTHANDLER=1: the stuck stack is logged
    wait_for(lambda: retained_status(broker)["state"] == "online", 30, "status online after the restart")


def test_a_bad_config_fails_once_with_78(service):
    """Exit 78 is in RestartPreventExitStatus=: one failure with the key path, no restart loop."""
    service.exec(["sh", "-c", "cat > /etc/edged/edged.toml"], input='[mqtt]\nqos = "high"\n')
    service.systemctl("reset-failed", "edged", check=False)
    assert service.systemctl("restart", "edged", check=False).returncode != 0
    assert service.show("edged", "ExecMainStatus") == "78"
    # A restart to come would show as activating/auto-restart for RestartSec; failed means none is.
    assert (service.show("edged", "ActiveState"), service.show("edged", "SubState")) == ("failed", "failed")
    assert service.show("edged", "NRestarts") == "0"
    assert "mqtt.qos" in service.journal("edged")


def test_reload_applies_a_new_config_in_place(service, broker):
    """ExecReload= (SIGHUP) under the sandbox: same process, new configuration, still active."""
    pid = service.show("edged", "MainPID")
    service.exec(["sh", "-c", "cat > /etc/edged/edged.toml"], input=good_config(broker.port, fps=1))
    service.systemctl("reload", "edged")
    wait_for(lambda: "reload: applying the new configuration" in service.journal("edged"), 30, "the reload")
    assert service.show("edged", "MainPID") == pid
    wait_for(lambda: service.show("edged", "ActiveState") == "active", 30, "active after the reload")


def test_stop_is_clean_and_says_offline(service, broker):
    """SIGTERM: edged publishes the retained `offline` status and exits 0 well within TimeoutStopSec."""
    service.systemctl("stop", "edged")
    assert service.show("edged", "Result") == "success"
    assert service.show("edged", "ExecMainStatus") == "0"
    assert retained_status(broker)["state"] == "offline"
