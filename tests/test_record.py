"""The Recorder on its own: real photos, the real model's detections, real filesystems (tmpfs to fill one).

What a user checks afterwards is what the tests check: which frames are on
disk for each policy, that the quota holds at every moment and the oldest go
first, that a disk going read-only or full stops recording with one log line
and a counter while `offer()` keeps returning, and that a killed writer never
leaves a half frame behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest
from PIL import Image

from edged.dataset.layout import iter_frames, read_record
from edged.record.policy import TrackUpdate
from edged.record.recorder import Recorder
from edged.record.settings import RecordOverride, RecordSettings
from edged.types import Detection
from tests.fixtures.dataset import START, allocated

MB = 1_000_000


def record(sample_frames, root: Path, offers: list[tuple[int, float, list[TrackUpdate] | None]], *,
           camera: str = "cam0", **settings) -> Recorder:
    """Offer sample frames (index in sample_frames, capture offset, tracks); returns once all are written."""
    settings = {"enabled": True, "queue_size": 64, **settings}
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(**settings), model=first.model, labels=first.labels, directory=root)
    for seq, (index, offset, tracks) in enumerate(offers, 1):
        sample = sample_frames[index]
        recorder.offer(sample.frame(seq, START + offset, camera), sample.detections, tracks)
    recorder.close()
    return recorder


def kept(root: Path) -> list[int]:
    """Sequence numbers of the frames on disk, oldest first."""
    return [int(f.name.split("-")[-1]) for f in sorted(iter_frames(root), key=lambda f: f.record.captured_at)]



def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_uncertain_keeps_frames_with_a_detection_in_the_band(sample_frames, tmp_path: Path):
    offers = [(i, 20.0 * i, None) for i in range(len(sample_frames))]  # far enough apart for the gap
    recorder = record(sample_frames, tmp_path, offers, policies=["uncertain"], uncertain_min=0.3,
                      uncertain_max=0.6)
    expected = [i + 1 for i, s in enumerate(sample_frames) if any(0.3 <= d.score < 0.6 for d in s.detections)]
    assert 0 < len(expected) < len(sample_frames)  # the photos hold both kinds: the test can tell them apart
    assert kept(tmp_path) == expected
    assert recorder.stats().saved == len(expected) and recorder.stats().offered == len(sample_frames)
    for frame in iter_frames(tmp_path):
        sample = sample_frames[int(frame.name.split("-")[-1]) - 1]
        assert frame.record.reasons == ["uncertain"]
        assert [(a.label, a.score) for a in frame.record.detections] == [(d.label, d.score) for d in
                                                                          sample.detections]
        with Image.open(frame.image_path) as picture:
            picture.load()
            assert picture.size == (sample.image.shape[1], sample.image.shape[0])


def test_uncertain_gap_and_label_allow_list(sample_frames, tmp_path: Path):
    """Which photos have a detection in the band depends on the resize (OpenCV or Pillow): taken from them."""
    def uncertain(i: int) -> set[str]:
        return {d.label for d in sample_frames[i].detections if 0.3 <= d.score < 0.6}

    band = [i for i in range(len(sample_frames)) if uncertain(i)]
    assert band, "no sample photo has a detection scoring 0.3-0.6"
    offers = [(i, float(n), None) for n, i in enumerate(band + [band[-1]] * 3)]  # one second apart
    record(sample_frames, tmp_path / "gap", offers, policies=["uncertain"], uncertain_gap_seconds=2.5)
    assert kept(tmp_path / "gap") == [n + 1 for n in range(len(offers)) if n % 3 == 0]  # 0 s, 3 s, 6 s…
    label = sorted(uncertain(band[-1]))[0]
    record(sample_frames, tmp_path / "one_label", offers, policies=["uncertain"], uncertain_gap_seconds=0,
           labels=[label])
    expected = [n + 1 for n, (i, _, _) in enumerate(offers) if label in uncertain(i)]
    assert kept(tmp_path / "one_label") == expected and len(expected) >= 4


def test_interval_keeps_one_frame_every_n_seconds_with_or_without_detections(sample_frames, tmp_path: Path):
    offers = [(n % len(sample_frames), 0.4 * n, None) for n in range(10)]  # 0 … 3.6 s
    record(sample_frames, tmp_path, offers, policies=["interval"], interval_seconds=1.0)
    assert kept(tmp_path) == [1, 4, 7, 10]  # 0, 1.2, 2.4, 3.6 s
    assert all(f.record.reasons == ["interval"] for f in iter_frames(tmp_path))


def test_new_object_keeps_the_first_and_the_best_frame_of_each_track(sample_frames, tmp_path: Path):
    a = lambda **flags: [TrackUpdate(0, "A", **flags)]  # noqa: E731 - the top detection is track A
    offers = [(4, 0.0, a(new=True, best_improved=True)), (4, 1.0, a(best_improved=True)), (4, 2.0, a()),
              (4, 3.0, a(best_improved=True)), (4, 4.0, a()), (4, 5.0, None)]
    recorder = record(sample_frames, tmp_path, offers, policies=["new_object"])
    assert kept(tmp_path) == [1, 4]  # the first, and the best: frame 2 was superseded by frame 4
    stats = recorder.stats()
    assert (stats.saved, stats.superseded, stats.frames_on_disk) == (3, 1, 2)
    for frame in iter_frames(tmp_path):
        assert frame.record.detections[0].track_id == "A" and frame.record.reasons == ["new_object"]


def test_a_camera_can_record_while_the_others_do_not(sample_frames, tmp_path: Path):
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(policies=["interval"], interval_seconds=0),
                        cameras={"door": RecordOverride(enabled=True)}, model=first.model,
                        labels=first.labels, directory=tmp_path)
    assert Recorder.wanted(recorder.settings, {"door": RecordOverride(enabled=True)})
    for seq, camera in enumerate(["cam0", "door", "cam0", "door"], 1):
        recorder.offer(first.frame(seq, START + seq, camera), first.detections)
    recorder.close()
    assert sorted(f.key.split("/")[0] for f in iter_frames(tmp_path)) == ["door", "door"]


def test_quota_rotates_oldest_first_and_is_never_exceeded(sample_frames, tmp_path: Path):
    quota_mb = 0.3
    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], allocated(tmp_path))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        offers = [(n % len(sample_frames), float(n), None) for n in range(12)]
        recorder = record(sample_frames, tmp_path, offers, policies=["interval"], interval_seconds=0,
                          quota_mb=quota_mb, quota_percent=100)
    finally:
        stop.set()
        watcher.join()
    on_disk = kept(tmp_path)
    stats = recorder.stats()
    assert 1 < len(on_disk) < 12 and on_disk == list(range(13 - len(on_disk), 13))  # the newest survive
    assert stats.rotated == 12 - len(on_disk) and stats.saved == 12
    assert peak[0] <= quota_mb * MB and allocated(tmp_path) <= quota_mb * MB
    assert stats.bytes_used == allocated(tmp_path)


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a tmpfs with the given options (root only): a disk we may fill and make read-only."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root and mount(8) to make a small or read-only filesystem")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = []

    def mount(options: str) -> Path:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(mountpoint)
        return mountpoint

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_quota_percent_yields_to_other_programs_filling_the_disk(sample_frames, tmpfs):
    disk = tmpfs("size=2m")
    first = sample_frames[0]
    settings = RecordSettings(enabled=True, policies=["interval"], interval_seconds=0, quota_percent=40,
                              queue_size=64)
    recorder = Recorder(settings, model=first.model, labels=first.labels, directory=disk)
    for seq in range(1, 9):
        recorder.offer(sample_frames[seq % 5].frame(seq, START + seq), [])
    wait_for(lambda: recorder.stats().saved == 8)
    before = recorder.stats().frames_on_disk
    (disk / "other-program.bin").write_bytes(b"\0" * 900_000)  # someone else takes half the disk
    for seq in range(9, 13):
        recorder.offer(sample_frames[seq % 5].frame(seq, START + seq), [])
    recorder.close()
    info = os.statvfs(disk)
    ours = allocated(disk) - allocated_file(disk / "other-program.bin")
    assert ours <= 0.4 * (ours + info.f_bavail * info.f_frsize)
    assert recorder.stats().frames_on_disk < before and recorder.stats().stopped is None


def allocated_file(path: Path) -> int:
    info = path.stat()
    return max(info.st_size, info.st_blocks * 512)


def assert_stopped_once(caplog, recorder: Recorder, reason: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("edged.record")]
    assert len(errors) == 1 and reason in errors[0].getMessage()
    assert "detection and publishing go on" in errors[0].getMessage()
    stats = recorder.stats()
    assert stats.stopped and reason in stats.stopped and stats.write_errors == 1


def test_read_only_disk_stops_recording_with_one_line_and_a_counter(sample_frames, tmpfs, caplog):
    disk = tmpfs("size=8m")
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(enabled=True, policies=["interval"], interval_seconds=0),
                        model=first.model, labels=first.labels, directory=disk)
    for seq in (1, 2):
        recorder.offer(first.frame(seq, START + seq), first.detections)
    wait_for(lambda: recorder.stats().saved == 2)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    for seq in range(3, 20):
        recorder.offer(first.frame(seq, START + seq), first.detections)  # never raises, never blocks
        time.sleep(0.01)
    recorder.close()
    assert_stopped_once(caplog, recorder, "Read-only file system")
    stats = recorder.stats()
    assert stats.saved == 2 and stats.dropped_stopped > 0
    assert kept(disk) == [1, 2]  # what was written before is whole and readable
    for frame in iter_frames(disk):
        with Image.open(frame.image_path) as picture:
            picture.load()


def test_full_disk_stops_recording_with_one_line_and_a_counter(sample_frames, tmpfs, caplog):
    disk = tmpfs("size=8m,nr_inodes=9")  # room for bytes, not for files: the write fails with ENOSPC
    first = sample_frames[0]
    settings = RecordSettings(enabled=True, policies=["interval"], interval_seconds=0, queue_size=64)
    recorder = Recorder(settings, model=first.model, labels=first.labels, directory=disk)
    for seq in range(1, 10):
        recorder.offer(first.frame(seq, START + seq), first.detections)
    recorder.close()
    assert_stopped_once(caplog, recorder, "No space left on device")
    saved = recorder.stats().saved
    assert saved >= 1 and kept(disk) == list(range(1, saved + 1))
    pictures = [p for p in (disk / "cam0").iterdir() if p.suffix == ".jpg"]
    assert all(p.with_suffix(".json").exists() for p in pictures)  # the failed frame's picture was removed


def test_falling_behind_drops_frames_and_counts_them(sample_frames, tmp_path: Path):
    recorder = record(sample_frames, tmp_path, [(n % 5, float(n), None) for n in range(40)],
                      policies=["interval"], interval_seconds=0, queue_size=1)
    stats = recorder.stats()
    assert stats.dropped_busy > 0 and stats.queued + stats.dropped_busy == 40
    assert stats.saved == stats.queued == len(kept(tmp_path))


def test_leftovers_of_an_interrupted_write_are_swept_at_start(sample_frames, tmp_path: Path, caplog):
    record(sample_frames, tmp_path, [(0, 0.0, None), (1, 1.0, None)], policies=["interval"],
           interval_seconds=0)
    camera = tmp_path / "cam0"
    (camera / ".20250101T000000.000000Z-000009.jpg.tmp").write_bytes(b"\xff\xd8 half a picture")
    (camera / "20250101T000000.000000Z-000009.jpg").write_bytes(b"\xff\xd8 no sidecar yet")
    caplog.set_level(logging.INFO, logger="edged.record")
    recorder = record(sample_frames, tmp_path, [(2, 2.0, None)], policies=["interval"], interval_seconds=0)
    assert sorted(p.name for p in camera.iterdir() if "000009" in p.name) == []
    assert any("removed 2 incomplete file(s)" in r.getMessage() for r in caplog.records)
    assert recorder.stats().frames_on_disk == 3


WRITER = """
import sys, time, msgspec, numpy as np
from pathlib import Path
from PIL import Image
from edged.record.recorder import Recorder
from edged.record.settings import RecordSettings
from edged.types import Detection, Frame
photos, detections, labels = sys.argv[1].split(","), sys.argv[2], sys.argv[3].split(",")
root = Path(sys.argv[4])
detections = msgspec.json.decode(open(detections, "rb").read(), type=list[list[Detection]])
images = [np.asarray(Image.open(p).convert("RGB").resize((1280, 960))) for p in photos]
recorder = Recorder(RecordSettings(enabled=True, policies=["interval"], interval_seconds=0, queue_size=64),
                    model="m", labels=labels, directory=root)
seq = 0
while True:
    for image, found in zip(images, detections):
        seq += 1
        h, w = image.shape[:2]
        recorder.offer(Frame(seq=seq, source="cam0", width=w, height=h, captured_ns=0,
                             captured_at=1.7e9 + seq, image=image), found)
        time.sleep(0.005)
"""


def test_a_killed_writer_leaves_only_whole_frames(sample_frames, fetched_data_dir: Path, tmp_path: Path):
    detections = tmp_path / "detections.json"
    detections.write_bytes(msgspec.json.encode([s.detections for s in sample_frames]))
    photos = ",".join(str(fetched_data_dir / "samples" / s.name) for s in sample_frames)
    root = tmp_path / "dataset"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, photos, str(detections),
                               ",".join(sample_frames[0].labels), str(root)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(list(root.glob("cam0/*.json"))) >= 8 or writer.poll() is not None, timeout=60)
    finally:
        writer.send_signal(signal.SIGKILL)  # mid-write, most likely: frames are 1280x960 JPEGs
        _, stderr = writer.communicate()
    assert writer.returncode == -signal.SIGKILL, stderr.decode()
    sidecars = sorted(root.glob("cam0/*.json"))
    assert len(sidecars) >= 8
    for sidecar in sidecars:  # every frame that exists is whole
        record = read_record(sidecar)
        with Image.open(sidecar.with_name(record.image)) as picture:
            picture.load()
            assert picture.size == (1280, 960)
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(enabled=True), model=first.model, labels=first.labels, directory=root)
    recorder.close()
    names = {p.name for p in (root / "cam0").iterdir()}
    assert all(not n.startswith(".") for n in names)  # temporary files swept
    stems = {suffix: {Path(n).stem for n in names if n.endswith(suffix)} for suffix in (".jpg", ".json")}
    assert stems[".jpg"] == stems[".json"]  # no picture without its sidecar
    assert recorder.stats().bytes_used == allocated(root)


def test_a_directory_of_another_label_map_is_refused_with_one_line(sample_frames, tmp_path: Path, caplog):
    (tmp_path / "labels.json").write_text(json.dumps({"version": 1, "labels": {"0": "hedgehog"}}))
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(enabled=True, policies=["interval"], interval_seconds=0),
                        model=first.model, labels=first.labels, directory=tmp_path)
    recorder.offer(first.frame(1, START), first.detections)
    recorder.close()
    assert_stopped_once(caplog, recorder, "another label map")
    assert not list(iter_frames(tmp_path))


def test_settings_decode_strictly_and_cameras_override_them():
    decoded = msgspec.toml.decode(b'enabled = true\npolicies = ["interval", "uncertain"]\nlabels = ["cat"]\n',
                                  type=RecordSettings)
    assert decoded.policies == ["interval", "uncertain"] and decoded.quota_percent == 10.0
    assert RecordSettings().enabled is False  # off by default
    for text, where in [(b"bogus = 1", "bogus"), (b'policies = ["sometimes"]', "$.policies[0]"),
                        (b"uncertain_min = 0.7", "$.uncertain_max"),
                        (b"quota_percent = 0", "$.quota_percent")]:
        with pytest.raises(msgspec.ValidationError, match=re.escape(where)):
            msgspec.toml.decode(text, type=RecordSettings)
    door = RecordOverride(labels=["person"], interval_seconds=5.0).apply(decoded)
    assert (door.labels, door.interval_seconds, door.policies, door.enabled) == (
        ["person"], 5.0, ["interval", "uncertain"], True)
    with pytest.raises(msgspec.ValidationError, match="uncertain_max"):
        RecordOverride(uncertain_min=0.9).apply(decoded)


def test_offering_nothing_to_keep_writes_nothing(sample_frames, tmp_path: Path):
    confident = [Detection(d.label, d.class_id, 0.9, d.box) for d in sample_frames[0].detections]
    first = sample_frames[0]
    recorder = Recorder(RecordSettings(enabled=True), model=first.model, labels=first.labels,
                        directory=tmp_path)
    for seq in range(1, 50):
        recorder.offer(first.frame(seq, START + seq), confident)
    recorder.close()
    stats = recorder.stats()
    assert (stats.offered, stats.queued, stats.saved) == (49, 0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]
