"""Benchmark: classify, segment and per-crop classification cost, against the SSD detector's invoke(); and
what the second stage costs a worker per frame (frames per second with `[[cameras.classify]]` on vs off).

Run: `python tests/benchmarks/bench_zoo.py [--runs N] [--mirror DIR ...]`. Not collected by pytest.
Real models (shared/models and its zoo/ folder) on real photos, CPU backend,
one thread, normal priority. Times are medians in this process, printed as a
ratio against the SSD detector's bare invoke() measured in the same run,
with the machine's load average beside them: absolute numbers only mean
something relative to the hardware and what else it was doing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from edged.classify.crops import classify_crops  # noqa: E402
from edged.classify.plan import CropPlan, CropRequest  # noqa: E402
from edged.detect.classifier import Classifier, crop  # noqa: E402
from edged.detect.detector import Detector  # noqa: E402
from edged.detect.segmentation import class_shares, to_picture, zone_mask, zone_shares  # noqa: E402
from edged.detect.segmenter import Segmenter  # noqa: E402
from edged.detect.settings import DEFAULT_MODEL, DetectorSettings, ModelSettings  # noqa: E402
from tests.benchmarks.fixtures import fetched, timed_ms  # noqa: E402

CLASSIFIER, SEGMENTER = "mobilenet_v2_1.0_224_quant", "deeplabv3_mnv2_pascal_quant"
BIRDS = "mobilenet_v2_1.0_224_inat_bird_quant"
ZONES = {"left": [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)],
         "lawn": [(0.0, 0.6), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)],
         "gate": [(0.6, 0.1), (0.9, 0.1), (0.9, 0.7), (0.6, 0.7)],
         "path": [(0.1, 0.0), (0.3, 0.0), (0.9, 1.0), (0.7, 1.0)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--mirror", action="append",
                        help="model/photo mirrors (default: ../shared/models and ../shared/images)")
    args = parser.parse_args()
    data = fetched([DEFAULT_MODEL, CLASSIFIER, SEGMENTER, BIRDS, "samples"], ["cpu"], args.mirror)
    pets = np.asarray(Image.open(data / "samples" / "pets.jpg").convert("RGB"))
    load_start = os.getloadavg()[0]
    rows: list[tuple[str, float, float]] = []
    cpu = {"backend": "cpu", "threads": 1}
    with Detector.open(DetectorSettings(**cpu), models_dir=data / "models") as detector:
        tensor, geometry = detector.prepare(pets)
        baseline, _ = timed_ms(lambda: detector.invoke(tensor), args.runs)
        dogs = [d for d in detector.detect(pets).detections if d.label == "dog"]
        backend = detector.backend_name
    with Classifier.open(ModelSettings(model=CLASSIFIER, **cpu), models_dir=data / "models") as classifier:
        tensor, _ = classifier.prepare(pets)
        outputs = classifier.invoke(tensor)
        rows.append(("classify: prepare (512x430 -> 224x224)",
                     *timed_ms(lambda: classifier.prepare(pets), args.runs)))
        rows.append(("classify: invoke", *timed_ms(lambda: classifier.invoke(tensor), args.runs)))
        rows.append(("classify: postprocess (top 5 of 1001)",
                     *timed_ms(lambda: classifier.postprocess(outputs, top=5), args.runs * 10)))
        rows.append((f"per crop: crop+prepare+invoke+top-1 ({len(dogs)} dogs)",
                     *timed_ms(lambda: [classifier.classify(crop(pets, d.box, margin=0.1), top=1) for d in dogs],
                            args.runs)))
        per_crop = rows[-1][1] / max(1, len(dogs)), rows[-1][2] / max(1, len(dogs))
        rows[-1] = (rows[-1][0].replace("per crop", "crops"), rows[-1][1], rows[-1][2])
        rows.append(("  ... per crop", *per_crop))
    with Segmenter.open(ModelSettings(model=SEGMENTER, **cpu), models_dir=data / "models") as segmenter:
        tensor, geometry = segmenter.prepare(pets)
        outputs = segmenter.invoke(tensor)
        height, width = pets.shape[:2]
        ids = to_picture(segmenter.postprocess(outputs), width, height, geometry)
        masks = {name: zone_mask(polygon, width, height) for name, polygon in ZONES.items()}
        rows.append(("segment: prepare (512x430 -> 513x513)",
                     *timed_ms(lambda: segmenter.prepare(pets), args.runs)))
        rows.append(("segment: invoke", *timed_ms(lambda: segmenter.invoke(tensor), args.runs)))
        rows.append(("segment: class map -> picture size", *timed_ms(
            lambda: to_picture(segmenter.postprocess(outputs), width, height, geometry), args.runs)))
        rows.append(("segment: per-class shares",
                     *timed_ms(lambda: class_shares(ids, segmenter.labels), args.runs)))
        rows.append((f"segment: {len(ZONES)} zone masks (once per camera)", *timed_ms(
            lambda: [zone_mask(polygon, width, height) for polygon in ZONES.values()], args.runs)))
        rows.append((f"segment: {len(ZONES)} zones' shares", *timed_ms(
            lambda: zone_shares(ids, masks, segmenter.labels), args.runs)))
    stage = second_stage(data, [pets, np.asarray(Image.open(SHARED / "images" / "zoo" / "parrot.jpg")
                                                 .convert("RGB"))], args.runs)
    load_end = os.getloadavg()[0]
    print(f"backend {backend}; {os.cpu_count()} CPUs; load average {load_start:.2f} -> {load_end:.2f}; "
          f"{args.runs} runs; pid priority {os.getpriority(os.PRIO_PROCESS, 0)}")
    print(f"baseline: SSD detector ({DEFAULT_MODEL}, 300x300) invoke() median {baseline:.2f} ms")
    print(f"{'step':<52} {'median ms':>10} {'p90 ms':>8} {'vs SSD invoke':>14}")
    for name, median, p90 in rows:
        print(f"{name:<52} {median:>10.3f} {p90:>8.3f} {median / baseline:>13.2f}x")
    off, on, crops = stage
    print(f"second stage, a worker's frame (invoke + postprocess [+ crops]) on pets.jpg and parrot.jpg, "
          f"{crops} crops per pair:")
    print(f"  classify off {1000 / off:6.1f} fps ({off:.2f} ms per frame)")
    print(f"  classify on  {1000 / on:6.1f} fps ({on:.2f} ms per frame)   on/off fps ratio {off / on:.2f}")
    return 0


def second_stage(data: Path, pictures: list[np.ndarray], runs: int) -> tuple[float, float, int]:
    """Median ms per frame of what the worker does for a frame, without and with the crops the second
    stage asks for (dogs → the ImageNet classifier, birds → the iNat bird classifier), same photos."""
    cpu = {"backend": "cpu", "threads": 1}
    requests = (CropRequest(CLASSIFIER, "dog", 0.1, 32, 2), CropRequest(BIRDS, "bird", 0.1, 32, 2))
    with Detector.open(DetectorSettings(**cpu), models_dir=data / "models") as detector, \
            Classifier.open(ModelSettings(model=CLASSIFIER, **cpu), models_dir=data / "models") as dogs, \
            Classifier.open(ModelSettings(model=BIRDS, **cpu), models_dir=data / "models") as birds:
        prepared = [(picture, *detector.prepare(picture)) for picture in pictures]
        classifiers = {CLASSIFIER: dogs, BIRDS: birds}

        def frames(plan: bool) -> int:
            crops = 0
            for picture, tensor, geometry in prepared:
                found = detector.postprocess(detector.invoke(tensor), geometry)
                if plan:
                    height, width = picture.shape[:2]
                    named = classify_crops(CropPlan(width, height, requests), found, tensor, geometry,
                                           classifiers)
                    crops += sum(d.subclass is not None for d in named)
            return crops

        crops = frames(True)
        off, _ = timed_ms(lambda: frames(False), runs)
        on, _ = timed_ms(lambda: frames(True), runs)
    return off / len(prepared), on / len(prepared), crops


if __name__ == "__main__":
    sys.exit(main())
