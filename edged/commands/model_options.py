"""Options and the per-image loop shared by `edged classify` and `edged segment` (not a command itself).

Both take a manifest model (`--model`, default: the manifest's default of that
kind) or a file (`--model-file` + `--labels`), the same backend options as
`detect`, and image files; a bad image costs one line and the others are still
processed, the exit code being the first error's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import Any

from edged.errors import EX_USAGE, EdgedError


def configure(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, ...)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="NAME",
                       help=f"a {kind} from `edged models list` (default: the manifest's default {kind})")
    which.add_argument("--model-file", metavar="FILE", help=f"a .tflite {kind} file to run on the CPU")
    parser.add_argument("--labels", metavar="FILE",
                        help="labels for --model-file, one per line (default: the default model's)")
    parser.add_argument("--edgetpu-model-file", metavar="FILE", help="the Edge TPU build to use instead")
    parser.add_argument("--backend", choices=["auto", "cpu", "edgetpu"], default="auto",
                        help="where to run (default: auto = Edge TPU if usable, else CPU)")
    parser.add_argument("--edgetpu-device", metavar="DEV", help="usb, usb:N, pci or pci:N (default: usb)")
    parser.add_argument("--edgetpu-library", metavar="LIB",
                        help="delegate library (default: libedgetpu.so.1)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: 1)")
    parser.add_argument("--resize", choices=["stretch", "letterbox"],
                        help="how images fit the model input (default: stretch, as Coral runs these models)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")


def settings(args: argparse.Namespace, kind: str) -> Any:
    """ModelSettings from the command line; an out-of-range value is a usage error (exit 2)."""
    import msgspec

    from edged.detect.models import load_manifest
    from edged.detect.settings import ModelSettings

    values = {"model": args.model or load_manifest().default_for(kind), "model_file": args.model_file,
              "labels_file": args.labels, "edgetpu_model_file": args.edgetpu_model_file,
              "backend": args.backend, "edgetpu_device": args.edgetpu_device,
              "edgetpu_library": args.edgetpu_library, "threads": args.threads, "resize": args.resize}
    try:
        return msgspec.convert({k: v for k, v in values.items() if v is not None}, ModelSettings)
    except msgspec.ValidationError as exc:
        raise EdgedError(f"invalid option: {exc}", exit_code=EX_USAGE) from None


def pictures(command: str, paths: list[str], report: Callable[[int], None]) -> Iterator[tuple[int, str, Any]]:
    """(position, path, RGB array) for each image that decodes; the others are reported on one line each."""
    from edged.commands.detect import load_image

    for position, path in enumerate(paths):
        try:
            image = load_image(path)
        except EdgedError as exc:
            print(f"edged {command}: error: {exc}", file=sys.stderr)
            report(exc.exit_code)
            continue
        yield position, path, image


def emit(record: dict[str, Any]) -> None:
    """One JSON object on its own line, flushed: stdout stays machine-readable."""
    import msgspec

    sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    sys.stdout.flush()
