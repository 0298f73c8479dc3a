"""`edged run`: the daemon. Flags override the config file: `edged run` alone runs the built-in defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

BACKENDS = ("auto", "cpu", "edgetpu")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Capture frames, detect objects (Edge TPU or CPU), publish detections over MQTT. Without a config "
        "file: the sample photos as the camera, backend auto, broker mqtt://[::1]:1883 (a private mosquitto "
        "is started there when none runs). Exit codes: 0 stopped, 78 bad configuration, 69 model or camera "
        "missing.")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="config file (default: /etc/edged/edged.toml if it exists, else the defaults)")
    parser.add_argument("--source", metavar="URI",
                        help="camera source: samples, picamera2:N, /dev/videoN, rtsp://…, http(s)://…, a "
                             "video file, an image file, directory or glob (replaces the configured cameras)")
    parser.add_argument("--camera", metavar="NAME",
                        help="with --source: the camera's name; alone: run only this configured camera")
    parser.add_argument("--broker", metavar="URL", help="MQTT broker, e.g. mqtt://[2001:db8::10]:1883")
    parser.add_argument("--model", metavar="NAME", help="model name from `edged models list`")
    parser.add_argument("--backend", choices=BACKENDS, help="auto (Edge TPU, else CPU), cpu or edgetpu")
    parser.add_argument("--device-id", metavar="ID", help="device id in topics (default: the host name)")


def overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {"source": args.source, "broker": args.broker, "model": args.model, "backend": args.backend,
            "device_id": args.device_id, "camera": args.camera}


def main(args: argparse.Namespace) -> int:
    from edged.config import DEFAULT_PATH, load_config, with_overrides
    from edged.service.daemon import Daemon

    flags = overrides(args)
    config = with_overrides(load_config(args.config), **flags)
    config_path = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    return Daemon(config, config_path=config_path, overrides=flags, verbose=args.verbose).run()
