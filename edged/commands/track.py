"""`edged track`: replay MOTChallenge detections through edged's tracker, print MOTChallenge tracks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def positive_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a MOTChallenge detections file (frame,id,x,y,w,h,score,…; pixels; frames from 1; the id is "
        "ignored; every box one label) through the same tracker as `edged run`, with the config's [tracking] "
        "settings, and write the tracks to stdout as frame,id,x,y,w,h,score,-1,-1,-1. For tuning the tracker "
        "offline and comparing it with others. Exit codes: 66 file missing, 65 bad line, 78 bad config.")
    parser.add_argument("detections", type=Path, metavar="DETECTIONS.txt", help="MOTChallenge detections")
    parser.add_argument("--fps", type=positive_fps, default=30.0,
                        help="frame rate the frames were taken at (default 30): times are (frame-1)/fps")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="take [tracking] from this config file (default: /etc/edged/edged.toml if it "
                             "exists, else the defaults)")
    parser.add_argument("--camera", metavar="NAME", help="use this camera's [cameras.tracking] overrides")


def main(args: argparse.Namespace) -> int:
    from edged.config import load_config
    from edged.errors import ConfigError
    from edged.track.mot import read_detections, replay, write_results

    config = load_config(args.config)
    if args.camera is not None and args.camera not in {c.name for c in config.cameras}:
        raise ConfigError(f"--camera {args.camera}: no such camera in the config")
    settings = config.tracking_for(args.camera) if args.camera else config.tracking
    frames = read_detections(args.detections)
    write_results(replay(frames, settings, args.fps), sys.stdout)
    sys.stdout.flush()
    return 0
