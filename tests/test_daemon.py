"""`edged run` as a subprocess with the real model, a real mosquitto, a real NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from edged.errors import EX_CONFIG, EX_UNAVAILABLE
from edged.types import Box
from tests.edged_process import REPO, EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Subscriber, assert_valid_payloads


@pytest.fixture
def broker(mosquitto):
    return mosquitto()


@pytest.fixture
def notify(tmp_path: Path):
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


@pytest.fixture
def runs():
    started: list[EdgedRun] = []

    def start(args: list[str], **kwargs) -> EdgedRun:
        run = EdgedRun(args, **kwargs)
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()


def detect_json(images: list[Path], data_dir: Path) -> dict[tuple[int, int], list[dict]]:
    """`edged detect --json --backend cpu` on the photos, keyed by image size."""
    argv = [sys.executable, "-m", "edged", "detect", "--json", "--backend", "cpu", *map(str, images)]
    env = {**os.environ, "EDGED_DATA_DIR": str(data_dir)}
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    return {(r["width"], r["height"]): r["detections"] for r in records}


def same_detections(got: list[dict], want: list[dict]) -> bool:
    if [(d["label"], d["class_id"], d["score"]) for d in got] != [(d["label"], d["class_id"], d["score"])
                                                                  for d in want]:
        return False
    return all(Box(**g["box"]).iou(Box(**w["box"])) > 0.999 for g, w in zip(got, want))


def test_subscriber_receives_what_edged_detect_finds_on_the_sample_photos(fetched_data_dir: Path, broker,
                                                                           notify, runs):
    samples = sorted(p for p in (fetched_data_dir / "samples").iterdir() if p.suffix in (".jpg", ".bmp"))
    sizes = {Image.open(p).size for p in samples}
    assert len(sizes) == len(samples)  # the payload's frame size tells the photos apart
    subscriber = Subscriber("::1", broker.port, ("edged/#",))
    try:
        run = runs(["--backend", "cpu", "--broker", broker_url(broker), "--device-id", "pi-test"],
                   data_dir=fetched_data_dir, notify=notify)
        notify.wait_for("READY=1")
        topic = "edged/pi-test/cam0/detections"
        subscriber.wait_for(lambda ms: {(m.json()["frame"]["width"], m.json()["frame"]["height"])
                                        for m in ms if m.topic == topic} >= sizes, timeout=30)
        expected = detect_json(samples, fetched_data_dir)
        by_size = {}
        for message in subscriber.on(topic):
            payload = message.json()
            by_size.setdefault((payload["frame"]["width"], payload["frame"]["height"]), payload)
        for size, want in expected.items():
            got = by_size[size]
            assert got["device"] == "pi-test" and got["camera"] == "cam0"
            assert got["backend"].startswith("cpu:") and got["model"] == "ssd_mobilenet_v1_coco_quant"
            assert same_detections(got["detections"], want), (size, got["detections"], want)
        status = subscriber.on("edged/pi-test/status")[-1].json()
        assert status["state"] == "online" and status["backend"].startswith("cpu:")
        assert assert_valid_payloads(subscriber.messages) >= len(samples)
        assert "fps cap 2" in run.text  # still images are paced by default
    finally:
        subscriber.stop()


def test_quick_start_starts_its_own_broker_on_the_default_address(fetched_data_dir: Path, notify, runs):
    """`edged run` without a broker flag: nothing listens on [::1]:1883, so it runs a private mosquitto."""
    from edged.publish.mosquitto import is_listening

    if is_listening("::1", 1883):
        pytest.skip("something already listens on [::1]:1883")
    run = runs(["--backend", "cpu", "--device-id", "pi-quick"], data_dir=fetched_data_dir, notify=notify)
    notify.wait_for("READY=1")
    subscriber = Subscriber("::1", 1883, ("edged/pi-quick/#",))
    try:
        subscriber.wait_topic("edged/pi-quick/cam0/detections", timeout=30)
        assert len(re.findall(r"started a private mosquitto there \(pid \d+\)", run.text)) == 1
    finally:
        subscriber.stop()
    run.signal(signal.SIGTERM)
    assert run.wait(timeout=10) == 0
    assert not is_listening("::1", 1883)  # the private broker went with the daemon


def feed_fifo(fifo: Path, jpeg: bytes, feeding: threading.Event, done: threading.Event) -> None:
    """Write one JPEG per open of the FIFO while `feeding` is set: a camera that can stall."""
    while not done.is_set():
        if not feeding.is_set():
            time.sleep(0.05)
            continue
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader yet
            time.sleep(0.02)
            continue
        try:
            with os.fdopen(fd, "wb") as pipe:
                os.set_blocking(pipe.fileno(), True)
                pipe.write(jpeg)
        except BrokenPipeError:  # the reader went away mid-picture (daemon stopping)
            pass
        time.sleep(0.1)  # let the reader see EOF before the next picture starts


def test_ready_before_watchdog_pings_that_stop_when_the_source_stalls(fetched_data_dir: Path, broker, notify,
                                                                      runs, tmp_path: Path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    jpeg = (fetched_data_dir / "samples" / "pets.jpg").read_bytes()
    feeding, done = threading.Event(), threading.Event()
    feeding.set()
    feeder = threading.Thread(target=feed_fifo, args=(fifo, jpeg, feeding, done), daemon=True)
    feeder.start()
    config = tmp_path / "edged.toml"
    config.write_text('[service]\nstatus_interval_seconds = 0.5\n[[cameras]]\nname = "door"\nfps = 5\n')
    try:
        run = runs(["--config", str(config), "--source", str(fifo), "--backend", "cpu",
                    "--broker", broker_url(broker), "--device-id", "pi-wd"],
                   data_dir=fetched_data_dir, notify=notify, watchdog_usec=1_000_000)
        notify.wait_for("WATCHDOG=1", count=4, timeout=30)
        lines = notify.lines()
        assert lines.index("READY=1") < lines.index("WATCHDOG=1")
        assert any(line.startswith("STATUS=") and "fps" in line and "cpu:" in line for line in lines)
        feeding.clear()  # the camera stalls: the reader blocks opening the FIFO, no frame gets through
        time.sleep(1.5)  # the frame in flight may still complete and ping once
        stalled_since = time.monotonic()
        time.sleep(3.0)
        assert notify.count("WATCHDOG=1", since=stalled_since) == 0
        assert any(line.startswith("STATUS=") for line in notify.lines(since=stalled_since))  # still alive
        feeding.set()
        notify.wait_for("WATCHDOG=1", count=2, since=time.monotonic(), timeout=15)
        assert run.process.poll() is None
    finally:
        done.set()


def test_a_low_frame_rate_cap_keeps_the_watchdog_fed_between_frames(fetched_data_dir: Path, broker, notify,
                                                                     runs, tmp_path: Path):
    config = tmp_path / "edged.toml"
    config.write_text('[detector]\nbackend = "cpu"\n[[cameras]]\nfps = 0.2\n')  # one photo every 5 s
    subscriber = Subscriber("::1", broker.port, ("edged/pi-slow/cam0/detections",))
    try:
        runs(["--config", str(config), "--broker", broker_url(broker), "--device-id", "pi-slow"],
             data_dir=fetched_data_dir, notify=notify, watchdog_usec=1_000_000)
        subscriber.wait_topic("edged/pi-slow/cam0/detections", timeout=30)
        since = time.monotonic()
        time.sleep(3.0)  # well within the wait for the next photo
        assert len(subscriber.on("edged/pi-slow/cam0/detections")) == 1
        assert notify.count("WATCHDOG=1", since=since) >= 3  # idle by design is not a stall
    finally:
        subscriber.stop()


def test_sigterm_publishes_retained_offline_and_exits_zero(fetched_data_dir: Path, broker, notify, runs):
    subscriber = Subscriber("::1", broker.port, ("edged/pi-stop/#",))
    try:
        run = runs(["--backend", "cpu", "--broker", broker_url(broker), "--device-id", "pi-stop"],
                   data_dir=fetched_data_dir, notify=notify)
        subscriber.wait_topic("edged/pi-stop/cam0/detections", timeout=30)
        run.signal(signal.SIGTERM)
        assert run.wait(timeout=5) == 0
        assert "STOPPING=1" in notify.lines()
    finally:
        subscriber.stop()
    late = Subscriber("::1", broker.port, ("edged/pi-stop/status",))
    try:
        retained = late.wait_topic("edged/pi-stop/status")[0]
        assert retained.retain and retained.json()["state"] == "offline"
    finally:
        late.stop()


def test_bad_config_exits_78_naming_the_key_path(fetched_data_dir: Path, runs, tmp_path: Path):
    config = tmp_path / "edged.toml"
    config.write_text('[detector]\nthreads = "two"\n')
    run = runs(["--config", str(config)], data_dir=fetched_data_dir)
    assert run.wait(timeout=30) == EX_CONFIG
    assert f"{config}: detector.threads: Expected `int`, got `str`" in run.text
    config.write_text('[mqtt]\nbrokers = ["mqtt://[fe80::1]:1883"]\n')  # link-local without a zone
    bad_broker = runs(["--config", str(config)], data_dir=fetched_data_dir)
    assert bad_broker.wait(timeout=30) == EX_CONFIG


def test_missing_model_exits_69_saying_what_to_fetch(runs, tmp_path: Path, broker):
    run = runs(["--backend", "cpu", "--broker", broker_url(broker)], data_dir=tmp_path / "empty")
    assert run.wait(timeout=30) == EX_UNAVAILABLE
    assert "edged models fetch ssd_mobilenet_v1_coco_quant" in run.text


def test_a_camera_missing_at_start_exits_69(fetched_data_dir: Path, runs, tmp_path: Path, broker):
    missing = str(tmp_path / "none" / "*.jpg")
    run = runs(["--backend", "cpu", "--broker", broker_url(broker), "--source", missing],
               data_dir=fetched_data_dir)
    assert run.wait(timeout=30) == EX_UNAVAILABLE
    assert "camera cam0: cannot open" in run.text


def test_two_cameras_share_one_worker(fetched_data_dir: Path, broker, runs, tmp_path: Path):
    samples = fetched_data_dir / "samples"
    config = tmp_path / "edged.toml"
    config.write_text(f'[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
                      f'[[cameras]]\nname = "photos"\nfps = 4\n'
                      f'[[cameras]]\nname = "jpegs"\nsource = "{samples}/*.jpg"\nfps = 4\n')
    subscriber = Subscriber("::1", broker.port, ("edged/pi-two/#",))
    try:
        run = runs(["--config", str(config), "--broker", broker_url(broker), "--device-id", "pi-two"],
                   data_dir=fetched_data_dir)
        for camera in ("photos", "jpegs"):
            subscriber.wait_topic(f"edged/pi-two/{camera}/detections", count=3, timeout=30)
        jpeg_sizes = {(m.json()["frame"]["width"], m.json()["frame"]["height"])
                      for m in subscriber.on("edged/pi-two/jpegs/detections")}
        assert jpeg_sizes <= {Image.open(p).size for p in samples.glob("*.jpg")}
        stats = subscriber.wait_topic("edged/pi-two/stats", count=2)[-1].json()
        assert set(stats["cameras"]) == {"photos", "jpegs"}
        assert all(c["source_state"] == "streaming" for c in stats["cameras"].values())
        assert len(re.findall(r"inference worker pid \d+", run.text)) == 1
    finally:
        subscriber.stop()


def test_sighup_refuses_a_bad_file_and_applies_a_good_one(fetched_data_dir: Path, broker, notify, runs,
                                                          tmp_path: Path):
    config = tmp_path / "edged.toml"
    good = '[detector]\nbackend = "cpu"\n[[cameras]]\nname = "lab"\nfps = 10\n'
    config.write_text(good)
    subscriber = Subscriber("::1", broker.port, ("edged/pi-hup/lab/detections",))
    try:
        run = runs(["--config", str(config), "--broker", broker_url(broker), "--device-id", "pi-hup"],
                   data_dir=fetched_data_dir, notify=notify)
        subscriber.wait_topic("edged/pi-hup/lab/detections", count=3, timeout=30)
        config.write_text('[detector]\nbackend = "cpu"\nthreshold = 7\n')
        run.signal(signal.SIGHUP)
        run.wait_log(r"reload refused, keeping the running configuration: .*detector.threshold")
        before = len(subscriber.messages)
        subscriber.wait_for(lambda ms: len(ms) >= before + 3, timeout=20)  # still publishing
        config.write_text(good.replace('backend = "cpu"\n', 'backend = "cpu"\nallow_labels = ["cat"]\n'))
        sent = time.monotonic()
        run.signal(signal.SIGHUP)
        run.wait_log("reload: applying the new configuration")
        notify.wait_for("READY=1", since=sent, timeout=20)
        assert "RELOADING=1" in notify.lines(since=sent)
        reloaded = len(subscriber.messages)
        subscriber.wait_for(lambda ms: len(ms) >= reloaded + 6, timeout=20)
        after = [m.json() for m in subscriber.messages[reloaded + 1:]]  # (one may have been in flight)
        labels = {d["label"] for m in after for d in m["detections"]}
        assert labels == {"cat"}, labels
        workers = len(re.findall(r"inference worker pid \d+", run.text))
        config.write_text(config.read_text().replace("fps = 10", "fps = 5"))  # cameras only: same worker
        sent = time.monotonic()
        run.signal(signal.SIGHUP)
        run.wait_log("reload: applying the new configuration", count=2)
        notify.wait_for("READY=1", since=sent, timeout=20)
        assert "fps cap 5" in run.text
        assert len(re.findall(r"inference worker pid \d+", run.text)) == workers
    finally:
        subscriber.stop()


class SilentServer:
    """A TCP server that accepts connections and never says a word: a camera hanging mid-handshake."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self._sock.bind(("::1", 0))
        self._sock.listen()
        self.port = self._sock.getsockname()[1]
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(connection)
            self.accepted.set()

    def close(self) -> None:
        self._sock.close()
        for connection in self._held:
            connection.close()


def test_sigterm_while_a_stream_is_still_opening_exits_zero_at_once(fetched_data_dir: Path, broker, runs,
                                                                     tmp_path: Path):
    server = SilentServer()
    config = tmp_path / "edged.toml"
    config.write_text(f'[[cameras]]\nname = "gate"\nsource = "rtsp://[::1]:{server.port}/stream"\n'
                      'timeout_seconds = 20\n')
    try:
        run = runs(["--config", str(config), "--backend", "cpu", "--broker", broker_url(broker)],
                   data_dir=fetched_data_dir)
        assert server.accepted.wait(30), run.text  # the open is under way, blocked on the silent server
        time.sleep(0.5)
        sent = time.monotonic()
        run.signal(signal.SIGTERM)
        code = run.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        server.close()
    print(f"exit {code} {took:.2f} s after SIGTERM")
    assert code == 0, run.text[-2000:]
    assert took < 3.0
    assert "stop requested while the cameras were opening" in run.text


def test_sighup_keeps_seq_growing_one_run_id_and_no_offline_flap(fetched_data_dir: Path, broker, notify, runs,
                                                                  tmp_path: Path):
    config = tmp_path / "edged.toml"
    text = ('[detector]\nbackend = "cpu"\n[publish]\nstats_interval_seconds = 1.0\n'
            '[[cameras]]\nname = "lab"\nfps = 10\n')
    config.write_text(text)
    subscriber = Subscriber("::1", broker.port, ("edged/pi-seq/#",))
    topic = "edged/pi-seq/lab/detections"
    try:
        run = runs(["--config", str(config), "--broker", broker_url(broker), "--device-id", "pi-seq"],
                   data_dir=fetched_data_dir, notify=notify)
        subscriber.wait_topic(topic, count=4, timeout=30)
        publish_only = ("stats_interval_seconds = 1.0", "stats_interval_seconds = 2.0")
        camera = ("fps = 10", "fps = 8")  # its source is rebuilt
        for count, change in ((1, publish_only), (2, camera)):
            text = text.replace(*change)
            config.write_text(text)
            sent = time.monotonic()
            run.signal(signal.SIGHUP)
            run.wait_log("reload: applying the new configuration", count=count)
            notify.wait_for("READY=1", since=sent, timeout=20)
            subscriber.wait_topic(topic, count=len(subscriber.on(topic)) + 4, timeout=20)
        subscriber.wait_topic("edged/pi-seq/stats", count=2)
        messages = list(subscriber.messages)
    finally:
        subscriber.stop()
    seqs = [m.json()["seq"] for m in messages if m.topic == topic]
    assert seqs == sorted(set(seqs)), seqs  # never back to 1, never repeated
    run_ids = {m.json()["run_id"] for m in messages
               if m.topic in (topic, "edged/pi-seq/status", "edged/pi-seq/stats")}
    assert len(run_ids) == 1 and len(run_ids.pop()) == 16
    states = [m.json()["state"] for m in messages if m.topic == "edged/pi-seq/status"]
    assert states and "offline" not in states, states
    assert assert_valid_payloads(messages) >= 12


def test_an_oversized_picture_is_skipped_with_bounded_memory(fetched_data_dir: Path, broker, runs,
                                                            tmp_path: Path):
    """A 12000x12000 PNG (432 MB decoded) beside two photos: skipped from its header, once, with a warning."""
    from tests.bad_files import write_big_png

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.bmp", "pets.jpg"):
        shutil.copy(fetched_data_dir / "samples" / name, photos / name)
    write_big_png(photos / "big.png", 12000, 12000)
    subscriber = Subscriber("::1", broker.port, ("edged/pi-big/cam0/detections",))
    try:
        run = runs(["--backend", "cpu", "--broker", broker_url(broker), "--device-id", "pi-big",
                    "--source", str(photos)], data_dir=fetched_data_dir)
        received = subscriber.wait_topic("edged/pi-big/cam0/detections", count=6, timeout=30)
        status = Path(f"/proc/{run.process.pid}/status").read_text()
    finally:
        subscriber.stop()
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    print(f"daemon peak RSS {peak_mb:.0f} MB")
    sizes = {(m.json()["frame"]["width"], m.json()["frame"]["height"]) for m in received}
    assert sizes == {Image.open(photos / n).size for n in ("cat.bmp", "pets.jpg")}  # both, three passes
    assert peak_mb < 400  # decoding the PNG alone would take 432 MB
    assert run.text.count("big.png: 12000x12000 pixels is more than the limit of 50 megapixels") == 1
