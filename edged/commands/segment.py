"""`edged segment IMAGE…`: how much of each picture every class covers; print, emit JSON lines, or overlay.

`--json` prints one object per image — `{"image", "model", "backend",
"inference_ms", "areas": {"<label>": share}}`, shares of all the picture's
pixels (largest first, summing to 1). `--annotate OUT` writes the picture with
each class tinted in the PASCAL VOC palette and a legend. A detector or a
classifier given here is refused (exit 65).
"""

from __future__ import annotations

import argparse
import sys

from edged.commands import model_options


def configure(parser: argparse.ArgumentParser) -> None:
    model_options.configure(parser, "segmenter")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write the picture with the classes overlaid: a file for one image, "
                        "a directory for several")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edged.annotate import overlay_segments
    from edged.commands.detect import annotation_targets
    from edged.detect.segmenter import Segmenter
    from edged.errors import EdgedError

    settings = model_options.settings(args, "segmenter")
    targets = annotation_targets(args.images, args.annotate)
    if args.annotate and len(args.images) > 1:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
    errors: list[int] = []
    with Segmenter.open(settings) as segmenter:
        for position, path, image in model_options.pictures("segment", args.images, errors.append):
            result = segmenter.segment(image)
            if args.json:
                model_options.emit({"image": path, "model": segmenter.model_name, "backend": result.backend,
                                    "inference_ms": result.inference_ms, "areas": result.areas})
            else:
                height, width = image.shape[:2]
                print(f"{path} {width}x{height} {result.backend} {result.inference_ms:.1f} ms")
                for label, share in result.areas.items():
                    print(f"  {label:<14} {share:7.2%}")
                sys.stdout.flush()
            if (target := targets[position]) is not None:
                try:
                    overlay_segments(image, result.ids, segmenter.labels).save(target)
                except OSError as exc:
                    raise EdgedError(f"cannot write {target} ({exc})") from None
    return errors[0] if errors else 0
