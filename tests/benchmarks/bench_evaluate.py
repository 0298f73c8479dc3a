"""Benchmark: `edged evaluate` throughput — pictures scored per second, against bare invoke()'s rate.

Run: `python tests/benchmarks/bench_evaluate.py [--mirror DIR] [--passes N]`. Not collected by pytest.
The labelled set is tests/data/samples_ground_truth.json repeated N times (the
five sample photos under new image ids), so the numbers cover decoding,
prepare, invoke, postprocess and pycocotools' scoring together. Printed as a
ratio against bare invoke() in this process, with the machine's load beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import msgspec

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.commands.detect import load_image  # noqa: E402
from edged.dataset.coco import CocoFile, load_coco  # noqa: E402
from edged.dataset.evaluate import LabelledSet, coco_metrics, evaluate_model  # noqa: E402
from edged.detect.detector import Detector  # noqa: E402
from edged.detect.settings import DetectorSettings  # noqa: E402
from tests.benchmarks.fixtures import fetched  # noqa: E402

GROUND_TRUTH = REPO / "tests" / "data" / "samples_ground_truth.json"


def repeated(truth: CocoFile, samples: Path, passes: int) -> LabelledSet:
    """The ground truth `passes` times over, image ids shifted per pass."""
    images, annotations, paths = [], [], {}
    step = max(image.id for image in truth.images)
    for n in range(passes):
        for image in truth.images:
            images.append(msgspec.structs.replace(image, id=image.id + n * step))
            paths[image.id + n * step] = samples / image.file_name
        annotations += [msgspec.structs.replace(a, image_id=a.image_id + n * step, id=None)
                        for a in truth.annotations]
    coco = CocoFile(images=images, annotations=annotations, categories=truth.categories)
    return LabelledSet(GROUND_TRUTH, coco, paths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", action="append",
                        help="model/photo mirror (default: ../shared beside the repo)")
    parser.add_argument("--passes", type=int, default=20, help="times over the five photos (default: 20)")
    args = parser.parse_args()
    data = fetched(["ssd_mobilenet_v1_coco_quant", "samples"], ["cpu"], args.mirror)
    labelled = repeated(load_coco(GROUND_TRUTH), data / "samples", args.passes)
    load_before = os.getloadavg()[0]
    settings = DetectorSettings(threshold=0.01, max_detections=100)
    with Detector.open(settings, backend="cpu", models_dir=data / "models") as detector:
        tensor, _ = detector.prepare(load_image(str(labelled.images[1])))
        for _ in range(5):
            detector.invoke(tensor)
        samples = []
        for _ in range(50):
            start = time.perf_counter()
            detector.invoke(tensor)
            samples.append(time.perf_counter() - start)
        invoke_fps = 1.0 / statistics.median(samples)
        start = time.perf_counter()
        score = evaluate_model(detector, labelled, load_image)
        total = time.perf_counter() - start
    perfect = [{"image_id": a.image_id, "category_id": a.category_id, "bbox": list(a.bbox), "score": 1.0}
               for a in labelled.coco.annotations]
    start = time.perf_counter()
    coco_metrics(labelled.coco, perfect, [c.id for c in labelled.coco.categories])
    scoring = time.perf_counter() - start
    count = len(labelled.images)
    print(f"backend {score.backend}; {count} pictures ({args.passes} passes over the 5 sample photos)")
    print(f"evaluate: {count / total:.1f} pictures/s = {count / total / invoke_fps:.1%} of bare invoke() "
          f"({invoke_fps:.1f}/s); {total:.2f} s in all, pycocotools scoring alone ~{scoring * 1000:.0f} ms")
    print(f"mAP@.5 {score.map50:.3f}, mAP@[.5:.95] {score.map:.3f} (same as one pass: the photos repeat)")
    print(f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
