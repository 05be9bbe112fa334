"""How a run meets class imbalance: the classification loss's class weights (train.class_weights) and
what the start of the run says about them and about repeat-factor sampling (data.repeat_factor_threshold,
detect/data/repeat_factor.py).

    weights = class_weights(setting, samples, class_names) -> float [C + 1] (background first) or None
    lines = imbalance_lines(config, samples, class_names, weights) -> log lines
"""

from __future__ import annotations

import numpy as np
import torch

from detect.data.repeat_factor import class_repeat_factors, repeat_factors
from detect.errors import ConfigError


def box_counts(samples, num_classes: int) -> np.ndarray:
    """int [C]: boxes of each class in the training samples."""
    labels = np.concatenate([np.asarray(sample.labels, np.int64) for sample in samples] or [np.zeros(0, np.int64)])
    return np.bincount(labels, minlength=num_classes + 1)[1:]


def class_weights(setting, samples, class_names: list[str]) -> torch.Tensor | None:
    """train.class_weights resolved: auto is 1 / sqrt(boxes of the class), scaled to a mean of 1 over the
    classes (a class without boxes takes the largest weight); a list is used as given."""
    if setting == "none":
        return None
    if isinstance(setting, list):
        if len(setting) != len(class_names) or any(w < 0 for w in setting):
            raise ConfigError(f"train.class_weights: {len(setting)} weights for {len(class_names)} classes "
                              f"({', '.join(class_names)}); give one weight of 0 or more per class, or auto")
        foreground = np.asarray(setting, np.float64)
    else:
        counts = box_counts(samples, len(class_names)).astype(np.float64)
        foreground = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), np.nan)
        foreground = np.where(np.isnan(foreground), np.nanmax(foreground) if np.any(counts > 0) else 1.0, foreground)
        foreground = foreground / foreground.mean()
    return torch.tensor([1.0, *foreground.tolist()], dtype=torch.float32)


def imbalance_lines(config, samples, class_names: list[str], weights: torch.Tensor | None) -> list[str]:
    lines = []
    if weights is not None:
        lines.append("class weights of the classification loss: " + ", ".join(
            f"{name} {weight:.2f}" for name, weight in zip(class_names, weights[1:].tolist())))
    threshold = config.data.repeat_factor_threshold
    if threshold is not None:
        label_sets = [set(int(label) for label in sample.labels) for sample in samples]
        factors = repeat_factors(label_sets, threshold)
        by_class = class_repeat_factors(label_sets, threshold)
        repeated = [f"{class_names[label - 1]} x{factor:.2f}" for label, factor in sorted(by_class.items())
                    if factor > 1.0]
        lines.append(f"repeat-factor sampling (threshold {threshold:g}): {round(factors.sum())} draws an epoch "
                     f"from {len(samples)} images; " + (", ".join(repeated) or "no class is below the threshold"))
    return lines
