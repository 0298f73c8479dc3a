"""`edged bench`: bare invoke speed against the whole daemon on this machine (edged/service/benchmark.py)."""

from __future__ import annotations

import argparse
import os
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure bare interpreter.invoke() fps, then run the real daemon on the sample photos against a "
        "broker: full-pipeline fps and its ratio to invoke fps, each worker's busy fraction, capture→publish "
        "latency (source paced at half the invoke rate), host CPU time per frame, peak RSS of the daemon and "
        "its workers, time to READY.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--broker", metavar="URL",
                        help="broker to publish to (default: a private mosquitto on [::1] for the run)")
    parser.add_argument("--seconds", type=float, default=10.0, metavar="N",
                        help="length of each measurement phase (default: 10)")
    parser.add_argument("--backend", choices=["auto", "cpu", "edgetpu"], default="auto",
                        help="backend to measure (default: auto, as the daemon would choose)")
    parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                        help="CPU inference workers in the daemon (detector.workers; default: 1)")
    parser.add_argument("--threads", type=_positive, default=1, metavar="N",
                        help="threads per worker and in the bare invoke (detector.threads; default: 1)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 16, got {text!r}")
    return value


def main(args: argparse.Namespace) -> int:
    import msgspec

    from edged.publish.mosquitto import Mosquitto
    from edged.service.benchmark import run_bench

    broker = None
    url = args.broker
    if url is None:
        broker = Mosquitto(bind="::1").start()
        url = f"mqtt://[::1]:{broker.port}"
    try:
        result = run_bench(url, backend=args.backend, seconds=args.seconds, workers=args.workers,
                           threads=args.threads)
    finally:
        if broker is not None:
            broker.close()
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    rows = [
        ("machine", result.machine),
        ("backend", f"{result.backend} ({result.runtime})"),
        ("bare invoke", f"{result.invoke_fps:.1f} fps (median {result.invoke_ms:.2f} ms)"),
        ("full pipeline", f"{result.pipeline_fps:.1f} fps = {result.ratio:.3f} x bare invoke "
                          f"({result.workers} worker(s) x {result.threads} thread(s))"),
        ("workers", f"busy {', '.join(f'{busy:.3f}' for busy in result.busy)} (time inside invoke); "
                    f"{result.protocol_ratio:.3f} x what their invoke times allow; invoke median "
                    f"{result.daemon_invoke_ms:.2f} ms in the daemon"),
        ("capture→publish", f"p50 {result.latency_ms.p50:.1f} ms, p95 {result.latency_ms.p95:.1f} ms, "
                            f"p99 {result.latency_ms.p99:.1f} ms (paced at half the invoke rate); "
                            f"p50 {result.overhead_ms:.1f} ms more than the frame's own invoke"),
        ("postprocess", f"{result.nms_ms:.3f} ms" + (f"; raw decode + NMS {result.nms_raw_ms:.3f} ms"
                                                      if result.nms_raw_ms is not None else "")),
        ("host CPU", f"{result.host_cpu_ms:.2f} ms per frame (capture, preprocess, hand-off, postprocess, "
                     "publish)"),
        ("peak RSS", f"{result.rss_mb:.0f} MiB (daemon + inference workers)"),
        ("time to READY", f"{result.ready_s:.2f} s"),
        ("load average", f"{result.load_avg[0]:.2f} at the start, {result.load_avg[1]:.2f} at the end "
                         f"({os.cpu_count()} CPUs)"),
    ]
    for name, value in rows:
        print(f"{name:<16} {value}")
    return 0
