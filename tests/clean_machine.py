"""`tests/run` on a clean machine: a minimal Debian 12 root gets all the suite needs from the repo alone.

    python3 -m tests.clean_machine            (as root; .ci/run does it after the suite)

The machine is what a newcomer starts from: debootstrap minbase + python3, git and sudo, no compiler, no
python3-venv, no mosquitto, no /etc/hosts (cached by tests/fixtures/rootfs.py; each run boots a fresh
overlay of it, so nothing installed survives). A copy of this checkout goes in at /src/edged, the model
mirror at /src/shared (the ../shared the tests expect), and then, in a systemd-nspawn container:

1. `tests/run --collect-only`: the Debian packages of tests/system-packages.txt, .venv with the test
   extras, every test module importable;
2. `tests/run` on SELECTION, fast tests that use the listed packages, with CAP_NET_ADMIN and a writable
   /proc/sys/net (which nspawn withholds from a container on the host's network) so the namespace
   tests run as on a machine.
   Whatever this container cannot do must skip with its reason; a failure or an error fails the run.

A Debian package the install path needs and the list lacks fails step 1 or 2. Package downloads are
cached between runs (debs are never built here); pip's cache is not, so a wheel built once cannot hide a
missing compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fixtures.rootfs import CACHE, ensure_rootfs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLEAN_PACKAGES = ("python3", "git", "sudo")
APT_ARCHIVES = CACHE / "clean-machine-apt-archives"
# Fast tests that use the listed packages. The slow markers (and the packages only they use: openssh,
# systemd-container, debootstrap, mmdebstrap, arch-test) would need systemd-nspawn and binfmt inside this
# container; tests/test_system_packages.py checks that what they run is listed.
SELECTION = (
    "tests/test_cli.py",             # `import edged` loads nothing heavy; the package is installed
    "tests/test_docs.py",
    "tests/test_detect_images.py",   # LiteRT from the test extras, models from the mirror
    "tests/test_failover.py",        # gcc + libc6-dev: the libedgetpu stand-ins
    "tests/test_mqtt_publish.py",    # mosquitto, mosquitto-clients
    "tests/test_mqtt_tls.py",        # openssl
    "tests/test_mqtt_netns.py",      # iproute2, procps: IPv6-only namespaces
    "tests/test_broker_urls.py",     # no /etc/hosts: `localhost` skips
    "tests/test_systemd_unit.py",    # systemd-analyze (systemd, through systemd-container)
    "tests/test_firstboot.py",       # cloud-init schema, systemd-sysusers
    "tests/test_service_parts.py",
    "tests/test_doctor.py",
    "tests/test_system_packages.py",  # what the list must hold, checked where it is all a machine has
    "tests/test_fixtures_netns.py",   # without CAP_NET_ADMIN the namespace tests skip
    "-m", "not systemd and not ansible and not aarch64",
)
# The site's network settings (a proxy, a CA that proxy signs with) are not part of the machine.
PASSED_ENVIRONMENT = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                      "PIP_INDEX_URL")
HOST_CA = "/run/edged-host-ca.pem"


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, overlay mounts, systemd-nspawn)"
    for tool in ("debootstrap", "systemd-nspawn", "git"):
        if shutil.which(tool) is None:
            return f"needs {tool} (tests/run installs it: tests/system-packages.txt)"
    return None


def copy_checkout(dest: Path) -> None:
    """The files of this checkout git knows or would add (tracked and untracked, not ignored)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a deleted but still tracked file is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)


def nspawn_argv(root: Path, *, network_admin: bool) -> list[str]:
    argv = ["systemd-nspawn", "--quiet", "-D", str(root), "--as-pid2", "--register=no", "--keep-unit",
            "--chdir=/src/edged", "--setenv=LANG=C.UTF-8", f"--bind={APT_ARCHIVES}:/var/cache/apt/archives",
            # `edged doctor` reads the clock's sync state with adjtimex (read-only: setting it needs
            # CAP_SYS_TIME, which the container does not get), as it may on any machine.
            "--system-call-filter=adjtimex clock_adjtime"]
    if SHARED.is_dir():
        argv.append(f"--bind-ro={SHARED.resolve()}:/src/shared")
    argv += [f"--setenv={name}={os.environ[name]}" for name in PASSED_ENVIRONMENT if name in os.environ]
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        argv += [f"--bind-ro={Path(ca).resolve()}:{HOST_CA}", f"--setenv=PIP_CERT={HOST_CA}"]
    if network_admin:
        argv.append("--capability=CAP_NET_ADMIN")
    return argv


def run_step(title: str, argv: list[str], *, network_admin: bool = False) -> bool:
    print(f"clean-machine: {title}", flush=True)
    started = time.monotonic()
    # systemd-nspawn's own switch for a writable /proc/sys/net (sysctls in the test namespaces).
    env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"} if network_admin else None
    done = subprocess.run(argv, env=env)
    seconds = time.monotonic() - started
    print(f"clean-machine: {title}: exit {done.returncode} after {seconds:.0f} s", flush=True)
    return done.returncode == 0


def main(pytest_args: list[str]) -> int:
    if reason := missing_prerequisite():
        print(f"clean-machine: error: {reason}", file=sys.stderr)
        return 69
    started = time.monotonic()
    lower = ensure_rootfs(CLEAN_PACKAGES, prepare=None)  # as debootstrap leaves it
    APT_ARCHIVES.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="clean-machine-", dir=CACHE))
    upper, work, root = (scratch / name for name in ("upper", "work", "root"))
    for directory in (upper, work, root):
        directory.mkdir()
    layers = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(root)], check=True)
    try:
        copy_checkout(root / "src/edged")
        tests = ["tests/run", "-p", "no:cacheprovider", "-q", "-rs"]
        ok = (run_step("tests/run --collect-only (installs everything)",
                       [*nspawn_argv(root, network_admin=False), *tests, "--collect-only"])
              and run_step("tests/run on the selection",
                           [*nspawn_argv(root, network_admin=True), *tests, *(pytest_args or SELECTION)],
                           network_admin=True))
    finally:
        subprocess.run(["umount", str(root)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"clean-machine: {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
