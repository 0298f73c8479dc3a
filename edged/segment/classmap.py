"""A segmenter's class map as it crosses from the worker to the parent: the `class_map` result kind.

Light on purpose (msgspec and numpy only): the parent decodes it without
importing any model code.
"""

from __future__ import annotations

import msgspec
import numpy as np

KIND = "class_map"


class ClassMap(msgspec.Struct, frozen=True):
    """A class map on the wire: rows × columns of `dtype` (numpy's string) as bytes, and the labels of its
    class ids (the worker fitted them to the model; the parent never loads it)."""

    rows: int
    columns: int
    dtype: str
    data: bytes
    labels: tuple[str, ...]

    @classmethod
    def of(cls, ids: np.ndarray, labels: list[str]) -> ClassMap:
        return cls(int(ids.shape[0]), int(ids.shape[1]), ids.dtype.str, np.ascontiguousarray(ids).tobytes(),
                   tuple(labels))

    def array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.rows, self.columns)
