"""`edged doctor`: one screen telling a Pi owner what works and what to do about what does not.

Each line is OK, WARN (works, but not as well as it could) or FAIL (a
required part is missing: `edged run` would not start or not publish) with
the command that fixes it. Exit status 1 when any line FAILs (the documented
"a check failed"). A broker is checked with a real MQTT session, since a TCP
connect alone passes brokers that then reject edged's CONNECT. Nothing here
opens a camera, and the Edge TPU delegate is only loaded in a child process,
because libedgetpu may abort the process that loads it.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

LIBEDGETPU_HINT = ("install the libedgetpu1-std package matching your TFLite runtime "
                   "(feranick/libedgetpu releases for bookworm)")
DELEGATE_PROBE = """
import sys
from edged.detect.backends import EdgeTpuUnavailable, load_edgetpu_delegate
from edged.detect.runtime import load_runtime
try:
    load_edgetpu_delegate(load_runtime(sys.argv[1]), sys.argv[2], sys.argv[3])
except EdgeTpuUnavailable as exc:
    print(exc)
    sys.exit(3)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="config to check (default: /etc/edged/edged.toml if it exists, else defaults)")


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, what: str, message: str) -> None:
        self.failed |= status == "FAIL"
        print(f"  {status:<5} {what:<10} {message}")


def check_runtime(report: Report, settings) -> None:
    from edged.detect.runtime import load_runtime
    from edged.errors import UnavailableError

    try:
        runtime = load_runtime(settings.runtime)
    except UnavailableError as exc:
        report.line("FAIL", "runtime", str(exc))
        return
    report.line("OK", "runtime", f"{runtime} ({runtime.key})")


def check_edgetpu(report: Report, settings) -> None:
    from edged.service.probes import find_edgetpus

    required = settings.backend == "edgetpu"
    tpus = find_edgetpus()
    if tpus:
        report.line("OK", "Edge TPU", "; ".join(f"{t.kind} {t.where} ({t.detail})" for t in tpus))
    else:
        report.line("FAIL" if required else "WARN", "Edge TPU",
                    "none found (USB 1a6e:089a / 18d1:9302, /dev/apex_*): "
                    + ("backend = edgetpu cannot start" if required else "edged runs on the CPU"))
    if settings.backend == "cpu":
        report.line("OK", "libedgetpu", "not needed (backend = cpu)")
        return
    argv = [sys.executable, "-c", DELEGATE_PROBE, settings.runtime_for("edgetpu"), settings.edgetpu_library,
            settings.edgetpu_device]
    probe = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        report.line("OK", "libedgetpu",
                    f"{settings.edgetpu_library} loads and found device {settings.edgetpu_device}")
        return
    if probe.returncode < 0:
        reason = f"the delegate crashed ({signal.Signals(-probe.returncode).name}) while looking for a device"
    else:
        said = probe.stdout.strip().splitlines() or probe.stderr.strip().splitlines() or ["failed"]
        reason = said[-1]
    hint = LIBEDGETPU_HINT if "could not be loaded" in reason else "plug the Coral in or check dmesg"
    report.line("FAIL" if required else "WARN", "libedgetpu", f"{reason} — {hint}")


def check_cameras(report: Report, config) -> None:
    from edged import paths
    from edged.service.probes import tcp_reach, video_devices
    from edged.sources.factory import describe
    from edged.sources.images import IMAGE_SUFFIXES

    devices = video_devices()
    picamera = importlib.util.find_spec("picamera2") is not None and importlib.util.find_spec("libcamera")
    for camera in config.cameras:
        kind, uri, name = describe(camera.source), camera.source, f"camera {camera.name}"
        if kind == "samples":
            photos = [p for p in paths.samples_dir().glob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
            found = f"{len(photos)} in {paths.samples_dir()}" if photos else \
                "not fetched — run `edged models fetch`"
            report.line("OK" if photos else "FAIL", "camera", f"{camera.name}: sample photos: {found}")
        elif kind == "picamera2":
            found = "picamera2 and libcamera importable" if picamera else (
                "picamera2 not importable — `sudo apt install python3-picamera2`, "
                "venv with --system-site-packages")
            report.line("OK" if picamera else "FAIL", "camera", f"{camera.name}: {uri}: {found}")
        elif kind == "v4l2":
            device = uri.removeprefix("v4l2:")
            ok = Path(device).exists()
            report.line("OK" if ok else "FAIL", "camera", f"{name}: {device} " + (
                "present" if ok else f"missing (video devices here: {', '.join(devices) or 'none'})"))
        elif kind == "stream":
            parts = urlsplit(uri)
            port = parts.port or {"rtsp": 554, "rtsps": 322, "https": 443, "rtmp": 1935}.get(parts.scheme, 80)
            reached = [r for r in tcp_reach(parts.hostname or "", port) if r.ok]
            found = f"reachable ({reached[0].family})" if reached else \
                "not reachable now (edged keeps retrying)"
            report.line("OK" if reached else "WARN", "camera", f"{name}: {uri} {found}")
        else:
            ok = bool(list(Path().glob(uri))) if any(c in uri for c in "*?[") else Path(uri).exists()
            report.line("OK" if ok else "FAIL", "camera", f"{name}: {uri} {'present' if ok else 'missing'}")
    report.line("OK" if devices or picamera else "WARN", "devices",
                f"video: {', '.join(devices) or 'none'}; picamera2: {'yes' if picamera else 'no'}")


def check_models(report: Report, settings) -> None:
    from edged.detect.catalog import resolve
    from edged.errors import EdgedError

    try:
        resolved = resolve(settings)
    except EdgedError as exc:
        report.line("FAIL", "models", str(exc))
        return
    needs_cpu = settings.backend != "edgetpu"
    cpu = f"CPU file {resolved.cpu.name} verified" if resolved.cpu else f"CPU file: {resolved.cpu_problem}"
    report.line("OK" if resolved.cpu or not needs_cpu else "FAIL", "models", f"{resolved.name}: {cpu}")
    if settings.backend != "cpu":
        tpu = f"Edge TPU file {resolved.edgetpu.name} verified" if resolved.edgetpu else \
            f"Edge TPU file: {resolved.edgetpu_problem}"
        status = "OK" if resolved.edgetpu else "FAIL" if settings.backend == "edgetpu" else "WARN"
        report.line(status, "models", tpu)


def check_brokers(report: Report, config) -> None:
    """Each broker: reachable over TCP (every address), then one real MQTT session with edged's own settings;
    nothing listening on the default broker is fine only when `edged run` can start its private one."""
    from edged.errors import UnavailableError
    from edged.publish.brokers import parse_broker_url
    from edged.publish.mosquitto import find_mosquitto
    from edged.publish.probe import probe_session
    from edged.publish.settings import DEFAULT_BROKER
    from edged.service.probes import tcp_reach

    for url in config.mqtt.brokers:
        broker = parse_broker_url(url)
        results = tcp_reach(broker.host, broker.port)
        shown = "; ".join(f"{r.family} {r.address} {'ok' if r.ok else r.error}" for r in results)
        if any(r.ok for r in results):
            session = probe_session(config.mqtt, url)
            status = {True: "OK", False: "FAIL", None: "OK"}[session.ok]
            report.line(status, "broker", f"{broker.display}: {shown}; {session.message}")
            continue
        if config.mqtt.brokers == [DEFAULT_BROKER] and config.service.private_broker:
            try:
                find_mosquitto()
            except UnavailableError:
                report.line("FAIL", "broker", f"{broker.display}: no broker — nothing listens there and "
                            "mosquitto is not installed, so `edged run` cannot start its private one: "
                            "sudo apt install mosquitto (or set mqtt.brokers)")
                continue
            report.line("OK", "broker",
                        f"{broker.display}: nothing listens; `edged run` starts a private one there")
            continue
        report.line("FAIL", "broker", f"{broker.display}: no broker ({shown}) — is it running and reachable?")


def check_clock(report: Report) -> None:
    from edged.service.probes import clock_synchronized

    synced, how = clock_synchronized()
    if synced:
        report.line("OK", "clock", f"synchronized ({how})")
    else:
        report.line("WARN", "clock", ("not synchronized" if synced is False else "unknown") + f" ({how}): "
                    "payload timestamps may be wrong — enable systemd-timesyncd or chrony")


def check_recording(report: Report, config) -> None:
    """Where `[record]` writes: a directory edged cannot write stops recording at its first frame."""
    import os
    import shutil

    from edged import paths

    if not any(config.record_for(camera.name).enabled for camera in config.cameras):
        return
    root = Path(config.record.directory) if config.record.directory else paths.dataset_dir()
    existing = next(path for path in (root, *root.parents) if path.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        report.line("WARN", "record", f"{root}: {existing} is not a writable directory: recording would stop "
                    "at its first frame (detection and publishing would go on)")
        return
    free = shutil.disk_usage(existing).free
    report.line("OK", "record", f"{root}: writable, {free / 1e6:.0f} MB free (quota "
                f"{config.record.quota_mb:g} MB and {config.record.quota_percent:g} % of the disk)")


def main(args: argparse.Namespace) -> int:
    from edged import __version__
    from edged.config import DEFAULT_PATH, load_config

    config = load_config(args.config)
    source = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else "built-in defaults")
    print(f"edged {__version__} doctor — config: {source}")
    report = Report()
    settings = config.detector
    check_runtime(report, settings)
    check_edgetpu(report, settings)
    check_models(report, settings)
    check_cameras(report, config)
    check_brokers(report, config)
    check_recording(report, config)
    check_clock(report)
    return 1 if report.failed else 0
