"""A data dir that is read-only (an SD card remounted read-only) or full, and the umask of the service.

The read-only and full directories are real mounts — a read-only bind mount,
a 1 MB tmpfs — made in a private mount namespace (`unshare --user --mount`),
so the tests need no root and leave the machine as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edged.errors import EX_CANTCREAT
from tests.edged_process import REPO, EdgedRun, broker_url
from tests.fixtures.broker import Subscriber

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def namespaces_work() -> str | None:
    """Why a private mount namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                           text=True, check=False)
    return None if probe.returncode == 0 else f"no private mount namespace: {probe.stderr.strip()}"


requires_namespaces = pytest.mark.skipif(namespaces_work() is not None, reason=str(namespaces_work()))


def mounted(how: str, directory: Path, argv: list[str]) -> list[str]:
    """`argv` with `directory` mounted read-only (`ro`) or as a 1 MB tmpfs (`full`) in its own namespace."""
    mount = {"ro": 'mount --bind -o ro "$0" "$0"', "full": 'mount -t tmpfs -o size=1m tmpfs "$0"'}[how]
    return [*UNSHARE, "sh", "-c", f'{mount} && exec "$@"', str(directory), *argv]


def edged(argv: list[str], data: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGED_DATA_DIR": str(data)}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
                          **kwargs)


@pytest.fixture
def unverified_data(fetched_data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the fetched data dir without its .verified markers: every file must be hashed again."""
    data = tmp_path / "data"
    shutil.copytree(fetched_data_dir, data, ignore=shutil.ignore_patterns("*.verified"))
    return data


@requires_namespaces
def test_detect_and_run_verify_in_memory_on_a_read_only_data_dir(unverified_data: Path, mosquitto):
    cat = unverified_data / "samples" / "cat.bmp"
    detect = edged(mounted("ro", unverified_data, [sys.executable, "-m", "edged", "detect", "--json",
                                                   "--backend", "cpu", str(cat)]), unverified_data)
    assert detect.returncode == 0, detect.stderr
    assert json.loads(detect.stdout)["detections"][0]["label"] == "cat"
    assert "Traceback" not in detect.stderr
    assert detect.stderr.count("no marker can be written beside it (read-only file system)") == 1

    broker = mosquitto()
    subscriber = Subscriber("::1", broker.port, ("edged/pi-ro/cam0/detections",))
    command = mounted("ro", unverified_data, [sys.executable, "-m", "edged", "run"])
    run = EdgedRun(["--backend", "cpu", "--broker", broker_url(broker), "--device-id", "pi-ro"],
                   data_dir=unverified_data, command=command)
    try:
        subscriber.wait_topic("edged/pi-ro/cam0/detections", count=2, timeout=30)
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=10) == 0
    finally:
        run.stop()
        subscriber.stop()
    assert "Traceback" not in run.text
    assert "no marker can be written beside it (read-only file system)" in run.text
    assert not list(unverified_data.rglob("*.verified"))


@requires_namespaces
@pytest.mark.parametrize("how, problem", [("ro", "read-only file system"), ("full", "disk full")])
def test_models_fetch_where_nothing_can_be_written_is_exit_73(how: str, problem: str, model_mirror: Path,
                                                              tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    result = edged(mounted(how, data, [sys.executable, "-m", "edged", "models", "fetch", "--offline",
                                       "--mirror", str(model_mirror), "ssd_mobilenet_v1_coco_quant"]), data)
    assert result.returncode == EX_CANTCREAT, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors and all(line.startswith("edged models fetch: error: cannot write in ") for line in errors)
    assert errors[0].endswith(f"/models: {problem}")
    assert "not found in any source" not in result.stderr and "Traceback" not in result.stderr


def test_verified_markers_are_readable_by_all_whatever_the_umask(model_mirror: Path, tmp_path: Path):
    """The unit runs with UMask=0077; an admin's `edged models list` must still read the markers."""
    data = tmp_path / "data"
    fetch = [sys.executable, "-m", "edged", "models", "fetch", "--offline", "--mirror", str(model_mirror)]
    result = edged([*fetch, "ssd_mobilenet_v1_coco_quant"], data, preexec_fn=lambda: os.umask(0o077))
    assert result.returncode == 0, result.stderr
    markers = list((data / "models").glob("*.verified"))
    assert markers and all(marker.stat().st_mode & 0o777 == 0o644 for marker in markers)
    assert all(model.stat().st_mode & 0o777 == 0o644 for model in (data / "models").glob("*.tflite"))
