"""Fetching from mirrors: good files install verified; wrong, partial or missing ones never replace anything."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from edged.detect import fetch
from edged.detect.models import FileEntry, file_state, load_manifest
from edged.errors import EX_DATAERR, EX_UNAVAILABLE, DataError, UnavailableError

CPU_FILE = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
CPU_SHA256 = "e4b118e5e4531945de2e659742c7c590f7536f8d0ed26d135abcfe83b4779d13"


class _Ipv6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _HalfThenHangUp(http.server.BaseHTTPRequestHandler):
    """Announces the whole file, sends half of it, then closes the connection: a dropped download."""

    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload[: len(self.payload) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def serve(handler) -> Iterator[str]:
    server = _Ipv6Server(("::1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://[::1]:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_mirror(model_mirror: Path) -> Iterator[str]:
    yield from serve(partial(_QuietFiles, directory=str(model_mirror)))


@pytest.fixture
def cpu_entry() -> FileEntry:
    entry = load_manifest().model("ssd_mobilenet_v1_coco_quant").cpu
    assert entry is not None and entry.sha256 == CPU_SHA256
    return entry


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_good_file_from_a_mirror_directory(model_mirror, cpu_entry, tmp_path):
    path, origin = fetch.fetch_file(cpu_entry, tmp_path, [str(model_mirror)], offline=True)
    assert origin == str(model_mirror / CPU_FILE)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CPU_SHA256
    assert leftovers(tmp_path) == [CPU_FILE, CPU_FILE + ".verified"]
    again, origin = fetch.fetch_file(cpu_entry, tmp_path, [str(model_mirror)], offline=True)
    assert (again, origin) == (path, "present")


def test_good_file_from_an_http_mirror_over_ipv6(http_mirror, cpu_entry, tmp_path):
    path, origin = fetch.fetch_file(cpu_entry, tmp_path, [http_mirror], offline=True)
    assert origin == http_mirror + CPU_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CPU_SHA256


def test_git_blob_pinned_file_verifies_and_records_its_sha256(image_mirror, tmp_path):
    owl = next(e for e in load_manifest().samples.files if e.file == "owl.jpg")
    assert owl.git_blob and not owl.sha256
    path, _ = fetch.fetch_file(owl, tmp_path, [str(image_mirror)], offline=True)
    sidecar = (tmp_path / "owl.jpg.verified").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in sidecar
    assert file_state(path, owl) == "verified"


def test_mirrors_are_tried_in_order(model_mirror, http_mirror, cpu_entry, tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    _, origin = fetch.fetch_file(cpu_entry, tmp_path / "data", [str(empty), http_mirror + "missing/",
                                                                str(model_mirror)], offline=True)
    assert origin == str(model_mirror / CPU_FILE)


def test_tampered_file_is_rejected_naming_both_digests_and_the_old_file_is_kept(model_mirror, cpu_entry, tmp_path):
    tampered_mirror = tmp_path / "tampered"
    tampered_mirror.mkdir()
    data = bytearray((model_mirror / CPU_FILE).read_bytes())
    data[1000] ^= 0xFF
    (tampered_mirror / CPU_FILE).write_bytes(data)
    target = tmp_path / "data"
    target.mkdir()
    (target / CPU_FILE).write_bytes(b"the file that was here before")
    with pytest.raises(DataError) as caught:
        fetch.fetch_file(cpu_entry, target, [str(tampered_mirror)], offline=True)
    message = str(caught.value)
    assert CPU_SHA256 in message and hashlib.sha256(data).hexdigest() in message
    assert "\n" not in message
    assert (target / CPU_FILE).read_bytes() == b"the file that was here before"
    assert leftovers(target) == [CPU_FILE]


def test_corrupt_local_file_is_replaced_by_a_verified_copy(model_mirror, cpu_entry, tmp_path):
    (tmp_path / CPU_FILE).write_bytes(b"truncated")
    assert file_state(tmp_path / CPU_FILE, cpu_entry) == "mismatch"
    fetch.fetch_file(cpu_entry, tmp_path, [str(model_mirror)], offline=True)
    assert file_state(tmp_path / CPU_FILE, cpu_entry) == "verified"


def test_interrupted_download_leaves_no_partial_file(model_mirror, cpu_entry, tmp_path):
    handler = type("Handler", (_HalfThenHangUp,), {"payload": (model_mirror / CPU_FILE).read_bytes()})
    target = tmp_path / "data"
    for url in serve(handler):
        with pytest.raises(UnavailableError, match="interrupted"):
            fetch.fetch_file(cpu_entry, target, [url], offline=True)
    assert leftovers(target) == []


def test_a_changed_sidecar_does_not_vouch_for_a_replaced_file(model_mirror, cpu_entry, tmp_path):
    path, _ = fetch.fetch_file(cpu_entry, tmp_path, [str(model_mirror)], offline=True)
    path.write_bytes(b"x" * path.stat().st_size)  # same size, new mtime: the sidecar no longer applies
    assert file_state(path, cpu_entry) == "mismatch"


def test_mirror_list_from_the_environment(monkeypatch):
    monkeypatch.setenv("EDGED_MIRROR", "/srv/models:http://[::1]:8000/m:https://mirror.example:8443/x")
    assert fetch.mirrors_from_env() == ["/srv/models", "http://[::1]:8000/m", "https://mirror.example:8443/x"]


def edged(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "EDGED_DATA_DIR": str(data_dir), **env}
    environment.pop("EDGED_MIRROR", None) if "EDGED_MIRROR" not in env else None
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, timeout=120,
                          env=environment)


def test_cli_fetch_without_names_gets_the_default_model_and_the_samples(model_mirror, image_mirror, tmp_path):
    result = edged("models", "fetch", "--offline", data_dir=tmp_path,
                   EDGED_MIRROR=f"{model_mirror}:{image_mirror}")
    assert result.returncode == 0, result.stderr
    assert leftovers(tmp_path / "models") == [CPU_FILE, CPU_FILE + ".verified"]
    assert {p for p in leftovers(tmp_path / "samples") if not p.endswith(".verified")} == {
        "grace_hopper.bmp", "cat.bmp", "pets.jpg", "owl.jpg", "squat.bmp"}
    listing = edged("models", "list", data_dir=tmp_path)
    assert listing.returncode == 0
    default_cpu = next(line for line in listing.stdout.splitlines() if line.startswith("ssd_mobilenet_v1_coco_quant *"))
    assert default_cpu.split()[2:5] == ["detector", "cpu", "verified"]
    assert "samples" in listing.stdout and "5/5" in listing.stdout


def test_cli_fetch_errors_are_one_line_with_documented_codes(model_mirror, tmp_path):
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / CPU_FILE).write_bytes(b"not the model")
    bad = edged("models", "fetch", "ssd_mobilenet_v1_coco_quant", "--mirror", str(tampered), "--offline",
                data_dir=tmp_path / "data")
    assert bad.returncode == EX_DATAERR
    assert bad.stderr.count("\n") == 1 and CPU_SHA256 in bad.stderr and "Traceback" not in bad.stderr
    missing = edged("models", "fetch", "ssd_mobilenet_v2_coco_quant", "--mirror", str(model_mirror), "--offline",
                    data_dir=tmp_path / "data")
    assert missing.returncode == EX_UNAVAILABLE
    assert missing.stderr.startswith("edged models fetch: error: ssd_mobilenet_v2_coco_quant_postprocess.tflite")
    unknown = edged("models", "fetch", "no_such_model", data_dir=tmp_path / "data")
    assert unknown.returncode == 78 and unknown.stderr.count("\n") == 1 and "unknown model" in unknown.stderr
    no_raw = edged("models", "fetch", "ssd_mobilenet_v2_coco_quant", "--variant", "raw", data_dir=tmp_path / "d")
    assert no_raw.returncode == 78 and "has no raw variant" in no_raw.stderr


def test_cli_fetch_raw_variant_brings_its_anchors_and_decode_parameters(model_mirror, tmp_path):
    result = edged("models", "fetch", "ssd_mobilenet_v1_coco_quant", "--variant", "raw", "--mirror",
                   str(model_mirror), "--offline", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p for p in leftovers(tmp_path / "models") if not p.endswith(".verified")] == [
        "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_no_nms.tflite",
        "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_no_nms_anchors.npy",
        "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_no_nms_decode.json"]


def test_manifest_labels_are_the_shared_coco_labels(model_mirror):
    import importlib.resources

    packaged = importlib.resources.files("edged._models").joinpath("coco_labels.txt").read_bytes()
    assert packaged == (model_mirror / "coco_labels.txt").read_bytes()


def test_progress_lines_when_not_a_terminal(model_mirror, cpu_entry, tmp_path):
    class Log(list):
        def write(self, text: str) -> None:
            self.append(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    log = Log()
    fetch.fetch_file(cpu_entry, tmp_path, [str(model_mirror)], offline=True, progress_stream=log)
    assert [line.split(": ")[1].split()[0] for line in log] == ["25%", "50%", "75%", "100%"]
