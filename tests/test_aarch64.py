"""The Pi's architecture: the aarch64 wheelhouse installs on arm64 Debian and detects like x86 does.

deploy/edged-seed builds the card's aarch64 wheelhouse (Python 3.11 = bookworm), the card's own
install-edged.sh installs it into an arm64 Debian bookworm root (ROOT=…: the root's python3 runs
through chroot under qemu-user), and `edged detect --json` on the sample photos there must find
what this machine's x86_64 run finds: same labels, scores within ±0.03, boxes IoU ≥ 0.8.

The root holds Debian's arm64 python3 and python3-numpy (1.24, as picamera2 on Pi OS wants) and
their dependencies, unpacked by mmdebstrap --variant=extract with the postinst effects Python needs
applied natively (base-passwd's /etc/passwd and /etc/group, the BLAS/LAPACK alternatives,
py3compile's .pyc files): configuring the packages under emulation (debootstrap's second stage,
mmdebstrap's install) took 7-8 minutes here. It is cached under /var/cache/edged-tests; each run
installs into an overlay on top of it.
LiteRT segfaults under Debian 12's qemu-user 7.2: qemu-user ≥ 10 comes from bookworm-backports.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests import debian_host
from tests.fixtures.rootfs import CACHE, debian_mirror

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
SEED = REPO / "deploy" / "edged-seed"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
PACKAGES = ("python3", "python3-numpy", "libstdc++6", "base-passwd")
WITHOUT_OPENCV = "import sys; sys.modules['cv2'] = None; from edged.cli import main; sys.exit(main(sys.argv[1:]))"
RECIPE = "extract+merged-usr+passwd+blas-lapack+pyc/2"  # change with unpack_root: a new cache entry
TRIPLET = "aarch64-linux-gnu"

pytestmark = [pytest.mark.aarch64, pytest.mark.timeout(900)]


def qemu_major() -> int:
    version = debian_host.installed_version("qemu-user") or debian_host.installed_version("qemu-user-static")
    return debian_host.upstream_major(version) if version else 0


def register_binfmt() -> None:
    """(Re-)register qemu-aarch64 with the installed interpreter; the F flag pins the file at this moment."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    if (BINFMT / "qemu-aarch64").exists():
        (BINFMT / "qemu-aarch64").write_text("-1")
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if conf.exists():  # qemu >= 9 (systemd-binfmt format)
        rule = next(line for line in conf.read_text().splitlines() if line.startswith(":"))
        (BINFMT / "register").write_text(rule)
    else:
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=True)


def setup_emulation() -> None:
    """qemu-user ≥ 10 registered for aarch64 binaries: from backports on bookworm, then binfmt reloaded."""
    if qemu_major() < 10:
        suite = debian_host.ensure_backports() if debian_host.codename() == "bookworm" else None
        debian_host.install("qemu-user-static", suite=suite)
        register_binfmt()
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        register_binfmt()
    assert qemu_major() >= 10, "qemu-user >= 10 is needed for LiteRT under emulation"


def unpack_root(dest: Path) -> None:
    subprocess.run(["mmdebstrap", "--quiet", "--arch=arm64", "--variant=extract",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", f"--include={','.join(PACKAGES)}",
                    "bookworm", str(dest), debian_mirror()], check=True, capture_output=True)
    for name in ("passwd", "group"):  # base-passwd's postinst
        shutil.copy(dest / f"usr/share/base-passwd/{name}.master", dest / "etc" / name)
    for lib in ("blas", "lapack"):  # libblas3's and liblapack3's update-alternatives
        (dest / f"usr/lib/{TRIPLET}/lib{lib}.so.3").symlink_to(f"{lib}/lib{lib}.so.3")
    if sys.version_info[:2] == (3, 11):  # py3compile's .pyc files, natively (3.11.x: the same bytecode)
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(dest), "-p", "/",
                        str(dest / "usr/lib/python3.11"), str(dest / "usr/lib/python3/dist-packages")],
                       check=True, capture_output=True)


def arm64_root() -> Path:
    """The cached arm64 root, built once (in a temp dir, renamed when complete, under a lock)."""
    key = hashlib.sha256(repr((PACKAGES, RECIPE)).encode()).hexdigest()[:12]
    root = CACHE / f"rootfs-bookworm-arm64-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "rootfs-bookworm-arm64.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.is_dir():
            partial = Path(tempfile.mkdtemp(prefix=root.name + ".partial-", dir=CACHE))
            try:
                unpack_root(partial / "root")
                os.rename(partial / "root", root)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return root


@contextmanager
def overlay_with_proc(lower: Path, work: Path):
    """A writable view of the cached root (which stays pristine), with /proc and /sys for cpuinfo."""
    merged = work / "merged"
    for d in ("upper", "work", "merged"):
        (work / d).mkdir(parents=True)
    with ExitStack() as mounts:
        def mount(*argv: str, target: Path) -> None:
            subprocess.run(["mount", *argv, str(target)], check=True)
            mounts.callback(subprocess.run, ["umount", "-l", str(target)], check=False)
        layers = f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}"
        mount("-t", "overlay", "overlay", "-o", layers, target=merged)
        for fs in ("proc", "sys"):
            (merged / fs).mkdir(exist_ok=True)
        mount("-t", "proc", "proc", target=merged / "proc")
        mount("-t", "sysfs", "sysfs", target=merged / "sys")
        yield merged


def detections(stdout: str) -> dict[str, list[dict]]:
    results = map(json.loads, stdout.splitlines())
    return {Path(result["image"]).name: result["detections"] for result in results}


def iou(a: dict, b: dict) -> float:
    w = max(0.0, min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"]))
    h = max(0.0, min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"]))
    area = lambda box: (box["xmax"] - box["xmin"]) * (box["ymax"] - box["ymin"])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def unmatched(ours: list[dict], theirs: list[dict], floor: float) -> list[dict]:
    """Detections ≥ floor in `ours` without a same-label, ±0.03, IoU ≥ 0.8 partner in `theirs`."""
    return [d for d in ours if d["score"] >= floor and not any(
        t["label"] == d["label"] and abs(t["score"] - d["score"]) <= 0.03 and iou(t["box"], d["box"]) >= 0.8
        for t in theirs)]


@pytest.fixture(scope="module")
def emulation():
    if os.geteuid() != 0:
        pytest.skip("needs root: binfmt_misc, chroot, mounts")
    if shutil.which("apt-get") is None and (qemu_major() < 10 or shutil.which("mmdebstrap") is None):
        pytest.skip("needs qemu-user >= 10 and mmdebstrap (installable here only on Debian)")
    if shutil.which("mmdebstrap") is None:
        debian_host.install("mmdebstrap")
    setup_emulation()


def test_aarch64_wheelhouse_installs_and_detects_like_x86(emulation, tmp_path):
    images = sorted(p.name for p in (SHARED / "images").iterdir() if p.suffix in (".bmp", ".jpg"))
    mirrors = ["--mirror", str(SHARED / "models"), "--mirror", str(SHARED / "images")]

    # The reference: this machine's x86_64 edged on the same verified files.
    x86_env = {**os.environ, "EDGED_DATA_DIR": str(tmp_path / "x86")}
    subprocess.run([sys.executable, "-m", "edged", "models", "fetch", *mirrors], env=x86_env, check=True,
                   capture_output=True)
    # The card installs edged without OpenCV, so it resizes with Pillow: so must the reference (the two
    # resizers move scores by a few hundredths, docs/models.md), or the test compares resizers, not machines.
    x86 = subprocess.run([sys.executable, "-c", WITHOUT_OPENCV, "detect", "--json", "--threshold", "0.3",
                          *(str(tmp_path / "x86" / "samples" / name) for name in images)],
                         env=x86_env, capture_output=True, text=True)
    assert x86.returncode == 0, x86.stderr

    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=tty1 root=PARTUUID=6c586e13-02 rootwait\n")
    (boot / "config.txt").write_text("")
    seeded = subprocess.run([sys.executable, str(SEED), str(boot), "--arch", "aarch64", "--python", "3.11",
                             *mirrors, "--cache-dir", str(CACHE / "seed")], capture_output=True, text=True)
    assert seeded.returncode == 0, seeded.stderr
    wheels = [p.name for p in (boot / "edged" / "wheels").iterdir()]
    litert = re.compile(r"ai_edge_litert-.*-cp311-cp311-manylinux_2_\d+_aarch64\.whl")
    assert any(litert.match(w) for w in wheels), wheels
    assert any(re.match(r"numpy-1\.", w) for w in wheels), "bookworm's wheelhouse keeps numpy < 2"

    with overlay_with_proc(arm64_root(), tmp_path / "overlay") as root:
        install = subprocess.run(["sh", str(boot / "edged" / "install-edged.sh")],
                                 env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True)
        assert install.returncode == 0, install.stdout + install.stderr
        # apt's numpy (what picamera2 is built against) is the one the release uses.
        probe = "import numpy, platform; print(numpy.__version__, numpy.__file__, platform.machine())"
        numpy = subprocess.run(["chroot", str(root), "/opt/edged/current/bin/python", "-c", probe],
                               capture_output=True, text=True)
        version, location, machine = numpy.stdout.split()
        assert (machine, version.split(".")[:2], location.startswith("/usr/lib/python3/dist-packages")) == \
            ("aarch64", ["1", "24"], True), numpy.stdout + numpy.stderr

        arm = subprocess.run(["chroot", str(root), "/opt/edged/current/bin/edged", "detect", "--json",
                              "--threshold", "0.3", *(f"/var/lib/edged/samples/{name}" for name in images)],
                             capture_output=True, text=True)
        assert arm.returncode == 0, arm.stderr

    ours, theirs = detections(arm.stdout), detections(x86.stdout)
    assert sorted(ours) == sorted(theirs) == images
    for name in images:
        assert theirs[name], f"the x86 run found nothing in {name}"
        # Everything ≥ 0.5 on one side is on the other (down to 0.3, so the threshold cannot split a pair).
        assert not unmatched(ours[name], theirs[name], 0.5), (name, ours[name], theirs[name])
        assert not unmatched(theirs[name], ours[name], 0.5), (name, ours[name], theirs[name])
    backend = json.loads(arm.stdout.splitlines()[0])["backend"]
    assert backend.startswith("cpu:litert"), backend
