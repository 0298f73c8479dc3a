"""`edged doctor` and its probes: sysfs like a Pi with a Coral, real sockets, a stand-in libedgetpu."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from edged.service.probes import clock_synchronized, find_edgetpus, tcp_reach, video_devices
from tests.edged_process import REPO


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


def doctor(data_dir: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "edged", "doctor"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGED_DATA_DIR": str(data_dir)})


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
    assert any(line.split()[:2] == ["OK", "broker"] and "IPv6 ::1 ok" in line for line in lines)


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
