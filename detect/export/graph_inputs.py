"""Inputs as an exported graph sees them (detect/export/onnx.py): a dataset's images through the eval
pipeline of the model's config (the loader's resize and collate, then normalization on the host),
zero-padded to the graph's fixed H x W. INT8 calibration and its report use them.

    for images, image_sizes, scales in graph_batches(raw_dataset, data_config, model_config, 8, graph): ...
        images float32 [B, 3, H, W], image_sizes int64 [B, 2] (h, w after resize), scales float32 [B, 2]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def graph_batches(raw_dataset, data_config, model_config, batch_size: int, graph):
    """(images float32 [B, 3, H, W] normalized and zero-padded to the graph's H x W, image_sizes, scales)
    of `raw_dataset` through the eval pipeline of the model's config, as the graph sees them."""
    from detect.data.loader import build_dataloader
    from detect.data.normalize import batch_to_device

    loader = build_dataloader(data_config.data.model_copy(update={"num_workers": 0}), model_config.input,
                              model_config.augment, data_config.data.train_split, train=False,
                              batch_size=batch_size, raw_dataset=raw_dataset)
    for images, targets in loader:
        batch, image_sizes, scales = batch_to_device(images, targets, torch.device("cpu"), model_config.input.mean,
                                                     model_config.input.std)
        yield F.pad(batch, (0, graph.width - batch.shape[3], 0, graph.height - batch.shape[2])), image_sizes, scales
