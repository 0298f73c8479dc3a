"""The namespace fixture itself: it skips where namespaces are impossible and leaves none behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.netns import Ipv6Lan, NetnsCommandError

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.netns


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_a_lan_that_fails_half_way_leaves_no_namespace(netns_support):
    lan = Ipv6Lan(tag=f"edleak{os.getpid() % 10000}")
    try:
        lan.add_host("a")
        subprocess.run(["ip", "netns", "del", lan.switch], check=True)  # the next host cannot be plugged in
        with pytest.raises(NetnsCommandError, match=r"`ip link add p2 netns .*-sw .*` failed \(\d+\): \S"):
            lan.add_host("b")
        assert f"{lan.tag}-b" not in namespaces()
    finally:
        lan.close()
    assert not {ns for ns in namespaces() if ns.startswith(lan.tag)}


def test_without_network_admin_the_namespace_tests_skip_with_the_reason(netns_support, tmp_path: Path):
    """As in a container without CAP_NET_ADMIN: the probe finds out, the tests skip, nothing errors."""
    # Out of every set a root process could get it back from at exec (a container may hand it down).
    drop = [arg for kind in ("--inh-caps", "--ambient-caps", "--bounding-set")
            for arg in (kind, "-net_admin")]
    argv = ["setpriv", *drop, "--", sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}", "tests/test_mqtt_netns.py"]
    before = namespaces()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" not in done.stdout and "error" not in done.stdout.lower(), done.stdout[-3000:]
    assert "network namespaces are not possible here" in done.stdout, done.stdout[-3000:]
    assert "Operation not permitted" in done.stdout  # the failing command's own message
    assert namespaces() <= before  # the probe's namespace went too
