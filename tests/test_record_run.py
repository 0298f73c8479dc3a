"""Recording inside `edged run`: the real daemon on the sample photos, a real mosquitto, the files it leaves.

One run records four cameras, each with one policy (`[cameras.record]`
overrides into one dataset directory), and what each left is checked against
what the model finds on the photos (`sample_frames`: the same model, run here);
the export of that dataset is read by pycocotools. Two more runs: a tiny quota
(rotates oldest-first, never exceeded, sampled while edged writes) and a
read-only record directory (a real read-only bind mount in a private mount
namespace: one log line, a counter in `…/stats`, detections go on). A SIGHUP keeps the
recorder when recording did not change and replaces it when it did.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from edged.dataset.layout import FrameRecord, read_record, sidecars
from tests.edged_process import REPO, EdgedRun, broker_url
from tests.fixtures.broker import Subscriber, assert_valid_payloads
from tests.fixtures.dataset import allocated
from tests.test_data_dir import mounted, requires_namespaces

DEVICE = "pi-rec"
BAND = (0.3, 0.6)  # [record] uncertain_min, uncertain_max defaults


def frames(root: Path, camera: str) -> list[FrameRecord]:
    return [read_record(path) for path in sidecars(root) if path.parent.name == camera]


def in_band(scores: list[float]) -> bool:
    return any(BAND[0] <= score < BAND[1] for score in scores)


def captured(record: FrameRecord) -> float:
    return dt.datetime.strptime(record.captured_at, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()



def stop(run: EdgedRun) -> None:
    run.signal(signal.SIGTERM)
    assert run.wait(timeout=15) == 0, run.text[-2000:]


@pytest.fixture
def broker(mosquitto):
    return mosquitto()


def test_each_policy_keeps_the_frames_it_should_and_the_export_loads_in_pycocotools(
        fetched_data_dir: Path, sample_frames, broker, tmp_path: Path):
    samples, root = fetched_data_dir / "samples", tmp_path / "dataset"
    camera = '[[cameras]]\nname = "{}"\nsource = "{}"\nfps = 4\n[cameras.record]\nenabled = true\n'
    config = tmp_path / "edged.toml"
    config.write_text(
        f'[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
        f'[record]\ndirectory = "{root}"\nuncertain_gap_seconds = 0.0\nqueue_size = 32\n'
        + camera.format("uncertain", samples) + 'policies = ["uncertain"]\n'
        + camera.format("labels", samples) + 'policies = ["uncertain"]\nlabels = ["chair", "bird"]\n'
        + camera.format("interval", samples) + 'policies = ["interval"]\ninterval_seconds = 1.0\n'
        + camera.format("objects", samples / "pets.jpg") + 'policies = ["new_object"]\n')
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir)
    try:
        subscriber.wait_topic(f"edged/{DEVICE}/interval/detections", count=16, timeout=40)  # 3+ passes
        subscriber.wait_for(lambda ms: any(m.topic == f"edged/{DEVICE}/stats" and m.json()["record"]
                                           and m.json()["record"]["saved"] for m in ms))
        stop(run)
    finally:
        run.stop()
        subscriber.stop()
    by_size = {sample.image.shape[1::-1]: [d.score for d in sample.detections] for sample in sample_frames}
    labels_of = {sample.image.shape[1::-1]: sample.detections for sample in sample_frames}

    # uncertain: exactly the photos with a detection in the band, each with every detection down to 0.3
    kept = frames(root, "uncertain")
    uncertain = {size for size, scores in by_size.items() if in_band(scores)}
    assert {(f.width, f.height) for f in kept} == uncertain
    for frame in kept:
        assert frame.reasons == ["uncertain"] and in_band([d.score for d in frame.detections])
        want = sorted((d.label, d.score) for d in labels_of[(frame.width, frame.height)])
        assert sorted((d.label, d.score) for d in frame.detections) == want
    # a label allow-list: only photos whose in-band detections include an allowed label
    allowed = {size for size, found in labels_of.items()
               if any(d.label in ("chair", "bird") and BAND[0] <= d.score < BAND[1] for d in found)}
    assert allowed and {(f.width, f.height) for f in frames(root, "labels")} == allowed
    # interval: one frame per second of capture time, whatever it shows
    times = sorted(captured(f) for f in frames(root, "interval"))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 3 and all(0.999 <= gap < 2.0 for gap in gaps), gaps
    # new_object: the frame each dog's track was confirmed in, with the event ids …/events published
    events = [m.json() for m in subscriber.on(f"edged/{DEVICE}/objects/events")]
    new_ids = {event["id"] for event in events if event["type"] == "new"}
    objects = frames(root, "objects")
    assert new_ids and 1 <= len(objects) <= len(new_ids)
    assert {d.track_id for f in objects for d in f.detections if d.track_id} == new_ids
    assert all(f.reasons == ["new_object"] for f in objects)
    # published detections stay at the detector's threshold while the band below it is recorded
    published = [d["score"] for m in subscriber.messages if m.topic.endswith("/detections")
                 for d in m.json()["detections"]]
    assert published and min(published) >= 0.5
    stats = [m.json()["record"] for m in subscriber.on(f"edged/{DEVICE}/stats")]
    assert stats[-1]["stopped"] is None and stats[-1]["write_errors"] == 0
    assert assert_valid_payloads(subscriber.messages)

    out = tmp_path / "coco"
    export = [sys.executable, "-m", "edged", "dataset", "export", str(root), "--format", "coco", str(out)]
    subprocess.run(export, cwd=REPO, check=True, capture_output=True)
    from pycocotools.coco import COCO

    coco = COCO(str(out / "labels.json"))
    records = [read_record(path) for path in sidecars(root)]
    assert len(coco.getImgIds()) == len(records)
    assert len(coco.getAnnIds()) == sum(len(r.detections) for r in records)
    for image in coco.loadImgs(coco.getImgIds()):
        with Image.open(out / "images" / image["file_name"]) as picture:
            assert picture.size == (image["width"], image["height"])


def test_a_tiny_quota_rotates_oldest_first_and_is_never_exceeded(fetched_data_dir: Path, broker,
                                                                 tmp_path: Path):
    root, quota = tmp_path / "dataset", 400_000
    config = tmp_path / "edged.toml"
    config.write_text(f'[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
                      f'[record]\nenabled = true\ndirectory = "{root}"\npolicies = ["interval"]\n'
                      f'interval_seconds = 0.0\nquota_mb = {quota / 1e6}\nqueue_size = 32\n'
                      f'[[cameras]]\nname = "cam0"\nfps = 10\n')
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/stats",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir)
    seen: set[str] = set()
    peak = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (root / "cam0").is_dir():
                peak = max(peak, allocated(root))
                seen |= {p.name for p in (root / "cam0").glob("*.json")}
            rotated = [m.json()["record"]["rotated"] for m in subscriber.on(f"edged/{DEVICE}/stats")]
            if rotated and rotated[-1] >= 10:
                break
            time.sleep(0.01)
        stop(run)
    finally:
        run.stop()
        subscriber.stop()
    stats = subscriber.on(f"edged/{DEVICE}/stats")[-1].json()["record"]
    assert stats["rotated"] >= 10 and stats["stopped"] is None, stats
    assert stats["limit_bytes"] == quota and stats["bytes_used"] <= quota
    assert peak <= quota and allocated(root) <= quota
    left = sorted(p.name for p in (root / "cam0").glob("*.json"))
    assert left and left == sorted(seen | set(left))[-len(left):]  # the newest stayed, the oldest went


@requires_namespaces
def test_a_read_only_record_directory_stops_recording_with_one_line_while_detections_go_on(
        fetched_data_dir: Path, broker, tmp_path: Path):
    root = tmp_path / "dataset"
    root.mkdir()
    config = tmp_path / "edged.toml"
    config.write_text(f'[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
                      f'[record]\nenabled = true\ndirectory = "{root}"\npolicies = ["interval"]\n'
                      f'interval_seconds = 0.0\n[[cameras]]\nname = "cam0"\nfps = 10\n')
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir,
                   command=mounted("ro", root, [sys.executable, "-m", "edged", "run"]))
    try:
        messages = subscriber.wait_for(lambda ms: any(
            m.topic.endswith("/stats") and m.json()["record"]["dropped_stopped"] > 0 for m in ms), timeout=30)
        detections_then = sum(m.topic.endswith("/detections") for m in messages)
        subscriber.wait_for(lambda ms: sum(m.topic.endswith("/detections") for m in ms) > detections_then + 4)
        stop(run)
    finally:
        run.stop()
        subscriber.stop()
    record = subscriber.on(f"edged/{DEVICE}/stats")[-1].json()["record"]
    assert "read-only file system" in record["stopped"].lower() and record["write_errors"] == 1, record
    assert record["saved"] == 0 and record["dropped_stopped"] > 0
    assert run.text.count("recording stopped:") == 1, run.text
    assert "detection and publishing go on" in run.text
    assert list(root.iterdir()) == []
    assert os.access(root, os.W_OK)  # only the namespace saw it read-only


@pytest.mark.parametrize("table, key", [("[record]\nenabled = true\nlabels = [\"persn\"]\n", "record.labels"),
                                        ('[[cameras]]\n[cameras.record]\nlabels = ["persn"]\n',
                                         "cameras[0].record.labels")])
def test_config_check_refuses_a_record_label_the_model_does_not_have(fetched_data_dir: Path, tmp_path: Path,
                                                                     table: str, key: str):
    config = tmp_path / "edged.toml"
    config.write_text(table)
    check = subprocess.run([sys.executable, "-m", "edged", "config", "check", str(config)], cwd=REPO,
                           env={**os.environ, "EDGED_DATA_DIR": str(fetched_data_dir)}, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 78 and check.stderr.count("\n") == 1, check.stderr
    assert f"{key}: unknown label 'persn'" in check.stderr


def test_sighup_keeps_the_recorder_unless_recording_changed(fetched_data_dir: Path, broker, tmp_path: Path):
    from tests.edged_process import NotifyListener

    root, config = tmp_path / "dataset", tmp_path / "edged.toml"
    text = (f'[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
            f'[record]\nenabled = true\ndirectory = "{root}"\npolicies = ["interval"]\n'
            f'interval_seconds = 0.5\n'
            f'[[cameras]]\nname = "cam0"\nfps = 10\n')
    config.write_text(text)
    notify = NotifyListener(tmp_path)
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/stats",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir, notify=notify)

    def offered_after(sent: float, count: int) -> list[int]:
        notify.wait_for("READY=1", since=sent, timeout=20)
        before = len(subscriber.on(f"edged/{DEVICE}/stats"))
        subscriber.wait_topic(f"edged/{DEVICE}/stats", count=before + count, timeout=20)
        return [m.json()["record"]["offered"] for m in subscriber.on(f"edged/{DEVICE}/stats")[before:]]

    try:
        offered = offered_after(0.0, 3)
        config.write_text(text.replace("fps = 10", "fps = 8"))  # the camera changed, recording did not
        sent = time.monotonic()
        run.signal(signal.SIGHUP)
        kept = offered_after(sent, 2)
        config.write_text(text.replace("fps = 10", "fps = 8").replace("interval_seconds = 0.5",
                                                                    "interval_seconds = 0.25"))
        sent = time.monotonic()
        run.signal(signal.SIGHUP)
        run.wait_log("reload: applying the new configuration", count=2)
        replaced = offered_after(sent, 1)
        stop(run)
    finally:
        run.stop()
        subscriber.stop()
        notify.close()
    assert offered == sorted(offered) and kept[0] > offered[-1]  # counting on: the same recorder
    assert replaced[0] < kept[-1]  # counting from 0 again: a new recorder
    assert run.text.count("recording camera(s) cam0 into") == 2
    assert len(list(sidecars(root))) >= 3  # what the first recorder wrote is still there


@pytest.mark.parametrize("where, status", [("dataset", "OK"), ("a-file/dataset", "WARN")])
def test_doctor_says_whether_recording_can_write(fetched_data_dir: Path, tmp_path: Path, where: str,
                                                 status: str):
    (tmp_path / "a-file").write_text("not a directory")
    config = tmp_path / "edged.toml"
    config.write_text(f'[record]\nenabled = true\ndirectory = "{tmp_path / where}"\n')
    doctor = subprocess.run([sys.executable, "-m", "edged", "doctor", "--config", str(config)], cwd=REPO,
                            env={**os.environ, "EDGED_DATA_DIR": str(fetched_data_dir)}, capture_output=True,
                            text=True, timeout=60)
    line = next(line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["record"])
    assert line.split()[0] == status and str(tmp_path / where) in line, line
