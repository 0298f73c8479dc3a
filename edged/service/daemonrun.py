"""One `edged run` child observed the way a user observes it, for `edged bench`.

Time from launch to READY=1 (its NOTIFY_SOCKET), detections and stats received
by an MQTT subscriber (fps from their `published_at`, capture→publish latency
from `published_at - captured_at`, each worker's busy fraction from the stats),
the peak RSS of its process tree and the CPU time of the daemon's own process
(not its workers) over the measured window, from /proc.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from edged.errors import UnavailableError
from edged.service.stats import percentile

WARMUP_SECONDS = 1.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class DaemonConfig:
    backend: str
    workers: int = 1
    threads: int = 1
    fps: float = 0.0  # the camera's cap; 0: unpaced


@dataclass
class DaemonRun:
    """What one run showed: READY time, detections, stats, peak RSS, the daemon process's CPU time."""

    ready_s: float = 0.0
    received: list[tuple[float, float, float]] = field(default_factory=list)  # captured_at, published_at, ms
    stats: list[tuple[float, dict]] = field(default_factory=list)  # (published_at, payload)
    rss_mb: float = 0.0
    window_s: tuple[float, float] = (0.0, 0.0)  # wall-clock span the CPU time was measured over
    cpu_s: float = 0.0  # CPU time of the daemon's own process over that span

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

    def host_cpu_ms(self) -> float:
        """The daemon process's CPU time per frame published over the CPU window."""
        start, end = self.window_s
        frames = sum(1 for _, published, _ in self.received if start <= published < end)
        return 1000 * self.cpu_s / frames if frames else 0.0

    def workers(self) -> dict[str, tuple[float, float]]:
        """Worker name → (mean busy fraction, mean fps) over the stats published after the warm-up."""
        start = self.received[0][1] + WARMUP_SECONDS if self.received else 0.0
        samples: dict[str, list[tuple[float, float]]] = {}
        for published, payload in self.stats:
            if published >= start:
                for worker in payload.get("workers", []):
                    samples.setdefault(worker["name"], []).append((worker["busy"], worker["fps"]))
        return {name: (sum(b for b, _ in values) / len(values), sum(f for _, f in values) / len(values))
                for name, values in sorted(samples.items())}


def iso_seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


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


def run_daemon(broker_url: str, daemon: DaemonConfig, seconds: float) -> DaemonRun:
    """Start `edged run` on the sample photos, observe it for `seconds` after a warm-up, stop it."""
    from edged.publish.connection import Connection
    from edged.publish.settings import MqttSettings

    result = DaemonRun()
    lock = threading.Lock()
    subscriber = Connection(MqttSettings(brokers=[broker_url]), client_id=f"edged-bench-{os.getpid()}",
                            persistent=False)

    def on_message(client, userdata, message) -> None:
        payload = msgspec.json.decode(message.payload)
        with lock:
            if message.topic.endswith("/stats"):
                result.stats.append((iso_seconds(payload["published_at"]), payload))
            else:
                result.received.append((iso_seconds(payload["captured_at"]),
                                        iso_seconds(payload["published_at"]), payload["inference_ms"]))

    subscriber.client.on_message = on_message
    subscriber.on_connected = lambda: subscriber.client.subscribe(
        [("edged/bench/+/detections", 1), ("edged/bench/stats", 1)])
    subscriber.connect_now()
    if not subscriber.wait_connected(10):
        raise UnavailableError(f"edged bench: cannot reach the broker {broker_url}")
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'[device]\nid = "bench"\n[detector]\nbackend = "{daemon.backend}"\nthreads = {daemon.threads}\n'
            f'workers = {daemon.workers}\n[mqtt]\nbrokers = ["{broker_url}"]\n'
            f'[publish]\nstats_interval_seconds = 1.0\n'
            f'[[cameras]]\nname = "bench"\nsource = "samples"\nfps = {daemon.fps}\n'
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
                time.sleep(WARMUP_SECONDS)
                start, cpu_start = time.time(), process_cpu_seconds(process.pid)
                time.sleep(seconds)
                result.window_s = (start, time.time())
                result.cpu_s = process_cpu_seconds(process.pid) - cpu_start
                result.rss_mb = tree_peak_rss_mb(process.pid)
            except socket.timeout:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise UnavailableError(f"edged run did not become ready: {' '.join(tail)}") from None
            finally:
                process.terminate()
                process.wait(10)
    subscriber.stop()
    return result
