"""Constant-velocity Kalman filter on boxes' centre and size, for all tracks of a camera at once.

The four coordinates (cx, cy, w, h) move independently, so the usual 8-state
filter splits into four 2-state ones (position, velocity) whose covariances
stay 2x2. One array holds every track's filters, (N, 5, 4): position,
velocity and the covariance terms p00, p01, p11 per coordinate, so predicting
and correcting 20 tracks is a handful of numpy operations. Noise is
proportional to the box's size (a near person moves more pixels than a far
one) and to the elapsed capture time, so a paced camera, a stalled one and a
replay at any rate all predict sensibly.
"""

from __future__ import annotations

import numpy as np

MEASUREMENT_NOISE = 0.05  # std of a detection's coordinates, as a fraction of the box's size
ACCELERATION_NOISE = 0.6  # std of velocity change per second, in box sizes per second
INITIAL_SPEED_STD = 1.0  # std of the unknown initial velocity, in box sizes per second
MIN_SIZE = 1e-4
X, V, P00, P01, P11 = range(5)


def _measure(xyxy: np.ndarray) -> np.ndarray:
    """(M, 4) xmin ymin xmax ymax → (M, 4) cx cy w h."""
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], MIN_SIZE)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], MIN_SIZE)
    return np.column_stack(((xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, w, h))


def _scale(z: np.ndarray) -> np.ndarray:
    """The size noise scales with, per row: the geometric mean of width and height, as a column."""
    return np.sqrt(z[:, 2] * z[:, 3])[:, None]


def start(xyxy: np.ndarray) -> np.ndarray:
    """Filters for new tracks: at the measured boxes, at rest, with a wide velocity uncertainty."""
    z = _measure(xyxy)
    size = _scale(z)
    state = np.zeros((len(z), 5, 4))
    state[:, X] = z
    state[:, P00] = (MEASUREMENT_NOISE * size) ** 2
    state[:, P11] = (INITIAL_SPEED_STD * size) ** 2
    return state


def predict(state: np.ndarray, dt: float) -> None:
    """Move every filter `dt` seconds ahead, in place (white-acceleration noise)."""
    if dt <= 0 or len(state) == 0:
        return
    q = (ACCELERATION_NOISE * _scale(state[:, X])) ** 2
    p01, p11 = state[:, P01].copy(), state[:, P11]
    state[:, X] += state[:, V] * dt
    state[:, P00] += dt * (2 * p01 + dt * p11) + q * (dt ** 3 / 3)
    state[:, P01] = p01 + dt * p11 + q * (dt ** 2 / 2)
    state[:, P11] += q * dt
    np.maximum(state[:, X, 2:], MIN_SIZE, out=state[:, X, 2:])


def correct(state: np.ndarray, rows: np.ndarray, xyxy: np.ndarray) -> None:
    """Fold the measured boxes into the filters of `rows`, in place."""
    if len(rows) == 0:
        return
    z = _measure(xyxy)
    r = (MEASUREMENT_NOISE * _scale(z)) ** 2
    s = state[rows]
    p00, p01 = s[:, P00], s[:, P01]
    k0, k1 = p00 / (p00 + r), p01 / (p00 + r)
    innovation = z - s[:, X]
    s[:, X] += k0 * innovation
    s[:, V] += k1 * innovation
    s[:, P11] -= k1 * p01
    s[:, P00] = (1 - k0) * p00
    s[:, P01] = (1 - k0) * p01
    state[rows] = s


def boxes(state: np.ndarray) -> np.ndarray:
    """(N, 4) xmin ymin xmax ymax of the filters' current positions."""
    x = state[:, X]
    half = x[:, 2:] / 2
    return np.concatenate((x[:, :2] - half, x[:, :2] + half), axis=1)
