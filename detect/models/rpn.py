"""Region proposal network (Ren et al., 2015), batched over images.

    rpn(features [B, C, Hf, Wf], image_sizes int64 [B, 2] (h, w), gt_boxes [B, G, 4], gt_valid [B, G])
        -> proposals float32 [B, P, 4] (detached, image pixels), proposal_valid bool [B, P],
           losses {"loss_rpn_objectness", "loss_rpn_box"} (empty without ground truth)

P = min(post_nms_top_n, pre_nms_top_n, anchors); an image with fewer surviving proposals has invalid
slots at the end of its list (sorted by objectness).

Feature pyramids (FPN): `features` is a list of maps [B, C, Hl, Wl], one per level, and the anchor
generator a pyramid one. The head is shared by the levels; `pre_nms_top_n` is then per level and NMS
runs within each level (torchvision's `fasterrcnn_resnet50_fpn`), before the best `post_nms_top_n` of
all levels are kept.

`score_threshold` (torchvision's `rpn_score_thresh`) drops candidates whose objectness probability is below
it before NMS; 0 keeps them all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detect.iou import box_iou
from detect.models.anchors import AnchorGenerator
from detect.models.boxes import clip_boxes, decode, encode
from detect.models.matcher import POSITIVE, match, sample_balanced
from detect.models.nms import nms_per_image


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then per anchor one objectness logit and four box deltas."""

    def __init__(self, in_channels: int, conv_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        self.objectness = nn.Conv2d(conv_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(conv_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, C, Hf, Wf] -> objectness [B, Hf*Wf*A], deltas [B, Hf*Wf*A, 4] (anchor order)."""
        hidden = F.relu(self.conv(features))
        batch = features.shape[0]
        objectness = self.objectness(hidden).permute(0, 2, 3, 1).reshape(batch, -1)
        deltas = self.deltas(hidden).permute(0, 2, 3, 1).reshape(batch, -1, 4)
        return objectness, deltas


class RegionProposalNetwork(nn.Module):
    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: tuple[int, int] = (12000, 6000),  # (train, test)
        post_nms_top_n: tuple[int, int] = (2000, 300),
        nms_thresh: float = 0.7,
        min_box_size: float = 1.0,
        loss_box_weight: float = 1.0,
        score_threshold: float = 0.0,
    ):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.min_box_size = min_box_size
        self.loss_box_weight = loss_box_weight
        self.score_threshold = score_threshold

    def forward(
        self,
        features: torch.Tensor,
        image_sizes: torch.Tensor,
        gt_boxes: torch.Tensor | None = None,
        gt_valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        maps = list(features) if isinstance(features, (list, tuple)) else [features]
        outputs = [self.head(feature_map) for feature_map in maps]
        objectness = torch.cat([level_objectness for level_objectness, _ in outputs], dim=1)
        deltas = torch.cat([level_deltas for _, level_deltas in outputs], dim=1)
        anchors, level_counts, max_coordinate = self.anchors(maps)
        mode = 0 if self.training else 1
        proposals, proposal_valid = select_proposals(
            anchors, objectness.detach().float(), deltas.detach().float(), image_sizes,
            self.pre_nms_top_n[mode], self.post_nms_top_n[mode], self.nms_thresh, self.min_box_size, max_coordinate,
            level_counts, self.score_threshold,
        )
        losses: dict[str, torch.Tensor] = {}
        if gt_boxes is not None:
            matched, labels = self.match_anchors(anchors, gt_boxes, gt_valid)
            sampled, sampled_valid = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction)
            losses = rpn_losses(objectness, deltas, anchors, gt_boxes, matched, labels, sampled, sampled_valid)
            losses["loss_rpn_box"] = losses["loss_rpn_box"] * self.loss_box_weight
        return proposals, proposal_valid, losses

    def anchors(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[int], float]:
        """Anchors [N, 4] of all levels, the anchor count of each level, and the padded image's longer side."""
        generator = self.anchor_generator
        shapes = [tuple(feature_map.shape[-2:]) for feature_map in maps]
        if generator.is_pyramid:
            anchors = generator.pyramid(shapes, maps[0].device)
            stride = generator.stride[0]
        else:
            anchors = generator(shapes[0][0], shapes[0][1], maps[0].device)
            stride = generator.stride
        level_counts = [h * w * generator.num_anchors for h, w in shapes]
        return anchors, level_counts, float(max(shapes[0]) * stride)

    def match_anchors(self, anchors, gt_boxes, gt_valid):
        """anchors [N, 4], gt [B, G, 4] -> matched gt index [B, N], labels [B, N] (1 / 0 / -1)."""
        iou = box_iou(anchors[None], gt_boxes)
        return match(iou, gt_valid, self.fg_iou_thresh, self.bg_iou_thresh, 0.0, best_match_positive=True)


def select_proposals(
    anchors: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    image_sizes: torch.Tensor,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_thresh: float,
    min_box_size: float,
    max_coordinate: float,
    level_counts: list[int] | None = None,
    score_threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by objectness, decode, clip, drop tiny boxes, NMS, top-k again: all images at once.

    anchors [N, 4], objectness [B, N], deltas [B, N, 4] -> proposals [B, P, 4], valid [B, P].
    `level_counts`: anchors per pyramid level (in order, summing to N); the first top-k and NMS are
    then per level. None: one level. `score_threshold`: the lowest objectness probability kept.
    """
    level_counts = level_counts or [objectness.shape[1]]
    top_index, levels = top_k_per_level(objectness, level_counts, pre_nms_top_n)
    top_scores = objectness.gather(1, top_index)
    top_deltas = deltas.gather(1, top_index[..., None].expand(-1, -1, 4))
    boxes = decode(top_deltas, anchors[top_index])
    boxes = clip_boxes(boxes, image_sizes[:, 0], image_sizes[:, 1])
    sizes = boxes[..., 2:] - boxes[..., :2]
    valid = (sizes >= min_box_size).all(dim=-1) & torch.isfinite(top_scores)
    if score_threshold > 0:  # not in place: ONNX export has no in-place `and`
        valid = valid & (torch.sigmoid(top_scores) >= score_threshold)
    kept = nms_per_image(boxes, top_scores, valid, nms_thresh, max_coordinate, groups=levels)
    scores = top_scores.masked_fill(~kept, float("-inf"))
    best_scores, best = scores.topk(min(post_nms_top_n, scores.shape[1]), dim=1)
    proposals = boxes.gather(1, best[..., None].expand(-1, -1, 4))
    return proposals, torch.isfinite(best_scores)


def top_k_per_level(
    objectness: torch.Tensor, level_counts: list[int], k: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The indices [B, K] of each level's top-k anchors by objectness (K = sum of min(k, level count)),
    and their level [K] (None for a single level)."""
    if len(level_counts) == 1:
        return objectness.topk(min(k, objectness.shape[1]), dim=1).indices, None
    indices, levels, start = [], [], 0
    for level, count in enumerate(level_counts):
        top = objectness[:, start:start + count].topk(min(k, count), dim=1).indices
        indices.append(top + start)
        levels.append(torch.full((top.shape[1],), level, dtype=torch.int64, device=objectness.device))
        start += count
    return torch.cat(indices, dim=1), torch.cat(levels)


def rpn_losses(
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    matched: torch.Tensor,
    labels: torch.Tensor,
    sampled: torch.Tensor,
    sampled_valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Objectness BCE and smooth-L1 box loss over the sampled anchors, both divided by the number of
    sampled anchors in the batch (so every sampled anchor weighs the same, whatever its image).

    objectness [B, N], deltas [B, N, 4], anchors [N, 4], gt_boxes [B, G, 4], matched / labels [B, N],
    sampled / sampled_valid [B, S].
    """
    is_positive = (labels.gather(1, sampled) == POSITIVE) & sampled_valid
    count = sampled_valid.sum().clamp(min=1)
    logits = objectness.gather(1, sampled)
    bce = F.binary_cross_entropy_with_logits(logits, is_positive.to(logits.dtype), reduction="none")
    loss_objectness = (bce * sampled_valid).sum() / count

    gt_index = matched.gather(1, sampled)
    sampled_gt = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
    targets = encode(sampled_gt, anchors[sampled])
    targets = torch.where(is_positive[..., None], targets, torch.zeros_like(targets))  # no NaN leaks
    predicted = deltas.gather(1, sampled[..., None].expand(-1, -1, 4))
    box = F.smooth_l1_loss(predicted, targets, beta=1.0 / 9, reduction="none").sum(dim=-1)
    loss_box = (box * is_positive).sum() / count
    return {"loss_rpn_objectness": loss_objectness, "loss_rpn_box": loss_box}
