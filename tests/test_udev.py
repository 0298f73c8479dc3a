"""deploy/udev: the Coral rules say exactly what upstream's say, and udev's own parser accepts them.

Upstream (verbatim, ../shared/research/ops.md §1): libedgetpu's debian/edgetpu-accelerator.rules
for the USB Accelerator (both USB ids) and gasket-driver's debian/gasket-dkms.udev for PCIe.
`udevadm verify` needs systemd ≥ 254; on Debian 12 (252) the test runs udevadm from
bookworm-backports' udev package, unpacked into the test cache, not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import debian_host
from tests.fixtures.rootfs import CACHE

UDEV = Path(__file__).resolve().parents[1] / "deploy" / "udev"
UPSTREAM = {
    "60-edged-coral-usb.rules": [
        'SUBSYSTEM=="usb",ATTRS{idVendor}=="1a6e",ATTRS{idProduct}=="089a",GROUP="plugdev"',
        'SUBSYSTEM=="usb",ATTRS{idVendor}=="18d1",ATTRS{idProduct}=="9302",GROUP="plugdev"',
    ],
    "60-edged-coral-pcie.rules": ['SUBSYSTEM=="apex", MODE="0660", GROUP="apex"'],
}
PAIR = re.compile(r'\s*([A-Z_]+(?:\{[^}]*\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)')


def parse_rule(line: str) -> list[tuple[str, str, str]]:
    """`KEY{attr}=="v", KEY="v"` → [(key, operator, value)], failing on anything else."""
    pairs, pos = [], 0
    while pos < len(line):
        match = PAIR.match(line, pos)
        assert match, f"unparsable udev rule at column {pos}: {line!r}"
        pairs.append(match.groups())
        pos = match.end()
    return pairs


def rules_of(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_rules_are_upstreams_keys_and_values():
    assert sorted(p.name for p in UDEV.glob("*.rules")) == sorted(UPSTREAM)
    for name, upstream in UPSTREAM.items():
        ours = rules_of(UDEV / name)
        assert [parse_rule(line) for line in ours] == [parse_rule(line) for line in upstream], name


def test_each_file_says_where_it_comes_from_and_why():
    for name, source in (("60-edged-coral-usb.rules", "edgetpu-accelerator.rules"),
                         ("60-edged-coral-pcie.rules", "gasket-dkms.udev")):
        comment = " ".join(line for line in (UDEV / name).read_text().splitlines() if line.startswith("#"))
        assert source in comment
        assert "plugdev" in comment or "apex" in comment


def test_both_usb_ids_get_plugdev():
    ids = {(dict((k, v) for k, _, v in parse_rule(line))["ATTRS{idVendor}"],
            dict((k, v) for k, _, v in parse_rule(line))["ATTRS{idProduct}"])
           for line in rules_of(UDEV / "60-edged-coral-usb.rules")}
    assert ids == {("1a6e", "089a"), ("18d1", "9302")}


def udevadm_with_verify() -> list[str]:
    """An udevadm that has `verify`: this host's if new enough, else backports' unpacked in the cache."""
    host = shutil.which("udevadm")
    if host and subprocess.run([host, "verify", "--help"], capture_output=True).returncode == 0:
        return [host]
    unpacked = CACHE / "udevadm-backports"
    binary = unpacked / "root" / "bin" / "udevadm"
    if not binary.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None or debian_host.codename() != "bookworm":
            pytest.skip("udevadm verify needs systemd >= 254 (or root on Debian 12 for backports' udev)")
        suite = debian_host.ensure_backports()
        debs = debian_host.download_debs(unpacked / "debs", f"udev/{suite}", f"libsystemd-shared/{suite}")
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked / "root")], check=True)
    libdir = next((unpacked / "root" / "usr" / "lib").glob("*/systemd"))
    return ["env", f"LD_LIBRARY_PATH={libdir}", str(binary)]


def test_udevadm_verify_accepts_the_rules_and_rejects_a_broken_one(tmp_path):
    udevadm = udevadm_with_verify()
    # Group names resolve on the Pi (apex exists only with a PCIe Coral), not here.
    verify = [*udevadm, "verify", "--resolve-names=never"]
    ok = subprocess.run([*verify, *map(str, sorted(UDEV.glob("*.rules")))], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "broken.rules"
    broken.write_text('SUBSYSTEM=="usb", ATTRS{idVendor}="1a6e", GROUP="plugdev"\n')  # = where == belongs
    bad = subprocess.run([*verify, str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0 and "Invalid operator" in bad.stderr, bad.stderr
