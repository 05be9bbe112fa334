"""The eval preprocessing every model's inputs come from, PyTorch and exported graphs alike: images
(HxWx3 uint8 RGB) through the eval transforms of the model's config, then collated and normalized. This
is what `detect eval` feeds, what `Detector` feeds, and what an exported graph takes (graph.py's inputs).

    transform = eval_transform(config)
    sample = prepared(image, transform)          (image [3, h, w] uint8 or float32 as input.normalize_on
                                                  says, target {image_size, scale, ...})
    images, image_sizes, scales = graph_inputs(samples, config.input)
        images float32 [B, 3, H, W] normalized, zero-padded to multiples of input.size_divisible;
        image_sizes int64 [B, 2] (h, w) after resize; scales float32 [B, 2] (sx, sy); on the host
"""

from __future__ import annotations

import numpy as np
import torch


def eval_transform(config):
    """The eval pipeline (resize, normalization where the config puts it) of `config`."""
    from detect.data.transforms import build_transforms

    return build_transforms(config.input, config.augment, train=False)


def prepared(image: np.ndarray, transform) -> tuple[torch.Tensor, dict]:
    """One HxWx3 uint8 RGB array through `transform` (eval_transform), with a target of no objects."""
    height, width = image.shape[:2]
    no_objects = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                  "difficult": np.zeros(0, bool), "iscrowd": np.zeros(0, bool), "image_id": None,
                  "orig_size": (height, width)}
    return transform(image, no_objects)


def collated(samples: list, input_cfg) -> tuple[torch.Tensor, list[dict]]:
    """Prepared samples -> (images [B, 3, H, W] zero-padded to input.size_divisible, targets)."""
    from detect.data.loader import collate

    return collate(samples, input_cfg.size_divisible)


def graph_inputs(samples: list, input_cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prepared samples -> (images, image_sizes, scales) as the module docstring says, normalized whatever
    input.normalize_on says."""
    from detect.data.normalize import batch_to_device

    batch, targets = collated(samples, input_cfg)
    return batch_to_device(batch, targets, torch.device("cpu"), input_cfg.mean, input_cfg.std)
