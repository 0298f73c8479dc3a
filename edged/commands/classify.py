"""`edged classify IMAGE…`: name what is in each picture with a classifier; print, or emit JSON lines.

`--json` prints one object per image — `{"image", "model", "backend",
"inference_ms", "classes": [{"label", "class_id", "score"}]}`, best first —
like `detect --json`. A detector given here is refused (exit 65).
"""

from __future__ import annotations

import argparse
import sys

from edged.commands import model_options


def configure(parser: argparse.ArgumentParser) -> None:
    model_options.configure(parser, "classifier")
    parser.add_argument("--top", type=int, default=5, metavar="K",
                        help="at most K classes per image (default: 5)")
    parser.add_argument("--threshold", type=float, default=0.01, metavar="T",
                        help="leave out classes scoring below T (default: 0.01)")


def main(args: argparse.Namespace) -> int:
    from edged.detect.classifier import Classifier
    from edged.errors import EX_USAGE, EdgedError

    if args.top < 1 or not 0.0 <= args.threshold <= 1.0:
        raise EdgedError("invalid option: --top must be 1 or more and --threshold within 0..1",
                         exit_code=EX_USAGE)
    settings = model_options.settings(args, "classifier")
    errors: list[int] = []
    with Classifier.open(settings) as classifier:
        for _, path, image in model_options.pictures("classify", args.images, errors.append):
            result = classifier.classify(image, top=args.top, threshold=args.threshold)
            if args.json:
                model_options.emit({"image": path, "model": classifier.model_name, "backend": result.backend,
                                    "inference_ms": result.inference_ms, "classes": result.classes})
                continue
            height, width = image.shape[:2]
            print(f"{path} {width}x{height} {result.backend} {result.inference_ms:.1f} ms")
            for found in result.classes:
                print(f"  {found.score:.3f}  {found.label}")
            if not result.classes:
                print(f"  nothing scored {args.threshold} or more")
            sys.stdout.flush()
    return errors[0] if errors else 0
