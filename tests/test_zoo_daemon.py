"""`edged run` with the model zoo in the daemon: a second stage names the bird the detector found, a
segmenter camera publishes area shares and zone coverage, and a killed worker hosting two models recovers.

One real daemon (a subprocess, CPU backend) with three cameras on real photos and a real mosquitto:
- `feeder`: parrot.jpg, `bird` → the iNat bird classifier (the detector finds one bird, 0.81);
- `tiny`: the same photo, but a minimum crop size larger than the bird's box (391 pixels): never classified;
- `garden`: bird_segmentation.bmp with DeepLab only (no detector), zones `left` and `right` halves.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.edged_process import EdgedRun, NotifyListener, broker_url
from tests.fixtures.broker import Subscriber, assert_valid_payloads

MACAW = "Ara macao (Scarlet Macaw)"
PREFIX = "edged/zoo"


def config_text(zoo_images: Path, broker_port: int) -> str:
    parrot, scene = zoo_images / "parrot.jpg", zoo_images / "bird_segmentation.bmp"
    return f"""
[device]
id = "zoo"

[detector]
backend = "cpu"

[mqtt]
brokers = ["mqtt://[::1]:{broker_port}"]

[tracking]
enabled = false

[[cameras]]
name = "feeder"
source = "{parrot}"
fps = 4

[[cameras.classify]]
label = "bird"
model = "mobilenet_v2_1.0_224_inat_bird_quant"
counts_by_subclass = true

[[cameras]]
name = "tiny"
source = "{parrot}"
fps = 4

[[cameras.classify]]
label = "bird"
model = "mobilenet_v2_1.0_224_inat_bird_quant"
min_crop_pixels = 400

[[cameras]]
name = "garden"
source = "{scene}"
fps = 2

[cameras.segment]
interval_seconds = 0.5
detect = false

[[cameras.zones]]
name = "left"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]

[[cameras.zones]]
name = "right"
polygon = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]
"""


@pytest.fixture
def zoo_daemon(zoo_data_dir: Path, zoo_images: Path, mosquitto, tmp_path: Path):
    broker = mosquitto()
    config = tmp_path / "edged.toml"
    config.write_text(config_text(zoo_images, broker.port))
    notify = NotifyListener(tmp_path)
    subscriber = Subscriber("::1", broker.port, (f"{PREFIX}/#",))
    run = EdgedRun(["--config", str(config)], data_dir=zoo_data_dir, notify=notify)
    try:
        yield run, subscriber, notify, broker
    finally:
        run.stop()
        subscriber.stop()
        notify.close()


def detections_of(subscriber: Subscriber, camera: str, after: int = 0) -> list[dict]:
    return [m.json() for m in subscriber.messages[after:] if m.topic == f"{PREFIX}/{camera}/detections"]


def test_second_stage_segmenter_camera_and_a_killed_worker_with_two_models(zoo_daemon):
    run, subscriber, notify, broker = zoo_daemon
    started = time.monotonic()
    notify.wait_for("READY=1", timeout=60)
    subscriber.wait_for(lambda ms: len(detections_of(subscriber, "feeder")) >= 2
                        and len(detections_of(subscriber, "tiny")) >= 2
                        and any(m.topic == f"{PREFIX}/garden/segments" for m in ms), timeout=30)
    feeder = detections_of(subscriber, "feeder")[-1]["detections"]
    birds = [d for d in feeder if d["label"] == "bird"]
    assert len(birds) == 1 and birds[0]["subclass"]["label"] == MACAW
    assert 0.6 < birds[0]["subclass"]["score"] < 0.9
    assert all("subclass" not in d for m in detections_of(subscriber, "tiny") for d in m["detections"])
    count = subscriber.wait_topic(f"{PREFIX}/feeder/bird/Ara_macao_(Scarlet_Macaw)")[-1]
    assert count.payload == b"1"

    segments = [m.json() for m in subscriber.on(f"{PREFIX}/garden/segments")][-1]
    assert sum(segments["areas"].values()) == pytest.approx(1.0, abs=1e-3)
    assert segments["areas"]["bird"] == pytest.approx(0.212, abs=0.01)
    assert segments["model"] == "deeplabv3_mnv2_pascal_quant"
    assert set(segments["zones"]) == {"left", "right"}
    assert not detections_of(subscriber, "garden")  # a segmenter-only camera runs no detector
    late = Subscriber("::1", broker.port, (f"{PREFIX}/garden/zones/+/coverage/+",))  # retained, for later
    coverage = {m.topic.split("/")[-3]: float(m.payload)
                for m in late.wait_for(lambda ms: len(ms) >= 4) if m.topic.endswith("/bird")}
    late.stop()
    assert coverage == pytest.approx({zone: segments["zones"][zone]["bird"] for zone in ("left", "right")},
                                     abs=0.011)
    print(f"first checks {time.monotonic() - started:.1f} s after start")

    worker = run.worker_pid("cpu")
    mark = len(subscriber.messages)
    os.kill(worker, signal.SIGKILL)
    subscriber.wait_for(lambda ms: any(d.get("subclass", {}).get("label") == MACAW
                                       for m in detections_of(subscriber, "feeder", mark)
                                       for d in m["detections"]), timeout=30)
    assert run.process.poll() is None and "killed by SIGKILL" in run.text
    assert assert_valid_payloads(subscriber.messages) > 10
    print(f"recovered; {time.monotonic() - started:.1f} s in all")


def test_a_reload_rebuilds_the_segmenter_and_the_second_stage(zoo_daemon, zoo_images: Path, tmp_path: Path):
    run, subscriber, notify, broker = zoo_daemon
    notify.wait_for("READY=1", timeout=60)
    subscriber.wait_topic(f"{PREFIX}/garden/segments")
    config = tmp_path / "edged.toml"  # the tiny camera now classifies every bird: its subclass appears
    config.write_text(config_text(zoo_images, broker.port).replace("min_crop_pixels = 400",
                                                                  "min_crop_pixels = 8"))
    mark = len(subscriber.messages)
    run.signal(signal.SIGHUP)
    run.wait_log("reload: applying the new configuration")
    notify.wait_for("READY=1", count=2, timeout=30)
    subscriber.wait_for(lambda ms: any(m.topic == f"{PREFIX}/garden/segments" for m in ms[mark:])
                        and any("subclass" in d for m in detections_of(subscriber, "tiny", mark)
                                for d in m["detections"]), timeout=30)
    assert run.process.poll() is None
    assert len(re.findall(r"segmenter deeplabv3_mnv2_pascal_quant for camera", run.text)) == 2
