"""`edged bench`: the bare model against the whole daemon, on this machine, in one run.

Baseline: `interpreter.invoke()` alone, in this process, on a prepared tensor.
Then the real daemon — `edged run` as a child process with a NOTIFY_SOCKET,
the sample photos as its camera, a real broker — observed the way a user
observes it (edged/service/daemonrun.py). Two daemon runs: unpaced
(throughput; files are never dropped, so every frame counts) and paced at half
the bare invoke rate (latency without queueing). The bare invoke phase is split
around the throughput run and averaged, so a machine whose load drifts during
the bench skews the ratio less. Besides the ratio to bare invoke, the bench
reports the protocol's own loss (pipeline fps against what the workers' own
invoke times allow: their busy fraction), and the host's CPU time per frame:
the daemon process's CPU (capture, preprocess, hand-off, publish) plus the
postprocess the worker runs — what decides whether a slow host keeps a fast
accelerator busy.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from edged.detect.settings import DetectorSettings
from edged.errors import UnavailableError
from edged.service.daemonrun import DaemonConfig, run_daemon
from edged.service.stats import percentile


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
    workers: int  # inference workers in the daemon runs
    threads: int  # threads per worker (and in the bare invoke)
    busy: list[float]  # per worker: time inside invoke / wall time, throughput run
    protocol_ratio: float  # pipeline fps / what the workers' own invoke times allow
    host_cpu_ms: float  # host CPU per frame: the daemon process (not its workers) + the postprocess


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


def run_bench(broker_url: str, *, backend: Literal["auto", "cpu", "edgetpu"] = "auto",
              seconds: float = 10.0, workers: int = 1, threads: int = 1) -> BenchResult:
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
    settings = DetectorSettings(backend=backend, threads=threads)
    before = bare_invoke(settings, seconds / 2, image)
    throughput = run_daemon(broker_url, DaemonConfig(backend, workers, threads), seconds)
    after = bare_invoke(settings, seconds / 2, image)
    times = before.times_ms + after.times_ms
    invoke_fps = len(times) / (sum(times) / 1000)
    paced = run_daemon(broker_url, DaemonConfig(backend, workers, threads, round(invoke_fps / 2, 2)), seconds)
    latencies = paced.latencies_ms()
    pipeline_fps = throughput.fps()
    per_worker = throughput.workers()
    allowed = sum(fps / busy for busy, fps in per_worker.values() if busy > 0)  # frames/s at busy = 1
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
        load_avg=[round(load_start, 2), round(os.getloadavg()[0], 2)],
        workers=workers, threads=threads, busy=[round(busy, 3) for busy, _ in per_worker.values()],
        protocol_ratio=round(sum(fps for _, fps in per_worker.values()) / allowed, 3) if allowed else 0.0,
        host_cpu_ms=round(throughput.host_cpu_ms() + before.nms_ms, 3))
