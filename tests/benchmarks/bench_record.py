"""Benchmark: what recording costs — offer() in the caller's thread, the writer's work per saved frame,
and the effect on the whole pipeline's fps.

Run: `python tests/benchmarks/bench_record.py [--mirror DIR] [--frames N] [--seconds S]`. Not collected
by pytest. Times are medians in this process, printed as ratios against the model's bare
invoke() measured here first (absolute numbers only mean something next to the
hardware), with the machine's load beside them. offer() is what the pipeline
pays: it should be nil when nothing is kept. The writer's cost (JPEG encode,
quota, atomic write with fsync) is paid in its own lower-priority thread.

The pipeline part runs the daemon's runtime (start_runtime: sources, the
inference worker, tracking, recording, a publisher to a private mosquitto) on
the sample photos without an fps cap, three ways — recording off (the
baseline), on but keeping nothing after the first frame, keeping every frame —
in alternating rounds sharing one inference worker, and prints each one's fps as
a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402

from edged.config import Config  # noqa: E402
from edged.detect.detector import Detector  # noqa: E402
from edged.detect.settings import DetectorSettings  # noqa: E402
from edged.record.recorder import Recorder  # noqa: E402
from edged.record.settings import RecordSettings  # noqa: E402
from edged.service.runtime import start_runtime  # noqa: E402
from edged.types import Detection, Frame  # noqa: E402
from tests.benchmarks.fixtures import fetched  # noqa: E402


def median_us(action, runs: int) -> float:
    for _ in range(20):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(samples)


def frame(image: np.ndarray, seq: int) -> Frame:
    return Frame(seq=seq, source="cam0", width=image.shape[1], height=image.shape[0], captured_ns=0,
                 captured_at=1.7e9 + seq, image=image)


def writer_ms(image: np.ndarray, detections: list[Detection], labels: list[str], frames: int,
              directory: Path) -> tuple[float, float]:
    """(writer ms per saved frame, caller µs per kept offer) for `frames` frames the interval policy keeps."""
    settings = RecordSettings(enabled=True, policies=["interval"], interval_seconds=0, queue_size=64)
    recorder = Recorder(settings, model="bench", labels=labels, directory=directory)
    offers = []
    for seq in range(1, frames + 1):
        start = time.perf_counter_ns()
        recorder.offer(frame(image, seq), detections)
        offers.append((time.perf_counter_ns() - start) / 1e3)
        while recorder.stats().queued - recorder.stats().saved > 32:  # keep the queue from dropping
            time.sleep(0.001)
    recorder.close(timeout=120)
    stats = recorder.stats()
    assert stats.saved == frames, stats
    return stats.write_ms_mean, statistics.median(offers)


PIPELINE_MODES = {  # [record] of each way the pipeline runs
    "recording off": {},
    "recording on, nothing kept": {"enabled": True, "policies": ["interval"], "interval_seconds": 1e9},
    "recording on, every frame kept": {"enabled": True, "policies": ["interval"], "interval_seconds": 0.0},
}


def pipeline_rounds(data: Path, seconds: float, rounds: int) -> dict[str, tuple[list[float], dict]]:
    """fps of the running pipeline per mode (one value per round), and the last round's RecordStats."""
    from edged.publish.mosquitto import free_port
    from edged.publish.private_broker import PrivateBroker

    broker = PrivateBroker("::1", free_port("::1")).start()
    results: dict[str, tuple[list[float], dict]] = {mode: ([], {}) for mode in PIPELINE_MODES}
    inference = None
    try:
        for _ in range(rounds):
            for mode, record in PIPELINE_MODES.items():
                config = msgspec.convert({
                    "detector": {"backend": "cpu"}, "mqtt": {"brokers": [f"mqtt://[::1]:{broker.port}"]},
                    "record": {"directory": str(data / "recorded"), "quota_mb": 50.0, **record},
                    "cameras": [{"name": "cam0", "source": str(data / "samples"), "fps": 0.0}]}, Config)
                runtime = start_runtime(config, alive=lambda: None, inference=inference)
                inference = runtime.inference
                runtime.publisher.start(backend=inference.backend, model=runtime.model, state=inference.state)
                runtime.pipeline.start()
                time.sleep(1.0)  # warm-up: sources open, first frames decoded and cached
                before, started = runtime.stats.snapshot().frames_processed, time.monotonic()
                time.sleep(seconds)
                done, elapsed = runtime.stats.snapshot().frames_processed, time.monotonic() - started
                runtime.pipeline.stop()
                runtime.end_events("stopped")
                recorded = runtime.recording.stats()
                runtime.recording.close()
                runtime.publisher.stop()
                results[mode][0].append((done - before) / elapsed)
                if recorded is not None:
                    results[mode][1].update(msgspec.to_builtins(recorded))
    finally:
        if inference is not None:
            inference.close()
        broker.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", action="append",
                        help="model/photo mirror (default: ../shared beside the repo)")
    parser.add_argument("--frames", type=int, default=60, help="frames saved per picture size (default: 60)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="pipeline run per mode and round (default: 5)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of the three modes (default: 2)")
    args = parser.parse_args()
    data = fetched(["ssd_mobilenet_v1_coco_quant", "samples"], ["cpu"], args.mirror)
    photo = np.asarray(Image.open(data / "samples" / "grace_hopper.bmp").convert("RGB"))
    load_before = os.getloadavg()[0]
    settings = DetectorSettings(threshold=0.3)
    with Detector.open(settings, backend="cpu", models_dir=data / "models") as detector:
        tensor, _ = detector.prepare(photo)
        invoke_us = median_us(lambda: detector.invoke(tensor), 100)
        detections = detector.detect(photo).detections
        labels, backend = detector.labels, detector.backend_name
    confident = [Detection(d.label, d.class_id, 0.9, d.box) for d in detections]

    rows = []
    idle = Recorder(RecordSettings(enabled=True), model="bench", labels=labels, directory=data / "idle")
    sequence = iter(range(1, 10**9))
    rows.append(("offer(), nothing kept (10 detections)",
                 median_us(lambda: idle.offer(frame(photo, next(sequence)), confident), 20000), "caller"))
    idle.close()
    hd = np.asarray(Image.fromarray(photo).resize((1280, 720)))
    with tempfile.TemporaryDirectory(dir=data) as small, tempfile.TemporaryDirectory(dir=data) as large:
        ms, offer_us = writer_ms(photo, detections, labels, args.frames, Path(small))
        rows.append(("offer(), frame kept (512x600)", offer_us, "caller"))
        rows.append(("writer per saved frame, 512x600 photo", ms * 1000, "writer thread"))
        ms, _ = writer_ms(hd, detections, labels, args.frames, Path(large))
        rows.append(("writer per saved frame, 1280x720", ms * 1000, "writer thread"))

    print(f"backend {backend}; bare invoke() median {invoke_us / 1000:.2f} ms; {args.frames} frames per size")
    print(f"{'step':<42} {'median':>12} {'vs invoke':>10}  where")
    for name, us, where in rows:
        value = f"{us:.1f} µs" if us < 1000 else f"{us / 1000:.2f} ms"
        print(f"{name:<42} {value:>12} {us / invoke_us:>9.2%}  {where}")
    print(f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"({os.cpu_count()} CPUs)")

    load_before = os.getloadavg()[0]
    os.environ["EDGED_DATA_DIR"] = str(data)  # where the runtime's worker finds the fetched model
    pipeline = pipeline_rounds(data, args.seconds, args.rounds)
    baseline = statistics.median(pipeline["recording off"][0])
    print(f"\npipeline on the sample photos, no fps cap, {args.rounds} rounds of {args.seconds:g} s per mode")
    print(f"{'mode':<34} {'fps (median)':>12} {'vs off':>8}  rounds; recorded")
    for mode, (fps, recorded) in pipeline.items():
        median = statistics.median(fps)
        kept = (f"saved {recorded['saved']}, dropped_busy {recorded['dropped_busy']}, "
                f"writer {recorded['write_ms_mean']:.1f} ms/frame") if recorded else "-"
        print(f"{mode:<34} {median:>12.1f} {median / baseline:>8.1%}  {', '.join(f'{f:.1f}' for f in fps)}; "
              f"{kept}")
    print(f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
