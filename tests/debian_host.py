"""The Debian host the system tests run on: its release, backports, installed packages.

Tests that need newer tools than Debian 12 ships (qemu-user ≥ 10 for LiteRT under emulation,
udevadm ≥ 254 for `udevadm verify`) take them from bookworm-backports, using the mirror the host's
apt sources already use (tests/fixtures/rootfs.py finds it).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.fixtures.rootfs import debian_mirror

APT_SOURCES = Path("/etc/apt/sources.list.d")
BACKPORTS_SOURCE = APT_SOURCES / "edged-tests-backports.sources"


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?(\w+)", text, re.M)
    return match.group(1) if match else ""


def _source_texts() -> list[str]:
    files = [Path("/etc/apt/sources.list"), *sorted(APT_SOURCES.glob("*.list")),
             *sorted(APT_SOURCES.glob("*.sources"))]
    return [f.read_text(errors="replace") for f in files if f.is_file()]


def apt(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")


def ensure_backports() -> str:
    """Add <codename>-backports (same mirror as the host) if no source has it; returns the suite."""
    suite = f"{codename()}-backports"
    if not any(re.search(rf"(^|\s){re.escape(suite)}(\s|$)", text, re.M) for text in _source_texts()):
        BACKPORTS_SOURCE.write_text(
            f"# Added by edged's tests (tests/debian_host.py) for qemu-user >= 10 and udevadm verify.\n"
            f"Types: deb\nURIs: {debian_mirror()}\nSuites: {suite}\nComponents: main\n"
            f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
        apt("update", "-qq")
    return suite


def installed_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package],
                          capture_output=True, text=True)
    status = done.stdout.split()
    return status[3] if done.returncode == 0 and status[:3] == ["install", "ok", "installed"] else None


def install(*packages: str, suite: str | None = None) -> None:
    missing = [p for p in packages if installed_version(p) is None]
    if missing or suite:
        apt("install", "-y", "-qq", "--no-install-recommends", *(["-t", suite] if suite else []), *packages)


def upstream_major(version: str) -> int:
    """1:10.0.2+ds-2 → 10."""
    return int(re.match(r"(?:\d+:)?(\d+)", version).group(1))


def download_debs(dest: Path, *specs: str) -> list[Path]:
    """`apt-get download` (e.g. "udev/bookworm-backports") into dest; nothing is installed."""
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "-q", "download", *specs], cwd=dest, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get download {' '.join(specs)} failed: {done.stderr.strip()[-500:]}")
    return sorted(dest.glob("*.deb"))
