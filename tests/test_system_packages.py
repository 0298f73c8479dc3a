"""Every program the suite runs comes from a Debian package a clean machine gets through `tests/run`.

A clean machine is debootstrap minbase (Priority: required) plus python3, git and sudo; `tests/run`
adds tests/system-packages.txt and what those depend on. A program the tests or edged start by name
(`["mosquitto", …]`, `shutil.which("gcc")`) whose package is none of these works here and fails there.
tests/clean_machine.py proves the whole path in such a root; this is its fast, always-on half.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clean_machine import CLEAN_PACKAGES

REPO = Path(__file__).resolve().parents[1]
LIST = REPO / "tests" / "system-packages.txt"
# A program name as the first item of a list literal (not a subscript like d["size"]), or asked of which().
PROGRAM = re.compile(r"""(?:(?<![\w\])"'])\[\s*|which\(\s*)"([A-Za-z0-9_.+-]+)"\s*[,\])]""")

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None or shutil.which("apt-cache") is None,
                                reason="needs dpkg and apt (a Debian-based host) to know what a package has")


def listed_packages() -> dict[str, str]:
    """tests/system-packages.txt as {package: why}."""
    packages = {}
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition("#")
            packages[name.strip()] = why.strip()
    return packages


def programs_the_suite_runs() -> dict[str, str]:
    """{name: path on this host} of the system programs named in tests/ and edged/."""
    names = {match.group(1) for source in [*REPO.glob("tests/**/*.py"), *REPO.glob("edged/**/*.py")]
             for match in PROGRAM.finditer(source.read_text())}
    found = {name: shutil.which(name) for name in names}
    return {name: path for name, path in found.items()
            if path and path.startswith(("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"))}


def owners(paths: set[str]) -> dict[str, str]:
    """{path: Debian package} for the paths dpkg knows, asked as installed (/bin or /usr/bin, merged-usr)."""
    candidates: dict[str, set[str]] = {}
    for path in paths:
        real = os.path.realpath(path)  # /usr/bin/cc → /usr/bin/x86_64-linux-gnu-gcc-12 (alternatives)
        for variant in (path, real):
            for spelling in (variant, re.sub(r"^/usr/(s?bin)/", r"/\1/", variant)):
                candidates.setdefault(spelling, set()).add(path)
    done = subprocess.run(["dpkg", "-S", *sorted(candidates)], capture_output=True, text=True)
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        package, _, owned = line.partition(": ")
        if owned in candidates and not package.startswith("diversion by"):
            for path in candidates[owned]:
                found.setdefault(path, package.split(",")[0].split(":")[0])
    return found


def on_a_clean_machine(packages: set[str]) -> set[str]:
    """Those of `packages` a clean machine has after `tests/run`."""
    wanted = [*listed_packages(), *CLEAN_PACKAGES]
    depends = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                              "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *wanted],
                             capture_output=True, text=True, check=True).stdout
    closure = {line.split(":")[0] for line in depends.splitlines()
               if line and not line.startswith((" ", "<"))}  # "<virtual>" names no package
    priorities = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Priority}\\n", *sorted(packages)],
                                capture_output=True, text=True).stdout
    required = {line.split()[0] for line in priorities.splitlines() if line.endswith(" required")}
    return packages & (closure | required)


def test_each_listed_package_says_why():
    assert all(listed_packages().values()), f"write `name  # why the suite needs it` in {LIST.name}"


def test_every_program_the_suite_runs_comes_with_a_clean_machine_or_the_list():
    programs = programs_the_suite_runs()
    assert {"mosquitto", "ip", "gcc", "openssl"} <= programs.keys(), "the scan misses the suite's programs"
    owned = owners(set(programs.values()))
    present = on_a_clean_machine(set(owned.values()))
    missing = {name: owned[path] for name, path in programs.items()
               if path in owned and owned[path] not in present}
    assert missing == {}, f"add to {LIST.relative_to(REPO)} the packages of these programs: {missing}"


def test_the_check_tells_required_and_listed_packages_from_others():
    """The check itself: dash is required, iproute2 listed, less (priority important) neither."""
    shell = shutil.which("sh")
    assert shell and owners({shell}) == {shell: "dash"}
    assert on_a_clean_machine({"dash", "iproute2", "less"}) == {"dash", "iproute2"}
