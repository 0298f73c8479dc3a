"""Benchmark: what recording costs — offer() in the caller's thread, and the writer's work per saved frame.

Run: `python tests/benchmarks/bench_record.py [--mirror DIR] [--frames N]`. Not collected by pytest.
Times are medians in this process, printed as ratios against the model's bare
invoke() measured here first (absolute numbers only mean something next to the
hardware), with the machine's load beside them. offer() is what the pipeline
pays: it should be nil when nothing is kept. The writer's cost (JPEG encode,
quota, atomic write with fsync) is paid in its own lower-priority thread.
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

from edged.detect import fetch  # noqa: E402
from edged.detect.detector import Detector  # noqa: E402
from edged.detect.settings import DetectorSettings  # noqa: E402
from edged.record.recorder import Recorder  # noqa: E402
from edged.record.settings import RecordSettings  # noqa: E402
from edged.types import Detection, Frame  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", action="append",
                        help="model/photo mirror (default: ../shared beside the repo)")
    parser.add_argument("--frames", type=int, default=60, help="frames saved per picture size (default: 60)")
    args = parser.parse_args()
    shared = REPO.parent / "shared"
    mirrors = args.mirror or [str(shared / "models"), str(shared / "images")]
    data = Path(tempfile.mkdtemp(prefix="edged-bench-"))
    for _, entry, directory in fetch.plan(["ssd_mobilenet_v1_coco_quant", "samples"], ["cpu"],
                                          models_dir=data / "models", samples_dir=data / "samples"):
        fetch.fetch_file(entry, directory, mirrors, offline=True, progress_stream=open(os.devnull, "w"))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
