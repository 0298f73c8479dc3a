"""Two CPU workers under `edged run`, observed as a user would: the stats topic and the detections topic."""

from __future__ import annotations

from pathlib import Path

from tests.edged_process import EdgedRun, broker_url
from tests.fixtures.broker import Subscriber, assert_valid_payloads

DEVICE = "pi-two"


def test_two_workers_both_work_and_each_camera_stays_in_capture_order(fetched_data_dir: Path, mosquitto,
                                                                      tmp_path: Path):
    broker = mosquitto()
    config = tmp_path / "edged.toml"
    config.write_text('[detector]\nbackend = "cpu"\nworkers = 2\nthreads = 1\n'
                      '[publish]\nstats_interval_seconds = 1.0\n'
                      '[[cameras]]\nname = "front"\nfps = 0\n[[cameras]]\nname = "back"\nfps = 0\n')
    subscriber = Subscriber("::1", broker.port, (f"edged/{DEVICE}/#",))
    run = EdgedRun(["--config", str(config), "--broker", broker_url(broker), "--device-id", DEVICE],
                   data_dir=fetched_data_dir)
    stats_topic = f"edged/{DEVICE}/stats"
    try:
        run.worker_pid("cpu:", nth=2)
        subscriber.wait_topic(stats_topic, count=3, timeout=30)  # the first interval includes the start
        stats = subscriber.on(stats_topic)[-1].json()
    finally:
        run.stop()
        subscriber.stop()
    workers = {worker["name"]: worker for worker in stats["workers"]}
    print({name: (w["busy"], w["fps"]) for name, w in workers.items()})
    assert set(workers) == {"cpu:0", "cpu:1"}
    for worker in workers.values():
        assert worker["backend"].startswith("cpu:") and worker["fps"] > 0
        assert worker["busy"] > 0.3  # both workers run frames, not one while the other idles
    assert abs(sum(w["fps"] for w in workers.values()) - stats["fps"]) <= 0.1 * stats["fps"] + 1
    for camera in ("front", "back"):
        seqs = [m.json()["seq"] for m in subscriber.on(f"edged/{DEVICE}/{camera}/detections")]
        assert len(seqs) > 10 and seqs == sorted(set(seqs)), camera  # strictly increasing at the subscriber
    assert assert_valid_payloads(subscriber.messages) > 20
