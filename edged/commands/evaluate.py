"""`edged evaluate`: which model for my camera — mAP on my own pictures, speed and size, side by side.

Each model runs in this process through the same Detector as `edged detect`
(low threshold, up to 100 detections per picture: what COCO's mAP expects),
its detections are scored by pycocotools (edged/dataset/evaluate.py), and the
rows are printed as one table, then AP@0.5 per label with the models as
columns. A model that cannot be loaded is reported on one line and the others
are still evaluated; the exit code is the first error's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edged.errors import EdgedError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=Path, metavar="COCO_JSON",
                        help="labelled pictures: a COCO detection JSON file (`edged dataset export --format "
                        "coco` writes one; so do CVAT and Label Studio)")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="where the pictures named in the file are (default: the file's directory)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME",
                        help="a model from `edged models list` (repeat to compare several)")
    parser.add_argument("--backend", choices=["auto", "cpu", "edgetpu"], default="auto",
                        help="where to run (default: auto = Edge TPU if usable, else CPU)")
    parser.add_argument("--threshold", type=float, default=0.01, metavar="T",
                        help="lowest score kept for scoring (default: 0.01: mAP needs the weak detections)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object: {"dataset", "images", "models": [{"model", "map50", '
                        '"map", "per_class", "invoke_ms", "fps", "size_bytes", …}]}')


def _table(scores: list, images: int, dataset: Path) -> str:
    lines = [f"{dataset}: {images} images",
             f"{'MODEL':<32} {'mAP@.5':>7} {'mAP@.5:.95':>10} {'INVOKE ms':>10} {'FPS':>7} {'SIZE MB':>8}"
             "  BACKEND"]
    for s in scores:
        lines.append(f"{s.model:<32} {s.map50:>7.3f} {s.map:>10.3f} {s.invoke_ms:>10.2f} {s.fps:>7.1f} "
                     f"{s.size_bytes / 1e6:>8.1f}  {s.backend}")
    labels = sorted({label for s in scores for label in s.per_class})
    if labels:
        width = max(12, *(len(s.model) for s in scores))
        lines.append("")
        lines.append(f"{'AP@.5 BY LABEL':<20} " + " ".join(f"{s.model:>{width}}" for s in scores))
        for label in labels:
            cells = [f"{s.per_class[label]:>{width}.3f}" if label in s.per_class else f"{'-':>{width}}"
                     for s in scores]
            lines.append(f"{label:<20} " + " ".join(cells))
    for s in scores:
        if s.labels_not_in_model:
            lines.append(f"{s.model} cannot detect: {', '.join(s.labels_not_in_model)} (left out of its mAP)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import msgspec

    from edged.commands.detect import load_image
    from edged.dataset.evaluate import evaluate_model, open_labelled_set
    from edged.detect.detector import Detector
    from edged.detect.settings import DetectorSettings

    if not 0.0 <= args.threshold <= 1.0:
        raise EdgedError(f"--threshold {args.threshold}: must be between 0 and 1", exit_code=2)
    labelled = open_labelled_set(args.dataset, args.images)
    scores, first_error = [], 0
    for name in dict.fromkeys(args.model):
        settings = DetectorSettings(model=name, backend=args.backend, threshold=args.threshold,
                                    max_detections=100)
        try:
            with Detector.open(settings) as detector:
                scores.append(evaluate_model(detector, labelled, load_image))
        except EdgedError as exc:
            print(f"edged evaluate: error: {name}: {exc}", file=sys.stderr)
            first_error = first_error or exc.exit_code
    if args.json:
        document = {"dataset": str(args.dataset), "images": len(labelled.images), "models": scores}
        sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    elif scores:
        print(_table(scores, len(labelled.images), args.dataset))
    return first_error
