"""`edged doctor` and its probes: sysfs like a Pi with a Coral, real sockets, a stand-in libedgetpu."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edged.service.probes import clock_synchronized, find_edgetpus, tcp_reach, video_devices
from tests.edged_process import REPO
from tests.fixtures.rawbroker import raw_server


def usb_device(root: Path, name: str, vendor: str, product: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "idVendor").write_text(vendor + "\n")
    (root / name / "idProduct").write_text(product + "\n")


def test_coral_usb_ids_before_and_after_firmware_and_pcie_nodes(tmp_path: Path):
    usb, dev = tmp_path / "usb", tmp_path / "dev"
    usb_device(usb, "1-1", "1d6b", "0003")  # a root hub
    usb_device(usb, "2-1", "18d1", "9302")  # Coral, firmware loaded
    usb_device(usb, "2-2", "1a6e", "089a")  # Coral, before first use
    (usb / "usb1").mkdir()  # entries without ids are skipped
    dev.mkdir()
    (dev / "apex_0").touch()
    (dev / "video10").touch()
    (dev / "video2").touch()
    found = find_edgetpus(usb, dev)
    expected = [("usb", "2-1"), ("usb", "2-2"), ("pci", str(dev / "apex_0"))]
    assert [(t.kind, t.where) for t in found] == expected
    assert "ready" in found[0].detail and "firmware not loaded" in found[1].detail
    assert find_edgetpus(tmp_path / "none", tmp_path / "none") == []
    assert video_devices(dev) == [str(dev / "video2"), str(dev / "video10")]


def test_tcp_reach_reports_each_address_and_family():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as server:
        server.bind(("::1", 0))
        server.listen()
        port = server.getsockname()[1]
        results = tcp_reach("::1", port)
        assert len(results) == 1
        reach = results[0]
        assert reach.ok and reach.family == "IPv6" and reach.address == "::1"
    closed = tcp_reach("::1", port)[0]
    assert not closed.ok and "refused" in closed.error
    assert not tcp_reach("no-such-host.invalid", 1883)[0].ok


def test_clock_state_comes_from_timedatectl_or_the_kernel():
    synced, how = clock_synchronized()
    assert how in ("timedatectl", "adjtimex")
    assert synced in (True, False)


def doctor(data_dir: Path, config: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "edged", "doctor"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGED_DATA_DIR": str(data_dir), **env})


def test_doctor_on_a_ready_machine(fetched_data_dir: Path, mosquitto, edgetpu_standin, tmp_path: Path):
    broker = mosquitto()
    config = tmp_path / "edged.toml"
    config.write_text(f'[detector]\nedgetpu_library = "{edgetpu_standin("ok")}"\n'
                      f'[mqtt]\nbrokers = ["mqtt://[::1]:{broker.port}"]\n')
    result = doctor(fetched_data_dir, config)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert any(line.split()[:2] == ["OK", "runtime"] and "ai-edge-litert" in line for line in lines)
    assert any(line.split()[:2] == ["OK", "libedgetpu"] and "found device usb" in line for line in lines)
    assert any(line.split()[:2] == ["OK", "models"] and "verified" in line for line in lines)
    assert any(line.split()[:2] == ["OK", "camera"] and "5 in" in line for line in lines)
    assert any(line.split()[:2] == ["OK", "broker"] and "IPv6 ::1 ok; MQTT 5 session accepted" in line
               for line in lines)


def test_doctor_says_what_to_do_and_fails(tmp_path: Path, edgetpu_standin):
    config = tmp_path / "edged.toml"
    config.write_text(f'[detector]\nedgetpu_library = "{edgetpu_standin("no_device")}"\n'
                      '[mqtt]\nbrokers = ["mqtt://[::1]:9"]\n[[cameras]]\nsource = "/dev/video77"\n')
    result = doctor(tmp_path / "empty", config)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  models" in out and "run `edged models fetch ssd_mobilenet_v1_coco_quant`" in out
    assert "WARN  libedgetpu" in out and "no Edge TPU found" in out
    assert "FAIL  camera     camera cam0: /dev/video77 missing" in out
    assert "FAIL  broker" in out and "refused" in out


def broker_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line.strip() for line in result.stdout.splitlines() if line.split()[1:2] == ["broker"]]


def test_doctor_names_the_missing_mosquitto_and_the_command(fetched_data_dir: Path, tmp_path: Path):
    """The default config on a machine without mosquitto: `edged run` would publish nothing."""
    from edged.publish.mosquitto import is_listening

    if is_listening("::1", 1883):
        pytest.skip("something listens on [::1]:1883 (another test run's broker?)")
    config = tmp_path / "edged.toml"
    config.write_text('[detector]\nbackend = "cpu"\n')  # everything else passes: the broker decides the code
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    without = doctor(fetched_data_dir, config, PATH=str(empty_path))
    assert without.returncode == 1, without.stdout
    assert broker_lines(without) == [
        "FAIL  broker     mqtt://[::1]:1883: no broker — nothing listens there and mosquitto is not "
        "installed, so `edged run` cannot start its private one: sudo apt install mosquitto (or set "
        "mqtt.brokers)"]
    failing = [line.strip() for line in without.stdout.splitlines() if "FAIL" in line]
    assert failing == broker_lines(without)
    with_it = doctor(fetched_data_dir, config)
    assert with_it.returncode == 0, with_it.stdout
    assert broker_lines(with_it) == [
        "OK    broker     mqtt://[::1]:1883: nothing listens; `edged run` starts a private one there"]


def test_doctor_sees_a_broker_that_rejects_edgeds_connect(tmp_path: Path):
    config = tmp_path / "edged.toml"
    with raw_server("closes") as server:
        config.write_text(f'[mqtt]\nbrokers = ["{server.url}"]\n')
        result = doctor(tmp_path / "empty", config)
    assert result.returncode == 1
    [line] = broker_lines(result)
    assert line.startswith(f"FAIL  broker     {server.url}: IPv6 ::1 ok; {server.url}: the broker closed "
                           "the connection after the MQTT 5 CONNECT without a CONNACK; if it only speaks "
                           'MQTT 3.1.1, set mqtt.protocol = "3.1.1"'), line
