"""Fast R-CNN heads on the RPN's proposals (Girshick, 2015), batched over images.

Training:  roi_heads(features [B, C, Hf, Wf], proposals [B, P, 4], proposal_valid [B, P],
                     gt_boxes [B, G, 4], gt_labels [B, G], gt_valid [B, G])
           -> {"loss_classifier", "loss_box_reg"}
Inference: roi_heads(features, proposals, proposal_valid)
           -> {"rois" [B, P, 4], "roi_valid" [B, P], "class_logits" [B, P, C+1], "box_deltas" [B, P, C, 4]}
           roi_heads.postprocess(outputs, image_sizes, scales) -> padded detections (detections/padded.py)

Class 0 is background; box regression is class-specific for the C foreground classes.

Feature pyramids (FPN): `features` is a list of maps and `stride` a tuple with one stride per map RoIs
pool from (extra maps at the end of the list, such as an RPN-only max-pool level, are not used); each
RoI is pooled with RoIAlign from the level the FPN paper's equation (1) assigns it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_pool

from detect.detections.padded import padded_detections, to_original_pixels
from detect.iou import box_iou
from detect.models.boxes import clip_boxes, decode, encode
from detect.models.matcher import POSITIVE, match, sample_balanced
from detect.models.nms import batched_nms_by_offset
from detect.models.roi_align import roi_align_batched
from detect.models.tracing import is_exporting


def pool_rois(
    features: torch.Tensor, rois: torch.Tensor, method: str, output_size: int, stride: int, sampling_ratio: int = 2
) -> torch.Tensor:
    """features [B, C, Hf, Wf], rois [B, R, 4] image pixels -> [B * R, C, s, s] (image-major order)."""
    if features.dtype != rois.dtype:  # bf16 coordinates would be off by pixels: pool in float32
        features = features.to(rois.dtype)
    if method == "roi_align":
        return roi_align_batched(features, rois, output_size, stride, sampling_ratio)
    if method == "roi_pool":
        batch, count = rois.shape[:2]
        image_index = torch.arange(batch, device=rois.device, dtype=rois.dtype).repeat_interleave(count)
        indexed = torch.cat([image_index[:, None], rois.reshape(-1, 4)], dim=1)
        return roi_pool(features, indexed, output_size, spatial_scale=1.0 / stride)
    raise ValueError(f"unknown RoI pooling {method!r} (roi_pool or roi_align)")


def pyramid_levels(rois: torch.Tensor, strides: tuple[int, ...], canonical_size: float = 224.0,
                   canonical_level: int = 4) -> torch.Tensor:
    """The pyramid level (index into `strides`) of each RoI [R, 4]: floor(k0 + log2(sqrt(area) / 224)),
    clamped to the levels there are (Lin et al., 2017, eq. 1; k is the level of stride 2^k)."""
    k_min, k_max = round(math.log2(strides[0])), round(math.log2(strides[-1]))
    sides = ((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])).sqrt()
    # The small epsilon keeps a RoI of exactly 224 x 2^n pixels on its level despite log2's rounding.
    levels = torch.floor(canonical_level + torch.log2(sides / canonical_size) + 1e-6)
    return levels.clamp(min=k_min, max=k_max).to(torch.int64) - k_min


def pool_rois_pyramid(
    features: list[torch.Tensor], rois: torch.Tensor, output_size: int, strides: tuple[int, ...],
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """RoIAlign from each RoI's pyramid level: features [B, C, Hl, Wl] per level, rois [B, R, 4] image
    pixels -> [B * R, C, s, s] (image-major order)."""
    levels = pyramid_levels(rois.reshape(-1, 4), strides).reshape(rois.shape[:2])
    maps = [feature_map.to(rois.dtype) for feature_map in features[:len(strides)]]
    return roi_align_batched(maps, rois, output_size, strides, sampling_ratio, levels)


def valid_slots_only(valid: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`tensors` [B, S, ...] cut to their first S' slots, S' the most valid slots an image has (at least
    one); valid [B, S] has each image's valid slots first (proposals by score, samples as drawn).

    The head's cost is per slot, and an image often has fewer valid RoIs than slots (VGG16 at 320 x 320:
    about 410 of 512 samples): torchvision's per-image lists run the head on the valid ones only, so we
    do not run it on empty slots either. On the CPU only, where the count costs nothing: elsewhere it
    would be a host sync, and tracing (ONNX export) would freeze it; there the shapes stay fixed.
    """
    if valid.device.type != "cpu" or is_exporting():
        return tensors
    count = max(int(valid.sum(dim=1).max()), 1)
    return tuple(tensor[:, :count] for tensor in tensors)


class RoIHeads(nn.Module):
    def __init__(
        self,
        box_head: nn.Module,
        head_out_channels: int,
        num_classes: int,
        pool: str = "roi_pool",
        output_size: int = 7,
        stride: int | tuple[int, ...] = 16,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh_hi: float = 0.5,
        bg_iou_thresh_lo: float = 0.0,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_threshold: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        loss_box_weight: float = 1.0,
    ):
        super().__init__()
        self.box_head = box_head
        self.num_classes = num_classes
        self.cls_score = nn.Linear(head_out_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(head_out_channels, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.pool = pool
        self.output_size = output_size
        self.stride = tuple(stride) if isinstance(stride, (tuple, list)) else stride
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh_hi = bg_iou_thresh_hi
        self.bg_iou_thresh_lo = bg_iou_thresh_lo
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.box_weights = tuple(box_weights)
        # float [C + 1] weights of the classification loss (train.class_weights) or None; not state.
        self.class_weights: torch.Tensor | None = None
        self.score_threshold = score_threshold
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.loss_box_weight = loss_box_weight

    def predict(self, features: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rois [B, R, 4] -> class_logits [B, R, C+1], box_deltas [B, R, C, 4]."""
        batch, count = rois.shape[:2]
        if isinstance(self.stride, tuple):
            levels = len(self.stride)
            pooled = pool_rois_pyramid(features[:levels], rois, self.output_size, self.stride)
        else:
            pooled = pool_rois(features, rois, self.pool, self.output_size, self.stride)
        hidden = self.box_head(pooled)
        class_logits = self.cls_score(hidden).reshape(batch, count, -1)
        box_deltas = self.bbox_pred(hidden).reshape(batch, count, self.num_classes, 4)
        return class_logits, box_deltas

    def forward(self, features, proposals, proposal_valid, gt_boxes=None, gt_labels=None, gt_valid=None):
        if gt_boxes is None:
            proposals, proposal_valid = valid_slots_only(proposal_valid, proposals, proposal_valid)
            class_logits, box_deltas = self.predict(features, proposals)
            return {
                "rois": proposals, "roi_valid": proposal_valid, "class_logits": class_logits, "box_deltas": box_deltas}
        samples = self.select_training_samples(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid)
        rois, roi_valid, roi_labels, roi_targets = valid_slots_only(samples[1], *samples)
        class_logits, box_deltas = self.predict(features, rois)
        losses = fast_rcnn_losses(class_logits, box_deltas, roi_valid, roi_labels, roi_targets,
                                  self.class_weights)
        losses["loss_box_reg"] = losses["loss_box_reg"] * self.loss_box_weight
        return losses

    def select_training_samples(self, proposals, proposal_valid, gt_boxes, gt_labels, gt_valid):
        """Add the ground truth to the proposals, match, sample. Returns rois [B, S, 4], roi_valid [B, S],
        roi_labels int64 [B, S] (0 background), roi_targets [B, S, 4] (encoded, 0 where not foreground)."""
        candidates = torch.cat([proposals, gt_boxes], dim=1)
        candidate_valid = torch.cat([proposal_valid, gt_valid], dim=1)
        iou = box_iou(candidates, gt_boxes)
        matched, labels = match(iou, gt_valid, self.fg_iou_thresh, self.bg_iou_thresh_hi, self.bg_iou_thresh_lo)
        labels = labels.masked_fill(~candidate_valid, -1)
        sampled, roi_valid = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction)
        return sample_targets(candidates, labels, matched, gt_boxes, gt_labels, sampled, roi_valid, self.box_weights)

    def postprocess(self, outputs: dict, image_sizes: torch.Tensor, scales: torch.Tensor) -> dict:
        return postprocess_detections(
            outputs, image_sizes, scales, self.box_weights, self.score_threshold, self.nms_thresh,
            self.detections_per_img)


def sample_targets(candidates, labels, matched, gt_boxes, gt_labels, sampled, roi_valid, box_weights):
    """Gather the sampled RoIs with their class labels and encoded regression targets."""
    rois = candidates.gather(1, sampled[..., None].expand(-1, -1, 4))
    is_positive = (labels.gather(1, sampled) == POSITIVE) & roi_valid
    gt_index = matched.gather(1, sampled)
    roi_labels = torch.where(is_positive, gt_labels.gather(1, gt_index), torch.zeros_like(gt_index))
    targets = encode(gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4)), rois, box_weights)
    roi_targets = torch.where(is_positive[..., None], targets, torch.zeros_like(targets))
    return rois, roi_valid, roi_labels, roi_targets


def fast_rcnn_losses(class_logits, box_deltas, roi_valid, roi_labels, roi_targets,
                     class_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy over the sampled RoIs, smooth L1 on the true class's deltas of the foreground ones;
    both divided by the number of sampled RoIs in the batch.

    class_logits [B, S, C+1], box_deltas [B, S, C, 4], roi_valid [B, S], roi_labels [B, S], roi_targets [B, S, 4];
    class_weights [C+1] weigh each RoI's cross-entropy by its true class (None: all 1).
    """
    count = roi_valid.sum().clamp(min=1)
    logits = class_logits.flatten(0, 1)
    weights = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
    ce = F.cross_entropy(logits, roi_labels.flatten(), weight=weights, reduction="none")
    loss_classifier = (ce * roi_valid.flatten()).sum() / count
    is_foreground = (roi_labels > 0) & roi_valid
    class_index = (roi_labels - 1).clamp(min=0)
    predicted = box_deltas.gather(2, class_index[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
    box = F.smooth_l1_loss(predicted, roi_targets, beta=1.0, reduction="none").sum(dim=-1)
    loss_box_reg = (box * is_foreground).sum() / count
    return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def postprocess_detections(
    outputs: dict,
    image_sizes: torch.Tensor,
    scales: torch.Tensor,
    box_weights,
    score_threshold: float,
    nms_thresh: float,
    detections_per_img: int,
) -> dict[str, torch.Tensor]:
    """Decode per class, clip, threshold, class-wise NMS and top-k for the whole batch: the padded
    detections (detect/detections/padded.py), boxes in original image pixels (resized / scale,
    clipped to the original size). D = min(detections_per_img, R x C).

    Written so that tracing keeps it (ONNX export traces this very function): the NMS offset comes
    from `image_sizes` as a tensor, and the candidates' count (the one host sync) stays in the graph.
    """
    rois, roi_valid = outputs["rois"], outputs["roi_valid"]
    class_logits, box_deltas = outputs["class_logits"].float(), outputs["box_deltas"].float()
    batch, count, num_classes = box_deltas.shape[:3]
    scores = F.softmax(class_logits, dim=-1)[..., 1:]  # [B, R, C]
    boxes = decode(box_deltas, rois[:, :, None, :].float(), box_weights)  # [B, R, C, 4]
    boxes = clip_boxes(boxes, image_sizes[:, 0], image_sizes[:, 1])
    sizes = boxes[..., 2:] - boxes[..., :2]
    candidate = roi_valid[..., None] & (scores > score_threshold) & (sizes >= 1e-2).all(dim=-1)

    flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)
    groups = torch.arange(batch * count * num_classes, device=rois.device)
    groups = (groups // (count * num_classes)) * num_classes + groups % num_classes  # image * C + class
    index = candidate.reshape(-1).nonzero().squeeze(1)  # the one sync: NMS needs the candidates' count anyway
    max_coordinate = image_sizes.max().to(flat_boxes.dtype)  # every clipped box lies within it
    keep = index[batched_nms_by_offset(flat_boxes[index], flat_scores[index], groups[index], nms_thresh,
                                       max_coordinate)]
    kept_scores = torch.full_like(flat_scores, float("-inf")).index_put((keep,), flat_scores[keep])

    top_scores, top = kept_scores.reshape(batch, -1).topk(min(detections_per_img, count * num_classes), dim=1)
    top_boxes = boxes.reshape(batch, -1, 4).gather(1, top[..., None].expand(-1, -1, 4))
    top_labels = top % num_classes + 1
    scale = scales.to(top_boxes.dtype)
    top_boxes = to_original_pixels(top_boxes, scale)
    orig_sizes = image_sizes.to(top_boxes.dtype) / scale.flip(1)  # (h, w) = resized (h, w) / (sy, sx)
    top_boxes = clip_boxes(top_boxes, orig_sizes[:, 0], orig_sizes[:, 1])
    kept = torch.isfinite(top_scores)  # kept ones come first
    return padded_detections(top_boxes, top_scores.masked_fill(~kept, 0.0), top_labels, kept)
