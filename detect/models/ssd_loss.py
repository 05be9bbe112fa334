"""SSD's matching and multibox loss (Liu et al., 2016, section 2.2), for the whole batch at once.

Matching: every ground-truth box first takes the default box it overlaps most (so each object has at
least one positive), then every default box whose best IoU with a ground truth is >= `iou_thresh`
takes that ground truth. The rest are background.

Loss = (smooth L1 over positives' encoded offsets + cross-entropy over positives and mined negatives)
/ number of positives in the batch. Hard negative mining keeps, per image, the `neg_pos_ratio` x
positives background boxes with the highest classification loss. An image without ground truth has
no positives; it mines `empty_image_negatives` negatives (24 by default: as many as an image with 8
positives at 3:1), so images of pure background still teach the classifier. With no positives in the
whole batch the sum is divided by 1.

Everything is one set of tensor operations over [B, A] (A default boxes): ground truth is padded to
the batch's largest count with a validity mask. There is no loop over images and no host sync.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import box_iou

from detect.models.default_boxes import encode_boxes


def pad_ground_truth(targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """targets (B dicts with boxes [N_i, 4], labels [N_i]) -> boxes [B, G, 4], labels [B, G], valid [B, G].

    G = max N_i (at least 1, so that shapes stay non-empty); padded entries have valid False.
    """
    boxes = pad_sequence([t["boxes"].reshape(-1, 4).float() for t in targets], batch_first=True)
    # Labels are padded with -1, which marks the padding; copies only, so no host sync.
    labels = pad_sequence([t["labels"].reshape(-1).long() for t in targets], batch_first=True, padding_value=-1)
    if labels.shape[1] == 0:  # no ground truth anywhere in the batch
        boxes, labels = F.pad(boxes, (0, 0, 0, 1)), F.pad(labels, (0, 1), value=-1)
    valid = labels >= 0
    return boxes, labels.clamp(min=0), valid


def match_default_boxes(
    priors: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor, iou_thresh: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign ground truth to default boxes.

    priors [A, 4] xyxy pixels; gt_boxes [B, G, 4]; gt_valid [B, G].
    Returns matched_gt [B, A] (index into G of each box's ground truth) and positive [B, A] bool.
    """
    batch, num_gt = gt_valid.shape
    num_priors = priors.shape[0]
    iou = box_iou(gt_boxes.reshape(-1, 4), priors).reshape(batch, num_gt, num_priors)
    iou = iou.masked_fill(~gt_valid.unsqueeze(-1), -1.0)  # padding never matches

    best_iou, matched_gt = iou.max(dim=1)  # [B, A]: each default box's best ground truth
    # Each ground truth claims its best default box, whatever the IoU. Padding writes into a spare
    # column A that is dropped, which keeps the scatter free of masks with data-dependent sizes.
    best_prior = iou.argmax(dim=2).masked_fill(~gt_valid, num_priors)  # [B, G]
    gt_index = torch.arange(num_gt, device=priors.device).expand(batch, -1)
    spare = torch.zeros(batch, 1, dtype=matched_gt.dtype, device=priors.device)
    matched_gt = torch.cat([matched_gt, spare], dim=1).scatter(1, best_prior, gt_index)[:, :num_priors]
    forced = torch.zeros(batch, num_priors + 1, dtype=torch.bool, device=priors.device)
    forced = forced.scatter(1, best_prior, True)[:, :num_priors]
    positive = forced | (best_iou >= iou_thresh)
    return matched_gt, positive


def hard_negative_mask(
    background_loss: torch.Tensor, positive: torch.Tensor, num_negatives: torch.Tensor
) -> torch.Tensor:
    """The negatives to train on: per image, the `num_negatives` non-positive boxes of highest loss.

    background_loss [B, A] (classification loss of each box); positive [B, A]; num_negatives [B] int.
    Returns a bool mask [B, A]. Ranks come from a sort, so the count needs no host sync.
    """
    candidate_loss = background_loss.detach().masked_fill(positive, float("-inf"))
    order = candidate_loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    return (rank < num_negatives.unsqueeze(1)) & ~positive


class MultiBoxLoss(nn.Module):
    """The SSD training loss: forward(cls_logits, box_regression, priors, targets) -> loss dict.

    cls_logits [B, A, C + 1] (index 0 background); box_regression [B, A, 4] encoded offsets;
    priors [A, 4] xyxy in the input's pixels; targets: B dicts {boxes [N, 4] pixels, labels [N]}.
    Returns {"loss_cls": tensor, "loss_box": tensor}, both divided by the number of positives.
    """

    def __init__(
        self,
        variances: tuple[float, float] = (0.1, 0.2),
        iou_thresh: float = 0.5,
        neg_pos_ratio: float = 3.0,
        empty_image_negatives: int = 24,
    ):
        super().__init__()
        self.variances = tuple(variances)
        self.iou_thresh = iou_thresh
        self.neg_pos_ratio = neg_pos_ratio
        self.empty_image_negatives = empty_image_negatives

    def forward(
        self, cls_logits: torch.Tensor, box_regression: torch.Tensor, priors: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets)
        matched_gt, positive = match_default_boxes(priors, gt_boxes, gt_valid, self.iou_thresh)

        labels = torch.gather(gt_labels, 1, matched_gt).masked_fill(~positive, 0)  # [B, A]
        matched_boxes = torch.gather(gt_boxes, 1, matched_gt.unsqueeze(-1).expand(-1, -1, 4))
        box_targets = encode_boxes(matched_boxes, priors.unsqueeze(0), self.variances)
        box_loss = F.smooth_l1_loss(box_regression.float(), box_targets, reduction="none").sum(-1)

        cls_loss = F.cross_entropy(
            cls_logits.float().flatten(0, 1), labels.flatten(), reduction="none"
        ).view_as(labels)  # [B, A]
        num_positive = positive.sum(dim=1)
        num_negatives = self.negatives_per_image(num_positive, gt_valid.any(dim=1), positive.shape[1])
        negative = hard_negative_mask(cls_loss, positive, num_negatives)

        normaliser = num_positive.sum().clamp(min=1).to(cls_loss.dtype)
        return {
            "loss_cls": (cls_loss * (positive | negative)).sum() / normaliser,
            "loss_box": (box_loss * positive).sum() / normaliser,
        }

    def negatives_per_image(self, num_positive: torch.Tensor, has_objects: torch.Tensor, num_priors: int):
        """neg_pos_ratio x positives; `empty_image_negatives` for an image without ground truth."""
        ratio_count = torch.floor(num_positive * self.neg_pos_ratio).long()
        count = torch.where(has_objects, ratio_count, torch.full_like(ratio_count, self.empty_image_negatives))
        return torch.minimum(count, num_priors - num_positive)
