"""`edged config check|show|example`: validate a file; print the effective config or the defaults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a config file as `edged run` does at start, without "
                                   "loading a model or opening a camera (exit 0, or 78)")
    check.add_argument("file", nargs="?", type=Path, metavar="FILE",
                       help="config file (default: /etc/edged/edged.toml)")
    show = actions.add_parser("show", help="print the effective configuration (file + defaults), documented")
    show.add_argument("file", nargs="?", type=Path, metavar="FILE",
                      help="config file (default: /etc/edged/edged.toml if it exists, else the defaults)")
    actions.add_parser("example", help="print every key with its documented default (the example file)")


def main(args: argparse.Namespace) -> int:
    from edged.config import DEFAULT_PATH, load_config
    from edged.config_doc import render_example
    from edged.errors import ConfigError
    from edged.service.preflight import check_config
    from edged.service.runtime import make_publisher

    if args.action == "example":
        sys.stdout.write(render_example())
        return 0
    if args.action == "show":
        sys.stdout.write(render_example(load_config(args.file)))
        return 0
    path = args.file or DEFAULT_PATH
    config = load_config(path)
    check_config(config, str(path))  # sources, model, labels: exactly what `edged run` checks at start
    try:  # broker URLs, TLS files, credentials: checked as `edged run` checks them, nothing is sent
        make_publisher(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    cameras = ", ".join(f"{c.name} ({c.source})" for c in config.cameras)
    print(f"{path}: OK — device {config.device_id}, backend {config.detector.backend}, model "
          f"{config.detector.model}, brokers {', '.join(config.mqtt.brokers)}, cameras {cameras}")
    return 0
