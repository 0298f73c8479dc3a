"""`edged run`'s main loop: start, tell systemd, publish stats, reload on SIGHUP, stop cleanly on SIGTERM.

Exit codes are the contract with the unit: 0 after a clean stop, 78 for a bad
configuration (RestartPreventExitStatus=78: restarting cannot fix it), 69 when
a required resource is missing at start (model not fetched, camera absent),
70 when a stage died (a thread ended by a bug, a publisher that stopped
delivering): the main loop asks every stage for its health each second, stops
vouching for the watchdog at once and exits so that systemd restarts edged.
SIGTERM stops capture, lets the frame in flight finish and be published, sends
the retained `offline` status, flushes and exits within 5 s — also while a
camera is still opening. SIGHUP re-reads the config file; a bad new file is
logged and the running one kept. Frame numbers (`seq`) continue across
reloads and every payload carries this process's `run_id`, so subscribers
tell a restart from a replay.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from edged.config import Config, load_config, with_overrides
from edged.errors import EX_SOFTWARE, EdgedError
from edged.publish.mosquitto import is_listening
from edged.publish.payloads import CameraStats, InferenceMs, Stats, WorkerStats
from edged.publish.private_broker import PrivateBroker
from edged.publish.publisher import Publisher
from edged.publish.settings import DEFAULT_BROKER
from edged.service.inference import Inference
from edged.service.journal import setup_logging
from edged.service.preflight import check_config
from edged.service.recording import Recording
from edged.service.runtime import Runtime, StartCancelled, make_publisher, start_runtime
from edged.service.stages import worker_opener
from edged.service.tracking import detector_settings
from edged.service.systemd import Notifier, Watchdog
from edged.sources.base import FrameNumbers
from edged.sources.images import quiet_pillow_size_warning

log = logging.getLogger(__name__)

STOP_BUDGET_SECONDS = 4.5  # systemd's default TimeoutStopSec is far longer; the contract says 5 s
HEALTH_INTERVAL_SECONDS = 1.0  # how often the main loop asks every stage whether it is alive
DEFAULT_HOST, DEFAULT_PORT = "::1", 1883


def same_inference(old: Config, new: Config) -> bool:
    """The running workers serve the new config as they are: keep them (no model reload). They host the
    second stages' classifiers too, so a change of those reloads them."""
    keys = ("frame_timeout_seconds", "cpu_standby")
    same_service = all(getattr(old.service, key) == getattr(new.service, key) for key in keys)
    return detector_settings(old) == detector_settings(new) and same_service and \
        worker_opener(old) == worker_opener(new)


class Daemon:
    def __init__(self, config: Config, *, config_path: Path | None = None,
                 overrides: dict[str, Any] | None = None, notifier: Notifier | None = None,
                 verbose: bool = False) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = overrides or {}
        self.notifier = notifier or Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.verbose = verbose
        self.runtime: Runtime | None = None
        self.broker: PrivateBroker | None = None
        self.run_id = secrets.token_hex(8)  # in every payload: a restart is a new run, a replay is not
        self._numbers: dict[str, FrameNumbers] = {}  # per camera, for the life of the process
        self._wake = threading.Event()
        self._stopping = threading.Event()  # also cancels a start that waits for a camera to open
        self._stop_requested = False
        self._reload_requested = False

    # -- signals -------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True
            self._stopping.set()
        self._wake.set()

    def _thread_died(self, args: threading.ExceptHookArgs) -> None:
        """A stage's thread ended with an exception (a bug): one line (the traceback with -v); the main
        loop's health check then stops edged with exit 70."""
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error("thread %s died: %s: %s", name, args.exc_type.__name__, args.exc_value,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback) if self.verbose else None)
        self._wake.set()

    @property
    def _where(self) -> str | None:
        return str(self.config_path) if self.config_path is not None else None

    # -- run -----------------------------------------------------------------------------------------------
    def run(self) -> int:
        self._setup_logging(self.config)
        logging.captureWarnings(True)  # a library's warning is a journal line like any other
        quiet_pillow_size_warning()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        started = time.monotonic()
        check_config(self.config, self._where)  # what `edged config check` checks: 78 before anything starts
        publisher = make_publisher(self.config, run_id=self.run_id)  # bad URLs, TLS files, credentials: 78
        self._ensure_broker(self.config)
        previous_hook, threading.excepthook = threading.excepthook, self._thread_died
        try:
            self.runtime = self._start(self.config, publisher)
            self._go_live(self.runtime)
            log.info("ready in %.2f s", time.monotonic() - started)
            self.notifier.ready(self.runtime.status_line())
            self.watchdog.arm()
            self._loop()
        except StartCancelled:
            log.info("stop requested while the cameras were opening")
        finally:
            self._shutdown()
            threading.excepthook = previous_hook
        return 0

    def _start(self, config: Config, publisher: Publisher, inference: Inference | None = None,
               recording: Recording | None = None) -> Runtime:
        return start_runtime(config, alive=self.watchdog.kick, publisher=publisher, inference=inference,
                             watchdog_seconds=self.notifier.watchdog_seconds, on_change=self._state_changed,
                             numbers=self._numbers, cancel=self._stopping, recording=recording)

    def _go_live(self, runtime: Runtime) -> None:
        runtime.publisher.start(backend=runtime.inference.backend, model=runtime.model,
                                state=runtime.inference.state, accelerators=runtime.inference.accelerators)
        self._state_changed(runtime)
        runtime.pipeline.start()
        runtime.segments.start()

    def _loop(self) -> None:
        assert self.runtime is not None
        next_stats = time.monotonic() + self.config.publish.stats_interval_seconds
        next_status = time.monotonic() + self.config.service.status_interval_seconds
        while not self._stop_requested:
            wake_at = min(next_stats, next_status, time.monotonic() + HEALTH_INTERVAL_SECONDS)
            self._wake.wait(max(0.0, wake_at - time.monotonic()))
            self._wake.clear()
            if self._stop_requested:
                break
            self._check_health()
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            now = time.monotonic()
            if now >= next_stats:
                self.runtime.publisher.publish_stats(self._stats_payload(self.runtime))
                next_stats = now + self.config.publish.stats_interval_seconds
            if now >= next_status:
                self.notifier.status(self.runtime.status_line())
                next_status = now + self.config.service.status_interval_seconds

    def _check_health(self) -> None:
        """Vouch for the watchdog while every stage is alive; exit 70 (systemd restarts edged) if one is not."""
        assert self.runtime is not None
        problem = self.runtime.health()
        if problem is None:
            self.watchdog.vouch()
            return
        self.watchdog.withdraw()
        raise EdgedError(f"{problem}: stopping so that systemd restarts edged", exit_code=EX_SOFTWARE)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        self.notifier.stopping()
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            log.info("stopping: finishing the frame in flight")
            runtime.pipeline.stop(timeout=max(0.5, deadline - time.monotonic() - 1.5))
            runtime.segments.stop(timeout=max(0.2, min(1.0, deadline - time.monotonic() - 1.5)))
            runtime.end_events("stopped")
            runtime.recording.close(timeout=max(0.2, min(2.0, deadline - time.monotonic() - 1.5)))
            runtime.publisher.stop(timeout=max(0.5, deadline - time.monotonic() - 0.5))
            runtime.inference.close()
            runtime.segments.close()
        if self.broker is not None:
            self.broker.close()
            self.broker = None
        log.info("stopped")

    # -- state, stats, logging -----------------------------------------------------------------------------
    def _state_changed(self, runtime: Runtime | None = None) -> None:
        runtime = runtime or self.runtime
        if runtime is None:
            return
        state, backend, model = runtime.inference.state, runtime.inference.backend, runtime.model
        runtime.publisher.set_state(state, backend=backend, model=model,
                                    accelerators=runtime.inference.accelerators)
        if state == "degraded":
            log.warning("status degraded: %s", runtime.inference.reason or "no inference worker")
        self.notifier.status(runtime.status_line())

    @staticmethod
    def _stats_payload(runtime: Runtime) -> Stats:
        snap = runtime.stats.snapshot()
        return Stats(
            state=runtime.inference.state, backend=runtime.inference.backend, model=runtime.model,
            uptime_s=snap.uptime_s, fps=snap.fps,
            inference_ms=InferenceMs(p50=snap.inference_p50_ms, p95=snap.inference_p95_ms),
            frames_processed=snap.frames_processed, frames_dropped=snap.frames_dropped,
            cameras={name: CameraStats(fps=c.fps, frames_dropped=c.frames_dropped,
                                       source_state=c.source_state) for name, c in snap.cameras.items()},
            record=runtime.recording.stats(),
            workers=[WorkerStats(name=name, backend=w.backend, fps=w.fps, busy=w.busy)
                     for name, w in snap.workers.items()])

    def _setup_logging(self, config: Config) -> None:
        setup_logging("debug" if self.verbose else config.service.log_level, device_id=config.device_id)

    def _ensure_broker(self, config: Config) -> None:
        """The quick start's broker: a private mosquitto on [::1]:1883 when the default one is not running."""
        wanted = config.service.private_broker and config.mqtt.brokers == [DEFAULT_BROKER]
        if self.broker is not None or not wanted or is_listening(DEFAULT_HOST, DEFAULT_PORT):
            return
        try:  # unprivileged, tied to this process, its own session (edged/publish/private_broker.py)
            self.broker = PrivateBroker(DEFAULT_HOST, DEFAULT_PORT).start()
        except EdgedError as exc:
            log.warning("no MQTT broker on [::1]:1883 and no private one could be started (%s); "
                        "publishing starts when a broker listens there", exc)
            return
        log.info("no MQTT broker on [::1]:1883: started a private mosquitto there (pid %s) for this run%s",
                 self.broker.pid, f", as user {self.broker.user}" if self.broker.user else "")

    # -- reload ------------------------------------------------------------------------------------------
    def _reload(self) -> None:
        """SIGHUP: re-read and re-validate the file; apply it, or log why not and keep running as before."""
        self.notifier.reloading()
        old = self.runtime
        assert old is not None
        try:
            new = with_overrides(load_config(self.config_path), **self.overrides)
            check_config(new, self._where)
            same_publisher = (new.mqtt, new.publish, new.device_id) == (old.config.mqtt, old.config.publish,
                                                                         old.config.device_id)
            publisher = old.publisher if same_publisher else make_publisher(new, run_id=self.run_id)
        except EdgedError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.ready(old.status_line())
            return
        if new == self.config:
            log.info("reload: configuration unchanged")
            self.notifier.ready(old.status_line())
            return
        log.info("reload: applying the new configuration")
        old.pipeline.stop(timeout=2.0)
        old.segments.stop(timeout=1.0)
        old.segments.close()  # segmenter workers are rebuilt with each configuration
        old.end_events("reload")
        inference = old.inference if same_inference(old.config, new) else None
        if inference is None:
            old.inference.close()
        recording = old.recording if old.recording.serves(new) else None
        if recording is None:
            old.recording.close(timeout=2.0)
        self._setup_logging(new)
        self._ensure_broker(new)
        try:
            runtime = self._start(new, publisher, inference, recording)
        except EdgedError as exc:
            log.error("reload failed (%s); restarting with the previous configuration", exc)
            new, publisher = self.config, old.publisher
            runtime = self._start(new, publisher, inference, recording)  # reused: it serves both
        if publisher is not old.publisher:
            # The same status topic goes on at once under the new publisher: no `offline` in between.
            old.publisher.stop(timeout=1.0, handover=publisher.topics.status == old.publisher.topics.status)
            self.runtime = runtime
            self._go_live(runtime)
        else:
            self.runtime = runtime
            self._state_changed(runtime)
            runtime.pipeline.start()
            runtime.segments.start()
        self.config = new
        self.notifier.ready(runtime.status_line())
