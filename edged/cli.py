"""The `edged` command line: one sub-command per job, each in its own module under edged/commands/.

Command modules keep their top-level imports light (no runtime, camera or MQTT
library) so `edged --help` works on any machine; they import what they need
inside `main`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edged import __version__
from edged.errors import EX_SOFTWARE, EdgedError

COMMANDS: dict[str, str] = {
    "run": "run the daemon: capture, detect, publish over MQTT",
    "detect": "detect objects in image files and print or annotate them",
    "classify": "name what image files show with a classifier (ImageNet, birds, ...)",
    "segment": "measure how much of each image every class covers (DeepLab), or overlay it",
    "bench": "measure invoke and full-pipeline speed on this machine",
    "track": "replay MOTChallenge detections through the tracker, print the tracks",
    "watch": "subscribe to a device's topics and show what it publishes",
    "models": "list, fetch and verify models and sample photos",
    "dataset": "recorded frames: stats, export to COCO / VOC / YOLO, import corrected labels",
    "evaluate": "score models on labelled pictures (COCO mAP) with their speed and size, side by side",
    "config": "check a configuration file",
    "doctor": "check what a Pi running edged needs: runtime, Edge TPU, camera, models, broker, clock",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged",
        description="Edge inference daemon: quantized SSD MobileNet on a Coral Edge TPU or the CPU, "
        "detections published over MQTT (IPv6 first).",
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"edged.commands.{name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure(sub)
        sub.set_defaults(_command_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._command_module.main(args) or 0)
    except EdgedError as exc:
        print(f"edged {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one line by default, the traceback with -v
        if args.verbose:
            raise
        print(f"edged {args.command}: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
              file=sys.stderr)
        return EX_SOFTWARE
