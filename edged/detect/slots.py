"""Input slots in shared memory: the parent fills the next inputs while the worker runs the current one.

One block per model in a worker holds `count` input tensors of one shape, each
with a small header both processes read: the job number, the slot's state
(free → queued → running → free) and four floats of job metadata (a
detector's letterbox geometry; a classifier's crop box later). The worker
claims a queued slot under a lock it shares with the parent; that lock is what
lets the parent replace a live camera's frame that has not started yet with a
newer one, in place, without a race.
"""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory

import numpy as np

FREE, QUEUED, RUNNING = 0, 1, 2
HEADER = np.dtype([("job", "<i8"), ("state", "<i8"), ("meta", "<f8", (4,))])
ALIGN = 64


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


class SlotBlock:
    """`count` tensors of `shape`/`dtype` after a header array, in one shared-memory segment."""

    def __init__(self, shm: SharedMemory, count: int, shape: tuple[int, ...], dtype: np.dtype, *,
                 owner: bool) -> None:
        self._shm = shm
        self._owner = owner
        self.count = count
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.header = np.ndarray((count,), dtype=HEADER, buffer=shm.buf)
        stride = _aligned(int(np.prod(shape)) * self.dtype.itemsize)
        start = _aligned(HEADER.itemsize * count)
        self._tensors = [np.ndarray(shape, dtype=self.dtype, buffer=shm.buf, offset=start + i * stride)
                         for i in range(count)]

    @staticmethod
    def size(count: int, shape: tuple[int, ...], dtype: np.dtype) -> int:
        return _aligned(HEADER.itemsize * count) + count * _aligned(int(np.prod(shape)) * np.dtype(dtype).itemsize)

    @classmethod
    def create(cls, count: int, shape: tuple[int, ...], dtype: np.dtype) -> SlotBlock:
        shm = SharedMemory(create=True, size=cls.size(count, shape, dtype))
        block = cls(shm, count, shape, dtype, owner=True)
        block.header[:] = np.zeros(count, dtype=HEADER)
        return block

    @classmethod
    def attach(cls, name: str, count: int, shape: tuple[int, ...], dtype: str) -> SlotBlock:
        return cls(SharedMemory(name=name), count, shape, np.dtype(dtype), owner=False)

    @property
    def name(self) -> str:
        return self._shm.name

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

    def release(self, slot: int) -> None:
        self.header[slot]["state"] = FREE

    def close(self) -> None:
        """Drop the views, then the mapping (and the segment itself when this side created it)."""
        self._tensors = []
        self.header = np.ndarray((0,), dtype=HEADER)
        self._shm.close()
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
