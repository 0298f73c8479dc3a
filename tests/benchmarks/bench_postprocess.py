"""Benchmark: our decode + NMS of a raw SSD head (1917 anchors x 90 classes) vs the model's bare invoke().

Run: `python tests/benchmarks/bench_postprocess.py [--mirror DIR] [--runs N]`. Not collected by pytest.
The raw outputs are real: the derived no-NMS model run on a sample photo. Times
are medians in this process, printed as a ratio against `invoke()` on the same
machine, because absolute numbers only mean something relative to the hardware.
Target (issue 2): decode + NMS <= 1 ms median.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.detect.detector import Detector  # noqa: E402
from edged.detect.settings import DetectorSettings  # noqa: E402
from tests.benchmarks.fixtures import fetched, timed_ms  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", action="append", help="model/photo mirror (default: ../shared beside the repo)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--image", default="grace_hopper.bmp")
    args = parser.parse_args()
    data = fetched(["ssd_mobilenet_v1_coco_quant", "samples"], ["cpu", "raw"], args.mirror)
    image = np.asarray(Image.open(data / "samples" / args.image).convert("RGB"))

    rows = []
    with Detector.open(DetectorSettings(cpu_variant="raw"), backend="cpu", models_dir=data / "models") as detector:
        tensor, geometry = detector.prepare(image)
        outputs = detector.invoke(tensor)
        shapes = [o.shape for o in outputs]
        invoke_ms, invoke_p90 = timed_ms(lambda: detector.invoke(tensor), max(20, args.runs // 4), warmup=5)
        prepare_ms, _ = timed_ms(lambda: detector.prepare(image), args.runs, warmup=5)
        for threshold, agnostic in ((0.5, False), (0.5, True), (0.3, False), (0.1, False), (0.01, False)):
            detector.postprocessor.filters.threshold = threshold
            detector.postprocessor.filters.class_agnostic = agnostic
            found = len(detector.postprocess(outputs, geometry))
            ms, p90 = timed_ms(lambda: detector.postprocess(outputs, geometry), args.runs, warmup=5)
            rows.append((f"decode+NMS t={threshold} {'agnostic' if agnostic else 'per-class'}", ms, p90, found))
        backend = detector.backend_name
    with Detector.open(DetectorSettings(), backend="cpu", models_dir=data / "models") as detector:
        tensor, geometry = detector.prepare(image)
        outputs = detector.invoke(tensor)
        op_invoke_ms, _ = timed_ms(lambda: detector.invoke(tensor), max(20, args.runs // 4), warmup=5)
        ms, p90 = timed_ms(lambda: detector.postprocess(outputs, geometry), args.runs, warmup=5)
        rows.append(("post-process-op outputs, filters only", ms, p90, len(detector.postprocess(outputs, geometry))))

    print(f"backend {backend}; raw outputs {shapes} from {args.image}; {args.runs} runs")
    print(f"invoke() raw model: median {invoke_ms:.2f} ms (p90 {invoke_p90:.2f}); "
          f"with post-process op: {op_invoke_ms:.2f} ms; prepare(): {prepare_ms:.3f} ms")
    print(f"{'step':<42} {'median ms':>10} {'p90 ms':>8} {'vs invoke':>10} {'kept':>5}")
    for name, ms, p90, found in rows:
        print(f"{name:<42} {ms:>10.3f} {p90:>8.3f} {ms / invoke_ms:>9.1%} {found:>5}")
    worst_default = rows[0][1]
    print(f"target decode+NMS <= 1 ms median at the default threshold: "
          f"{'met' if worst_default <= 1.0 else 'NOT met'} ({worst_default:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
