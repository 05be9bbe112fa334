"""Any torchvision detection model (FasterRCNN, SSD, RetinaNet, FCOS, ...) behind our model contract
(detect/models/__init__.py), so the training engine, evaluation and the benchmark table run it as
they run ours.

Same pixels for both: our data pipeline resizes and normalizes, so torchvision's own input transform
(GeneralizedRCNNTransform) must do neither; `switch_off_transform` is the one place that makes it so.
It still batches the images it is given and maps boxes back, at a scale of 1. Its detections are in
the pixels of the tensors it is handed (resized pixels); `postprocess` divides them by `scale`, as
ours does, and pads its per-image lists into our padded detections (`pad_detections`).

Normalization: a model built with our settings (benchmarks.peers) takes our normalized batches as
they are. A model whose weights expect its own mean and std (a torchvision builder by name, see
benchmarks.zoo) gets `input_mean` / `input_std`: the adapter turns our normalization into its own.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

# torchvision's loss names -> ours; any other is prefixed with "loss_" (the contract's loss dict).
LOSS_NAMES = {"loss_objectness": "loss_rpn_objectness", "loss_rpn_box_reg": "loss_rpn_box",
              "loss_classifier": "loss_classifier", "loss_box_reg": "loss_box_reg",
              "bbox_regression": "loss_box", "classification": "loss_cls"}


def _same_size(image: torch.Tensor, target: dict | None = None):
    return image, target


def _unchanged(image: torch.Tensor) -> torch.Tensor:
    return image


def switch_off_transform(model: nn.Module) -> nn.Module:
    """Make a torchvision detection model's GeneralizedRCNNTransform neither resize nor normalize (in
    place): instance attributes shadow its methods."""
    model.transform.resize = _same_size
    model.transform.normalize = _unchanged
    return model


def _loss_name(name: str) -> str:
    return LOSS_NAMES.get(name, name if name.startswith("loss_") else f"loss_{name}")


class TorchvisionAdapter(nn.Module):
    """A torchvision detection model behind our contract (see the module docstring).

    forward(images [B, 3, H, W] normalized, image_sizes [B, 2], targets=None): each image is cut to its
    valid region and handed over as a list; with targets, its losses under our `loss_*` names (in train
    mode, where torchvision computes them, so a validation loss works too); without, {"detections":
    its per-image list of {boxes, scores, labels} in resized pixels}.
    postprocess(outputs, image_sizes [B, 2], scales [B, 2]) -> padded {boxes [B, D, 4], scores [B, D],
    labels [B, D], num [B]} in original pixels.
    """

    def __init__(self, model: nn.Module, num_classes: int, input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None):
        super().__init__()
        self.model = switch_off_transform(model)
        self.num_classes = num_classes
        self.renormalize = input_mean is not None
        if self.renormalize:  # ours -> 0..1 pixels -> the model's own normalization, in one affine map
            ours_mean, ours_std = _channels(input_mean), _channels(input_std)
            own_mean, own_std = _channels(model.transform.image_mean), _channels(model.transform.image_std)
            self.register_buffer("gain", ours_std / own_std, persistent=False)
            self.register_buffer("offset", (ours_mean - own_mean) / own_std, persistent=False)

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, targets: list[dict] | None = None):
        if self.renormalize:
            images = images * self.gain + self.offset
        crops = [image[:, :h, :w] for image, (h, w) in zip(images, image_sizes.tolist())]
        was_training = self.model.training
        try:
            if targets is None:
                self.model.eval()  # torchvision's train mode insists on targets
                return {"detections": self.model(crops)}
            self.model.train()
            plain = [{"boxes": t["boxes"].to(images.device), "labels": t["labels"].to(images.device)}
                     for t in targets]
            return {_loss_name(name): value for name, value in self.model(crops, plain).items()}
        finally:
            self.model.train(was_training)

    @torch.no_grad()
    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        results = []
        for found, (sx, sy) in zip(outputs["detections"], scales.tolist()):  # already per image: a list
            boxes = found["boxes"] / found["boxes"].new_tensor([sx, sy, sx, sy])
            results.append({"boxes": boxes, "scores": found["scores"], "labels": found["labels"]})
        return pad_detections(results)


def _channels(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(1, 3, 1, 1)


def pad_detections(per_image: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """B dicts {boxes [K_i, 4], scores [K_i], labels [K_i]} (best first), as torchvision's detectors
    return them -> the padded detections of our contract (detect/detections/padded.py), D = max K_i."""
    device = per_image[0]["scores"].device if per_image else torch.device("cpu")
    counts = torch.tensor([len(found["scores"]) for found in per_image], dtype=torch.int64, device=device)
    return {
        "boxes": pad_sequence([found["boxes"].reshape(-1, 4) for found in per_image], batch_first=True),
        "scores": pad_sequence([found["scores"] for found in per_image], batch_first=True),
        "labels": pad_sequence([found["labels"].long() for found in per_image], batch_first=True),
        "num": counts,
    }
