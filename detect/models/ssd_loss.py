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

from detect.iou import box_iou
from detect.models.boxes import encode, pad_ground_truth, variance_weights
from detect.models.matcher import POSITIVE, claim_best_references, match


def match_default_boxes(
    priors: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor, iou_thresh: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign ground truth to default boxes (see the module docstring).

    priors [A, 4] xyxy pixels; gt_boxes [B, G, 4]; gt_valid [B, G].
    Returns matched_gt [B, A] (index into G of each box's ground truth) and positive [B, A] bool.
    """
    iou = box_iou(priors.unsqueeze(0), gt_boxes)  # [B, A, G]
    matched_gt, labels = match(iou, gt_valid, iou_thresh, iou_thresh)
    matched_gt, labels = claim_best_references(iou, gt_valid, matched_gt, labels)
    return matched_gt, labels == POSITIVE


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
    priors [A, 4] xyxy in the input's pixels; targets: B dicts {boxes [N, 4] pixels, labels [N]}. The
    losses are computed in the priors' dtype (float32, also for bf16 head outputs under autocast).
    Returns {"loss_cls": tensor, "loss_box": tensor}, both divided by the number of positives.
    """

    def __init__(
        self,
        variances: tuple[float, float] = (0.1, 0.2),
        iou_thresh: float = 0.5,
        neg_pos_ratio: float = 3.0,
        empty_image_negatives: int = 24,
        focal: tuple[float, float] | None = None,
    ):
        """`focal`: (gamma, alpha) for the focal loss over every default box instead of hard negatives."""
        super().__init__()
        self.variances = tuple(variances)
        self.iou_thresh = iou_thresh
        self.neg_pos_ratio = neg_pos_ratio
        self.empty_image_negatives = empty_image_negatives
        self.focal = focal
        # float [C + 1] per-class weights of the classification loss (train.class_weights), or None.
        # Not state: a run sets them from its data at the start (and again on resume).
        self.class_weights: torch.Tensor | None = None

    def forward(
        self, cls_logits: torch.Tensor, box_regression: torch.Tensor, priors: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        gt_boxes, gt_labels, gt_valid = pad_ground_truth(targets, cls_logits.device)
        matched_gt, positive = match_default_boxes(priors, gt_boxes, gt_valid, self.iou_thresh)

        labels = torch.gather(gt_labels, 1, matched_gt).masked_fill(~positive, 0)  # [B, A]
        matched_boxes = torch.gather(gt_boxes, 1, matched_gt.unsqueeze(-1).expand(-1, -1, 4))
        box_targets = encode(matched_boxes, priors.unsqueeze(0), variance_weights(self.variances))
        box_loss = F.smooth_l1_loss(box_regression.to(priors.dtype), box_targets, reduction="none").sum(-1)

        logits = cls_logits.to(priors.dtype).flatten(0, 1)
        weights = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
        cls_loss = F.cross_entropy(logits, labels.flatten(), weight=weights, reduction="none").view_as(labels)  # [B, A]
        num_positive = positive.sum(dim=1)
        normalizer = num_positive.sum().clamp(min=1).to(cls_loss.dtype)
        if self.focal is not None:
            counted = focal_loss(logits, labels.flatten(), cls_loss.flatten(), *self.focal).sum()
        else:
            num_negatives = self.negatives_per_image(num_positive, gt_valid.any(dim=1), positive.shape[1])
            negative = hard_negative_mask(cls_loss, positive, num_negatives)
            counted = (cls_loss * (positive | negative)).sum()
        return {"loss_cls": counted / normalizer, "loss_box": (box_loss * positive).sum() / normalizer}

    def negatives_per_image(self, num_positive: torch.Tensor, has_objects: torch.Tensor, num_priors: int):
        """neg_pos_ratio x positives; `empty_image_negatives` for an image without ground truth."""
        ratio_count = torch.floor(num_positive * self.neg_pos_ratio).long()
        count = torch.where(has_objects, ratio_count, torch.full_like(ratio_count, self.empty_image_negatives))
        return torch.minimum(count, num_priors - num_positive)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, cross_entropy: torch.Tensor, gamma: float,
               alpha: float) -> torch.Tensor:
    """The softmax form of the focal loss (Lin et al., 2017): alpha_t (1 - p_t)^gamma CE, p_t the
    probability of the true class, alpha_t `alpha` for foreground and 1 - alpha for background.

    logits [N, C + 1], labels [N] (0 background), cross_entropy [N] (possibly class-weighted) -> [N]."""
    p_true = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    alpha_t = torch.where(labels > 0, alpha, 1.0 - alpha).to(logits.dtype)
    return alpha_t * (1.0 - p_true).pow(gamma) * cross_entropy
