"""Which inference lanes should run, which failed and when to try them again: the bookkeeping behind state.

Lanes are named by what they run: `edgetpu:<device>` for each Edge TPU
(`detector.devices`, else `edgetpu_device`) and `cpu:<n>` for the
`detector.workers` CPU workers. The plan holds no workers and starts no
threads; edged/service/inference.py asks it (under its own lock) what the
state is, what is due, and tells it what happened. Kept apart so the rules —
when `auto` is online, what is retried and how often — read in one place.
"""

from __future__ import annotations

import time
from typing import Literal

from edged.detect.settings import DetectorSettings

RESTART_BACKOFF_MAX = 30.0


class LanePlan:
    def __init__(self, settings: DetectorSettings) -> None:
        self.mode = settings.backend
        self.tpu_retry_seconds = settings.tpu_retry_seconds
        devices = settings.devices or [settings.edgetpu_device]
        self.tpu_names = [f"edgetpu:{device}" for device in devices] if self.mode != "cpu" else []
        self.cpu_names = [f"cpu:{i}" for i in range(settings.workers)] if self.mode != "edgetpu" else []
        self.on_tpu = self.mode == "edgetpu"  # frames go to the TPU lanes (else to the CPU lanes)
        self.accelerators: list[str] = []  # Edge TPUs the kernel shows ("usb:1-1.2", "pci:/dev/apex_0")
        self.down: dict[str, str] = {}  # lane name → why it is not running
        self.due: dict[str, float] = {}  # lane name → when to try starting it
        self._delay: dict[str, float] = {}  # lane name → restart backoff

    @staticmethod
    def is_tpu(name: str) -> bool:
        return name.startswith("edgetpu:")

    def wants_tpu_at_start(self) -> bool:
        return self.mode == "edgetpu" or (self.mode == "auto" and bool(self.accelerators))

    def wanted(self, name: str) -> bool:
        """Whether lane `name` should be taking frames now."""
        return name in (self.tpu_names if self.on_tpu else self.cpu_names)

    # -- state ------------------------------------------------------------------------------------------
    def state(self, running: set[str]) -> Literal["online", "degraded"]:
        """Online when every lane that should run does: in `auto` the TPUs, or the CPU while no attached TPU
        has failed (none attached, or one just plugged in and still loading)."""
        if not running:
            return "degraded"
        if self.on_tpu:
            return "online" if set(self.tpu_names) <= running else "degraded"
        tpu_failing = any(self.is_tpu(name) for name in self.down)
        return "online" if set(self.cpu_names) <= running and not tpu_failing else "degraded"

    def reason(self, running: set[str]) -> str | None:
        """Why we are degraded, one line (None when online)."""
        if self.state(running) == "online":
            return None
        if self.down:
            return "; ".join(f"{name}: {why}" for name, why in self.down.items())
        return "no inference worker is running"

    # -- events -------------------------------------------------------------------------------------------
    def started(self, name: str) -> None:
        self.down.pop(name, None)
        self.due.pop(name, None)
        self._delay.pop(name, None)

    def start_failed(self, name: str, why: str) -> float:
        """A start attempt failed; returns the seconds until the next one (inf: not retried)."""
        if self.is_tpu(name) and self.mode == "auto":
            self.down.setdefault(name, f"Edge TPU worker could not start: {why}")
            return self.retry_tpu(name)
        self._delay[name] = min(RESTART_BACKOFF_MAX, self._delay.get(name, 0.25) * 2)
        self.due[name] = time.monotonic() + self._delay[name]
        self.down.setdefault(name, f"worker could not start: {why}")
        return self._delay[name]

    def retry_tpu(self, name: str) -> float:
        seconds = self.tpu_retry_seconds if self.tpu_retry_seconds > 0 else float("inf")
        self.due[name] = time.monotonic() + seconds
        return seconds

    def failed(self, name: str, why: str, running_tpus: int) -> bool:
        """A running lane failed; True when `auto` must move the frames to the CPU (no TPU lane left)."""
        if self.is_tpu(name) and self.mode == "auto":
            self.down[name] = f"Edge TPU failed at runtime: {why}"
            self.retry_tpu(name)
            if running_tpus == 0:
                self.on_tpu = False
                now = time.monotonic()
                for cpu in self.cpu_names:
                    self.due.setdefault(cpu, now)
                return True
            return False
        self.down[name] = f"inference worker restarted: {why}"
        self.due[name] = time.monotonic()
        return False

    def tpu_back(self) -> bool:
        """A TPU lane loaded; True when frames switch from the CPU lanes back to the TPUs."""
        if self.on_tpu:
            return False
        self.on_tpu = True
        for name in self.cpu_names:
            self.due.pop(name, None)
            self.down.pop(name, None)
        return True

    def hardware(self, found: list[str], running: set[str]) -> bool:
        """The Edge TPUs attached now; True when that changed. One appearing is tried at once; when the last
        one is unplugged there is nothing left to fail or to retry."""
        if found == self.accelerators:
            return False
        appeared = bool(found) and not self.accelerators
        self.accelerators = found
        for name in self.tpu_names:
            if name in running:
                continue
            if appeared:
                self.due[name] = time.monotonic()
            elif not found:
                self.down.pop(name, None)
                self.due.pop(name, None)
        return True

    # -- what the supervisor does next ------------------------------------------------------------------
    def eligible(self, name: str, loaded: set[str]) -> bool:
        """Whether the supervisor should start lane `name` when it is due (`loaded`: lanes with a worker)."""
        if name in loaded:
            return False
        if self.mode != "auto":
            return True
        if self.is_tpu(name):
            return bool(self.accelerators)  # retried only while a TPU is attached
        return not self.on_tpu

    def next_due(self, now: float, loaded: set[str]) -> tuple[str | None, float]:
        """The lane to start now (or None), and when the next one will be due."""
        ready = [(at, name) for name, at in self.due.items() if self.eligible(name, loaded)]
        now_due = next((name for at, name in sorted(ready) if at <= now), None)
        return now_due, min((at for at, _ in ready), default=float("inf"))
