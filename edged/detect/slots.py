"""Input slots in shared memory: the parent fills the next inputs while the worker runs the current one.

One block per model in a worker holds `count` input tensors of one shape, each
with a small header both processes read: the job number, the slot's state
(free → queued → running → free) and four floats of job metadata (a
detector's letterbox geometry; a classifier's crop box later). The worker
claims a queued slot under a lock it shares with the parent; that lock is what
lets the parent replace a live camera's frame that has not started yet with a
newer one, in place, without a race.

The block is an anonymous memfd handed to the worker over its pipe, and the
lock is a POSIX record lock on it: nothing is named in /dev/shm or left behind
when a process is killed (the kernel frees both with the last descriptor and
drops a dead process's lock), and no resource-tracker process is needed.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import time

import numpy as np

FREE, QUEUED, RUNNING = 0, 1, 2
HEADER = np.dtype([("job", "<i8"), ("state", "<i8"), ("meta", "<f8", (4,))])
ALIGN = 64


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


class SlotBlock:
    """`count` tensors of `shape`/`dtype` after a header array, in one shared memory file."""

    def __init__(self, fd: int, count: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.fd = fd
        self.count = count
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._map = mmap.mmap(fd, self.size(count, self.shape, self.dtype))
        self.header = np.ndarray((count,), dtype=HEADER, buffer=self._map)
        stride = _aligned(int(np.prod(shape)) * self.dtype.itemsize)
        start = _aligned(HEADER.itemsize * count)
        self._tensors = [np.ndarray(self.shape, dtype=self.dtype, buffer=self._map, offset=start + i * stride)
                         for i in range(count)]

    @staticmethod
    def size(count: int, shape: tuple[int, ...], dtype: np.dtype) -> int:
        tensor = _aligned(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return _aligned(HEADER.itemsize * count) + count * tensor

    @classmethod
    def create(cls, count: int, shape: tuple[int, ...], dtype: np.dtype) -> SlotBlock:
        fd = os.memfd_create("edged-input-slots", os.MFD_CLOEXEC)
        os.ftruncate(fd, cls.size(count, shape, dtype))  # zero-filled: every slot FREE
        return cls(fd, count, shape, dtype)

    def tensor(self, slot: int) -> np.ndarray:
        return self._tensors[slot]

    def fill(self, slot: int, job: int, tensor: np.ndarray, meta: tuple[float, ...]) -> None:
        """Write a job into a slot the worker is not using (free, or queued under the claim lock)."""
        self._tensors[slot][...] = tensor
        entry = self.header[slot]
        entry["job"] = job
        entry["meta"] = (tuple(meta) + (0.0, 0.0, 0.0, 0.0))[:4]
        entry["state"] = QUEUED

    def claim(self, slot: int) -> tuple[int, tuple[float, ...]]:
        """Worker side, under the claim lock: mark a queued slot running; its job number and metadata."""
        entry = self.header[slot]
        if int(entry["state"]) != QUEUED:
            raise RuntimeError(f"slot {slot} is not queued (state {int(entry['state'])})")
        entry["state"] = RUNNING
        return int(entry["job"]), tuple(float(v) for v in entry["meta"])

    def state(self, slot: int) -> int:
        return int(self.header[slot]["state"])

    def job(self, slot: int) -> int:
        return int(self.header[slot]["job"])

    def release(self, slot: int) -> None:
        self.header[slot]["state"] = FREE

    def lock(self, timeout: float | None = None) -> bool:
        """Take the claim lock: the worker waits for it, the parent gives up after `timeout` (it may hang)."""
        if timeout is None:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.0002)

    def unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Drop the views, the mapping and the descriptor (the kernel frees the memory with the last one)."""
        self._tensors = []
        self.header = np.ndarray((0,), dtype=HEADER)
        try:
            self._map.close()
        except BufferError:  # a view is still referenced somewhere: the mapping goes with it
            pass
        os.close(self.fd)
