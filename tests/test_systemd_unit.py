"""The shipped unit passes systemd's own checks: `systemd-analyze security` and `verify`.

Runs wherever systemd-analyze exists (PID 1 need not be systemd). Its behaviour under a real
systemd is tests/test_nspawn_service.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
UNIT = SYSTEMD / "edged.service"
DROP_INS = sorted((SYSTEMD / "edged.service.d").glob("*.conf"))

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def analyze(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def settings(text: str) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat, e.g. DeviceAllow=)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_security_exposure_is_at_most_2():
    done = analyze("security", "--offline=true", str(UNIT))
    assert done.returncode == 0, done.stderr
    score = float(re.search(r"Overall exposure level for edged\.service: ([\d.]+)", done.stdout)[1])
    assert score <= 2.0, done.stdout
    # The CI-style gate: --threshold uses a 0–100 scale.
    assert analyze("security", "--offline=true", "--threshold=20", str(UNIT)).returncode == 0


def test_verify_is_clean_with_the_drop_ins(tmp_path):
    """`verify` needs the ExecStart binary on this host, so a copy of the unit points ExecStart at
    this venv's `edged`; every other line, and the drop-ins beside it, are checked unchanged."""
    edged = Path(sys.executable).with_name("edged")
    assert edged.exists(), "edged is not installed in the test venv"
    text = UNIT.read_text()
    shipped = "ExecStart=/opt/edged/current/bin/edged "
    assert text.count(shipped) == 1
    (tmp_path / "edged.service").write_text(text.replace(shipped, f"ExecStart={edged} "))
    (tmp_path / "edged.service.d").mkdir()
    for drop_in in DROP_INS:
        shutil.copy(drop_in, tmp_path / "edged.service.d")
    done = analyze("verify", str(tmp_path / "edged.service"), cwd=tmp_path)
    assert done.returncode == 0 and not done.stdout + done.stderr, done.stdout + done.stderr


def test_unit_keeps_device_access_and_contract_paths():
    """What the score cannot tell: the accelerators and cameras stay reachable, TFLite keeps
    /proc/cpuinfo, and nothing names a group that may not exist (216/GROUP)."""
    unit = settings(UNIT.read_text())
    assert unit["Type"] == ["notify"] and unit["RestartPreventExitStatus"] == ["78"]
    assert unit["ExecStart"] == ["/opt/edged/current/bin/edged run --config /etc/edged/edged.toml"]
    assert "ProcSubset" not in unit and "PrivateDevices" not in unit
    assert unit["DevicePolicy"] == ["closed"]
    allowed = {rule.split()[0] for rule in unit["DeviceAllow"]}
    assert allowed == {"char-apex", "char-usb_device", "char-video4linux", "char-media", "char-dma_heap"}
    assert unit["SupplementaryGroups"] == ["video plugdev"]
    assert "LoadCredential" not in unit  # see mqtt-password.conf: a missing source fails the unit
    drop_ins = {path.name: settings(path.read_text()) for path in DROP_INS}
    assert drop_ins["coral-pcie.conf"]["SupplementaryGroups"] == ["apex"]
    assert drop_ins["mqtt-password.conf"]["LoadCredential"] == ["mqtt-password:/etc/edged/mqtt-password"]
