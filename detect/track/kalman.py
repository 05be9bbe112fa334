"""A constant-velocity Kalman filter over boxes, for the tracker (detect/track/bytetrack.py).

The state is (cx, cy, a, h, vx, vy, va, vh): the box centre, aspect ratio w / h and height, and their
velocities per frame; the measurement is (cx, cy, a, h). Process and measurement noise scale with the
box height, so a large box may move more pixels per frame than a small one. This is the filter of
SORT and DeepSORT (Wojke et al., 2017) with their noise weights (1/20 of the height for position, 1/160
for velocity); written here in a few lines of numpy, since the libraries that carry it bring a whole
tracking framework with them.

    mean, covariance = initiate(measurement [4])
    mean, covariance = predict(mean, covariance)
    mean, covariance = update(mean, covariance, measurement [4])
    xyxy_to_measurement(box [4]) -> [4];  measurement_to_xyxy(mean[:4]) -> [4]
"""

from __future__ import annotations

import numpy as np

POSITION_WEIGHT = 1.0 / 20
VELOCITY_WEIGHT = 1.0 / 160

_MOTION = np.eye(8)
_MOTION[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t
_OBSERVE = np.eye(4, 8)


def xyxy_to_measurement(box) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    height = max(y2 - y1, 1e-3)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / height, height])


def measurement_to_xyxy(measurement) -> np.ndarray:
    cx, cy, aspect, height = (float(v) for v in measurement[:4])
    width = aspect * height
    return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.concatenate([measurement, np.zeros(4)])
    height = measurement[3]
    std = [2 * POSITION_WEIGHT * height, 2 * POSITION_WEIGHT * height, 1e-2, 2 * POSITION_WEIGHT * height,
           10 * VELOCITY_WEIGHT * height, 10 * VELOCITY_WEIGHT * height, 1e-5, 10 * VELOCITY_WEIGHT * height]
    return mean, np.diag(np.square(std))


def predict(mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height = mean[3]
    std = [POSITION_WEIGHT * height, POSITION_WEIGHT * height, 1e-2, POSITION_WEIGHT * height,
           VELOCITY_WEIGHT * height, VELOCITY_WEIGHT * height, 1e-5, VELOCITY_WEIGHT * height]
    mean = _MOTION @ mean
    covariance = _MOTION @ covariance @ _MOTION.T + np.diag(np.square(std))
    return mean, covariance


def update(mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height = mean[3]
    noise = np.diag(np.square([POSITION_WEIGHT * height, POSITION_WEIGHT * height, 1e-1, POSITION_WEIGHT * height]))
    projected_cov = _OBSERVE @ covariance @ _OBSERVE.T + noise
    gain = np.linalg.solve(projected_cov, _OBSERVE @ covariance).T  # covariance H^T S^-1 (S symmetric)
    mean = mean + gain @ (measurement - _OBSERVE @ mean)
    covariance = covariance - gain @ projected_cov @ gain.T
    return mean, covariance
