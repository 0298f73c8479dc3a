"""Which job sits in which input slot of one worker: the parent's side of the slots, thread-safe.

The dispatcher puts jobs in (and replaces a live camera's job that has not
started), the worker's reader takes them out as results arrive or hands their
tags back as lost when the worker failed. Job numbers are the worker's own and
never reused, so a result always finds its job, and a replaced job's result can
never be mistaken for its successor's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from edged.detect.slots import QUEUED, SlotBlock

CLAIM_WAIT_SECONDS = 0.05  # a worker holds the claim lock for microseconds; longer means it hangs


@dataclass
class Job:
    slot: int
    tag: object  # the caller's handle, given back with the result or when the job is lost
    seq: int
    stream: str  # jobs of one stream (camera) may replace each other while queued
    submitted_ns: int


class JobTable:
    """The jobs of one worker's slot block, by job number; one lock for the dispatcher and the reader."""

    def __init__(self, block: SlotBlock) -> None:
        self.block = block
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._next = 0

    @property
    def free(self) -> int:
        with self._lock:
            return self.block.count - len(self._jobs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def oldest_ns(self) -> int | None:
        with self._lock:
            return min((job.submitted_ns for job in self._jobs.values()), default=None)

    def has_queued(self, stream: str) -> bool:
        """A job of `stream` waits in a slot and has not started (a hint: the worker may claim it now)."""
        with self._lock:
            return any(job.stream == stream and self.block.state(job.slot) == QUEUED
                       for job in self._jobs.values())

    def put(self, tensor: np.ndarray, meta: tuple[float, ...], *, seq: int, tag: object,
            stream: str) -> tuple[int, int] | None:
        """Fill a free slot; (job number, slot), or None when every slot is taken."""
        with self._lock:
            used = {job.slot for job in self._jobs.values()}
            slot = next((i for i in range(self.block.count) if i not in used), None)
            if slot is None:
                return None
            self._next += 1
            self.block.fill(slot, self._next, tensor, meta)
            self._jobs[self._next] = Job(slot, tag, seq, stream, time.monotonic_ns())
            return self._next, slot

    def cancel(self, number: int) -> None:
        """A job whose run message never reached the worker."""
        with self._lock:
            job = self._jobs.pop(number, None)
            if job is not None:
                self.block.release(job.slot)

    def replace(self, stream: str, tensor: np.ndarray, meta: tuple[float, ...], *, seq: int,
                tag: object) -> tuple[bool, object]:
        """Put a newer input in place of the oldest job of `stream` that has not started.

        (True, the replaced job's tag), or (False, None) when every job of the stream
        has started — or the worker holds the claim lock too long (it may hang).
        """
        with self._lock:
            numbers = sorted(number for number, job in self._jobs.items() if job.stream == stream)
            if not numbers or not self.block.lock(timeout=CLAIM_WAIT_SECONDS):
                return False, None
            try:
                for number in numbers:
                    old = self._jobs[number]
                    if self.block.state(old.slot) != QUEUED or self.block.job(old.slot) != number:
                        continue
                    self._next += 1
                    self.block.fill(old.slot, self._next, tensor, meta)
                    del self._jobs[number]
                    self._jobs[self._next] = Job(old.slot, tag, seq, stream, old.submitted_ns)
                    return True, old.tag
            finally:
                self.block.unlock()
        return False, None

    def finish(self, number: int, slot: int) -> Job | None:
        """The worker sent this job's result: its slot is free again."""
        with self._lock:
            job = self._jobs.pop(number, None)
            self.block.release(slot)
            return job

    def take_all(self) -> list[object]:
        """The tags of every job still held, oldest first (after a failure: they will never finish)."""
        with self._lock:
            tags = [job.tag for _, job in sorted(self._jobs.items())]
            self._jobs.clear()
        return tags

    def describe(self) -> str:
        """What the worker is doing, for error messages: "idle", "running frame 7 (+1 queued)"."""
        with self._lock:
            jobs = [job for _, job in sorted(self._jobs.items())]
        if not jobs:
            return "idle"
        return f"running frame {jobs[0].seq}" + (f" (+{len(jobs) - 1} queued)" if len(jobs) > 1 else "")
