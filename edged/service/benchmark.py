"""`edged bench`: the bare model against the whole daemon, on this machine, in one run.

Baseline: `interpreter.invoke()` alone, in this process, on a prepared tensor.
Then the real daemon — `edged run` as a child process with a NOTIFY_SOCKET,
the sample photos as its camera, a real broker — observed the way a user
observes it: time from launch to READY=1, detections received by an MQTT
subscriber (fps from their `published_at`, capture→publish latency from
`published_at - captured_at`), and the peak RSS of its process tree. Two
daemon runs: unpaced (throughput; files are never dropped, so every frame
counts) and paced at half the bare invoke rate (latency without queueing).
The bare invoke phase is split around the throughput run and averaged, so a
machine whose load drifts during the bench skews the ratio less.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from edged.detect.settings import DetectorSettings
from edged.errors import UnavailableError
from edged.service.stats import percentile

WARMUP_SECONDS = 1.5


class Latency(msgspec.Struct):
    p50: float
    p95: float
    p99: float


class BenchResult(msgspec.Struct, kw_only=True):
    invoke_fps: float
    pipeline_fps: float
    ratio: float
    latency_ms: Latency
    nms_ms: float
    rss_mb: float
    ready_s: float
    backend: str
    runtime: str
    invoke_ms: float  # median bare invoke
    daemon_invoke_ms: float  # median invoke time the worker reported during the throughput run
    overhead_ms: float  # median of (capture→publish latency − that frame's invoke in the worker), paced run
    nms_raw_ms: float | None  # decode + NMS of the raw SSD outputs (1917 anchors x 90 classes), if fetched
    frames: int
    machine: str
    load_avg: list[float]  # 1-minute load average at the start and the end: other work skews every number


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith(("model name", "Model"))), platform.processor() or "?")
    return f"{model}, {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, " \
           f"Python {platform.python_version()}"


@dataclass
class Bare:
    times_ms: list[float]
    nms_ms: float
    nms_raw_ms: float | None
    backend: str
    runtime: str


def bare_invoke(settings: DetectorSettings, seconds: float, image: np.ndarray) -> Bare:
    """Invoke times, median host postprocess, raw decode + NMS (None if not fetched), backend, runtime."""
    from edged.detect.detector import Detector

    with Detector.open(settings) as detector:
        tensor, geometry = detector.prepare(image)
        outputs = detector.invoke(tensor)  # warm-up, and outputs for the postprocess timing
        interpreter = detector.backend.interpreter
        interpreter.set_tensor(detector.backend.input_detail["index"], tensor[np.newaxis])
        for _ in range(5):
            interpreter.invoke()
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000)
        nms = _time_postprocess(detector, outputs, geometry)
        backend, runtime = detector.backend_name, detector.runtime
    nms_raw = None
    try:
        with Detector.open(msgspec.structs.replace(settings, cpu_variant="raw", backend="cpu")) as raw:
            tensor, geometry = raw.prepare(image)
            nms_raw = _time_postprocess(raw, raw.invoke(tensor), geometry)
    except UnavailableError:
        pass  # the raw variant is not fetched (`edged models fetch --variant raw`)
    return Bare(times, nms, nms_raw, backend, runtime)


def _time_postprocess(detector, outputs, geometry, repeat: int = 300) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        detector.postprocess(outputs, geometry)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


@dataclass
class DaemonRun:
    """One `edged run` child: READY time, detections a subscriber got, peak RSS of its process tree."""

    ready_s: float = 0.0
    received: list[tuple[float, float, float]] = field(default_factory=list)  # captured_at, published_at, ms
    rss_mb: float = 0.0

    def window(self) -> list[tuple[float, float, float]]:
        if not self.received:
            return []
        start = self.received[0][1] + WARMUP_SECONDS
        return [r for r in self.received if r[1] >= start]

    def fps(self) -> float:
        window = self.window()
        if len(window) < 2:
            return 0.0
        return (len(window) - 1) / (window[-1][1] - window[0][1])

    def latencies_ms(self) -> list[float]:
        return [(published - captured) * 1000 for captured, published, _ in self.window()]

    def invoke_ms(self) -> float:
        return percentile([ms for _, _, ms in self.window()], 50)

    def overhead_ms(self) -> float:
        """What the pipeline adds to the invoke itself: resize, hand-offs, IPC, postprocess, publish."""
        extra = [(published - captured) * 1000 - ms for captured, published, ms in self.window()]
        return percentile(extra, 50)


def _iso(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident set) of `pid` and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        peaks = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
        total_kb += peaks[0] if peaks else 0
    return round(total_kb / 1024, 1)


def run_daemon(broker_url: str, backend: str, fps: float, seconds: float) -> DaemonRun:
    """Start `edged run` on the sample photos at `fps` (0: unpaced), observe it for `seconds`, stop it."""
    from edged.publish.connection import Connection
    from edged.publish.settings import MqttSettings

    result = DaemonRun()
    lock = threading.Lock()
    subscriber = Connection(MqttSettings(brokers=[broker_url]), client_id=f"edged-bench-{os.getpid()}",
                            persistent=False)

    def on_message(client, userdata, message) -> None:
        payload = msgspec.json.decode(message.payload)
        with lock:
            result.received.append((_iso(payload["captured_at"]), _iso(payload["published_at"]),
                                    payload["inference_ms"]))

    subscriber.client.on_message = on_message
    def subscribe() -> None:
        subscriber.client.subscribe("edged/bench/+/detections", qos=1)

    subscriber.on_connected = subscribe
    subscriber.connect_now()
    if not subscriber.wait_connected(10):
        raise UnavailableError(f"edged bench: cannot reach the broker {broker_url}")
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'[device]\nid = "bench"\n[detector]\nbackend = "{backend}"\nthreads = 1\n'
            f'[mqtt]\nbrokers = ["{broker_url}"]\n[publish]\nstats_interval_seconds = 3600\n'
            f'[[cameras]]\nname = "bench"\nsource = "samples"\nfps = {fps}\n'
            f'[service]\nprivate_broker = false\ncpu_standby = false\n')
        notify_path = str(Path(tmp) / "notify")
        log_path = Path(tmp) / "edged.log"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, log_path.open("wb") as log:
            notify.bind(notify_path)
            notify.settimeout(30)
            launched = time.monotonic()
            process = subprocess.Popen([sys.executable, "-m", "edged", "run", "--config", str(config)],
                                       env={**os.environ, "NOTIFY_SOCKET": notify_path},
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
            try:
                while b"READY=1" not in notify.recv(4096):
                    pass
                result.ready_s = round(time.monotonic() - launched, 2)
                time.sleep(seconds + WARMUP_SECONDS)
                result.rss_mb = tree_peak_rss_mb(process.pid)
            except socket.timeout:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise UnavailableError(f"edged run did not become ready: {' '.join(tail)}") from None
            finally:
                process.terminate()
                process.wait(10)
    subscriber.stop()
    return result


def run_bench(broker_url: str, *, backend: Literal["auto", "cpu", "edgetpu"] = "auto",
              seconds: float = 10.0) -> BenchResult:
    from edged import paths
    from edged.sources.base import SourceError
    from edged.sources.images import ImageSource

    samples = ImageSource("bench", str(paths.samples_dir()), hint="fetch them with `edged models fetch`")
    try:
        samples.open((0, 0))
        image = samples.read().image
    except SourceError as exc:
        raise UnavailableError(f"sample photos: {exc}") from None
    assert image is not None
    load_start = os.getloadavg()[0]
    settings = DetectorSettings(backend=backend, threads=1)
    before = bare_invoke(settings, seconds / 2, image)
    throughput = run_daemon(broker_url, backend, 0, seconds)
    after = bare_invoke(settings, seconds / 2, image)
    times = before.times_ms + after.times_ms
    invoke_fps = len(times) / (sum(times) / 1000)
    paced = run_daemon(broker_url, backend, round(invoke_fps / 2, 2), seconds)
    latencies = paced.latencies_ms()
    pipeline_fps = throughput.fps()
    return BenchResult(
        invoke_fps=round(invoke_fps, 2), pipeline_fps=round(pipeline_fps, 2),
        ratio=round(pipeline_fps / invoke_fps, 3),
        latency_ms=Latency(*(round(percentile(latencies, q), 2) for q in (50, 95, 99))),
        nms_ms=round(before.nms_ms, 3), rss_mb=max(throughput.rss_mb, paced.rss_mb),
        ready_s=throughput.ready_s,
        backend=before.backend, runtime=before.runtime, invoke_ms=round(float(np.median(times)), 2),
        daemon_invoke_ms=round(throughput.invoke_ms(), 2), overhead_ms=round(paced.overhead_ms(), 2),
        nms_raw_ms=round(before.nms_raw_ms, 3) if before.nms_raw_ms is not None else None,
        frames=len(throughput.window()) + len(paced.window()), machine=machine(),
        load_avg=[round(load_start, 2), round(os.getloadavg()[0], 2)])
