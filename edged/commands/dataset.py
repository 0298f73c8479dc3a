"""`edged dataset stats | export | import`: look at, hand out and take back what recording collected.

The dataset directory format (per frame a JPEG and a JSON sidecar, one label
map) is described in edged/dataset/layout.py and docs/dataset.md. A frame that
cannot be read is reported on one line and skipped; the exit code is then 65.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edged.errors import EX_DATAERR, EX_USAGE, EdgedError


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="frames, objects per label, score histogram, disk use",
                               description="Summarize a dataset directory.")
    stats.add_argument("directory", type=Path, metavar="DIR", help="a dataset directory")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    export = actions.add_parser(
        "export", help="write the dataset as COCO, Pascal VOC or YOLO for training",
        description="Export a dataset directory for a training tool: COCO JSON (MediaPipe Model Maker, "
        "pycocotools), Pascal VOC XML (TF Object Detection API, TF Model Maker) or YOLO txt + data.yaml "
        "(Ultralytics). OUT must be new or empty.")
    export.add_argument("directory", type=Path, metavar="DIR", help="the dataset directory")
    export.add_argument("--format", required=True, choices=["coco", "voc", "yolo"], help="what to write")
    export.add_argument("out", type=Path, metavar="OUT", help="a new or empty directory, outside DIR")
    export.add_argument("--min-score", type=float, metavar="S",
                        help="leave out model labels scoring below S (a person's labels are always kept)")
    export.add_argument("--split", metavar="TRAIN/VAL",
                        help="split frames by ratio, e.g. 80/20 (reproducible: see --seed)")
    export.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")

    take = actions.add_parser(
        "import", help="take labels back from CVAT / Label Studio (COCO or VOC)",
        description="Import a COCO JSON file (or a COCO folder with labels.json) or a Pascal VOC directory "
        "into a dataset directory: frames that came from it get the corrected labels, other pictures are "
        "added.")
    take.add_argument("source", type=Path, metavar="SOURCE", help="COCO file or folder, or VOC directory")
    take.add_argument("directory", type=Path, metavar="DIR", help="the dataset directory (created if new)")
    take.add_argument("--format", choices=["coco", "voc"], help="default: a file is COCO, a directory with "
                      "Annotations/ is VOC, one with labels.json is COCO")
    take.add_argument("--images", type=Path, metavar="IMAGES",
                      help="COCO: where the pictures are (default: images/ beside the file, else its "
                      "directory)")


def _stats(args: argparse.Namespace) -> int:
    import msgspec

    from edged.dataset.stats import dataset_stats, render

    stats = dataset_stats(args.directory)
    if args.json:
        sys.stdout.write(msgspec.json.encode(stats).decode() + "\n")
    else:
        print(render(stats))
    return EX_DATAERR if stats.problems else 0


def _export(args: argparse.Namespace) -> int:
    from edged.dataset.export import export, parse_split

    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise EdgedError(f"--min-score {args.min_score}: must be between 0 and 1", exit_code=EX_USAGE)
    fraction = parse_split(args.split) if args.split else None
    result = export(args.directory, args.out, args.format, min_score=args.min_score, train_fraction=fraction,
                    seed=args.seed)
    for problem in result.problems:
        print(f"edged dataset export: skipped: {problem}", file=sys.stderr)
    splits = ", ".join(f"{name} {count}" for name, count in result.splits.items())
    weak = f", {result.dropped_weak} below --min-score left out" if args.min_score is not None else ""
    print(f"{result.out}: {args.format}, {sum(result.splits.values())} frames ({splits}), "
          f"{result.objects} objects{weak}")
    return EX_DATAERR if result.problems else 0


def _import(args: argparse.Namespace) -> int:
    from edged.dataset.importer import import_into

    result = import_into(args.source, args.directory, fmt=args.format, images=args.images)
    for problem in result.problems:
        print(f"edged dataset import: skipped: {problem}", file=sys.stderr)
    new = result.new_labels
    labels = f"; {len(new)} new labels" if len(new) > 10 else f"; new labels: {', '.join(new)}" if new else ""
    print(f"{args.directory}: {result.added} frames added, {result.updated} relabelled, "
          f"{result.objects} objects{labels}")
    return result.exit_code


def main(args: argparse.Namespace) -> int:
    return {"stats": _stats, "export": _export, "import": _import}[args.action](args)
