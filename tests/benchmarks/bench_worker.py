"""Benchmark: what running inference in a child process costs per frame, against invoke() itself.

Run: `python tests/benchmarks/bench_worker.py [--frames N] [--mirror DIR ...]`. Not collected by pytest.
The same prepared tensor goes N times (a) through `Detector.invoke` + `postprocess`
in this process, (b) through the inference worker one at a time: shared-memory
copy, socket message, invoke + postprocess in the child, detections back (the
difference is the isolation overhead, printed in ms and as a fraction of
invoke()), and (c) through the worker pipelined as the daemon runs it, two jobs
outstanding: frames per second against the in-process rate (the protocol's own
loss; target >= 0.98).
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
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from edged.detect import fetch  # noqa: E402
from edged.detect.detector import Detector  # noqa: E402
from edged.detect.settings import DEFAULT_MODEL, DetectorSettings  # noqa: E402
from edged.detect.worker import InferenceWorker  # noqa: E402


def timed(action, frames: int) -> list[float]:
    for _ in range(5):
        action()
    samples = []
    for _ in range(frames):
        start = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def pipelined(worker: InferenceWorker, tensor, geometry, frames: int) -> float:
    """Frames per second with every free slot refilled as soon as a result comes back."""
    done, sent = 0, 0
    start = time.perf_counter()
    while done < frames:
        while sent < frames and worker.submit(tensor, geometry, seq=sent, tag=sent):
            sent += 1
        done += len(worker.receive(30, hang_after=30))
    return frames / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--mirror", action="append", default=[str(SHARED / "models"), str(SHARED / "images")])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as data:
        os.environ["EDGED_DATA_DIR"] = data
        steps = fetch.plan([DEFAULT_MODEL, "samples"], ["cpu"], models_dir=Path(data) / "models",
                           samples_dir=Path(data) / "samples")
        with open(os.devnull, "w") as quiet:
            for _, entry, directory in steps:
                fetch.fetch_file(entry, directory, args.mirror, offline=True, progress_stream=quiet)
        image = np.asarray(Image.open(Path(data) / "samples" / "cat.bmp").convert("RGB"))
        settings = DetectorSettings(backend="cpu", threads=1)
        with Detector.open(settings) as detector:
            tensor, geometry = detector.prepare(image)
            local = timed(lambda: detector.postprocess(detector.invoke(tensor), geometry), args.frames)
        worker = InferenceWorker(settings, "cpu")
        worker.start()
        results = []
        try:
            def through_worker() -> None:
                results.append(worker.infer(tensor, geometry, seq=1, timeout=30))

            remote = timed(through_worker, args.frames)
            pipelined_fps = pipelined(worker, tensor, geometry, args.frames)
        finally:
            worker.close()
    inside = [r.inference_ms + r.postprocess_ms for r in results[-args.frames:]]
    local_ms, remote_ms = statistics.median(local), statistics.median(remote)
    overhead = statistics.median(r - i for r, i in zip(remote, inside))
    print(f"in process   invoke+postprocess median {local_ms:.2f} ms")
    print(f"via worker   round trip median {remote_ms:.2f} ms "
          f"(invoke+postprocess inside {statistics.median(inside):.2f} ms)")
    print(f"isolation overhead median {overhead:.3f} ms = {overhead / local_ms:.3f} x invoke; "
          f"worker/in-process ratio {local_ms / remote_ms:.3f}")
    local_fps = 1000 / statistics.mean(local)
    print(f"pipelined    {pipelined_fps:.1f} fps with two jobs in flight = {pipelined_fps / local_fps:.3f} x "
          f"in-process ({local_fps:.1f} fps); load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
