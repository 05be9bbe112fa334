"""SSD detections from the head's outputs, for the whole batch at once.

Per image and class: softmax score, the `top_k` best default boxes by that score, those above
`score_threshold`, greedy NMS at `nms_thresh`; then per image the `detections_per_img` best across
classes, mapped back to the original image's pixels.

All images and classes go through one set of tensor operations over [B * C, K] candidates (K =
top_k). NMS is `nms.sorted_groups_nms`: torchvision's batched_nms falls back to a Python loop over
the distinct ids above a few thousand boxes, which is every SSD batch (B x C x 200 candidates), and
its single-call path would need an n x n bitmask over all of them. Sorted-groups NMS works on each
group's own K x K IoU matrix instead, with the exact greedy result of torchvision.ops.nms, and
becomes ONNX NonMaxSuppression when traced: ONNX export traces this very function. (On the CPU
it runs torchvision's kernel group by group, which is faster there: see nms.py.)
"""

from __future__ import annotations

import torch

from detect.detections.padded import padded_detections, to_original_pixels
from detect.models.boxes import decode, variance_weights
from detect.models.nms import sorted_groups_nms


def postprocess_detections(
    cls_logits: torch.Tensor,
    box_regression: torch.Tensor,
    priors: torch.Tensor,
    image_sizes: torch.Tensor,
    scales: torch.Tensor,
    score_threshold: float = 0.01,
    top_k: int = 200,
    nms_thresh: float = 0.45,
    detections_per_img: int = 200,
    variances: tuple[float, float] = (0.1, 0.2),
) -> dict[str, torch.Tensor]:
    """Detections of the batch, padded (detect/detections/padded.py), boxes in original pixels.

    cls_logits [B, A, C + 1] (index 0 background); box_regression [B, A, 4]; priors [A, 4] xyxy in
    the input's pixels; image_sizes int [B, 2] (h, w) of the valid region; scales [B, 2] (sx, sy)
    with resized = original * scale. D = min(detections_per_img, C x top_k).
    """
    batch, num_priors, num_classes = cls_logits.shape[0], cls_logits.shape[1], cls_logits.shape[2] - 1
    scores = cls_logits.float().softmax(dim=-1)[..., 1:].transpose(1, 2)  # [B, C, A]
    boxes = decode(box_regression.float(), priors.unsqueeze(0), variance_weights(variances))  # [B, A, 4]
    size_xyxy = image_sizes.flip(-1).repeat(1, 2).to(boxes.dtype).unsqueeze(1)  # (w, h, w, h)
    boxes = torch.minimum(boxes.clamp(min=0), size_xyxy)

    k = min(top_k, num_priors)
    top_scores, top_index = scores.topk(k, dim=2)  # [B, C, K], sorted
    candidate_boxes = torch.gather(
        boxes.unsqueeze(1).expand(-1, num_classes, -1, -1), 2, top_index.unsqueeze(-1).expand(-1, -1, -1, 4)
    )  # [B, C, K, 4]
    valid = top_scores > score_threshold
    keep = sorted_groups_nms(candidate_boxes.reshape(-1, k, 4), valid.reshape(-1, k), nms_thresh)
    keep = keep.view(batch, num_classes, k)

    # Best detections per image across classes; dropped candidates sort last with score -1.
    kept_scores = top_scores.masked_fill(~keep, -1.0).reshape(batch, -1)
    final_scores, final_index = kept_scores.topk(min(detections_per_img, kept_scores.shape[1]), dim=1)
    final_boxes = torch.gather(candidate_boxes.reshape(batch, -1, 4), 1, final_index.unsqueeze(-1).expand(-1, -1, 4))
    final_boxes = to_original_pixels(final_boxes, scales.to(final_boxes.dtype))
    final_labels = final_index // k + 1
    return padded_detections(final_boxes, final_scores, final_labels, final_scores >= 0)  # kept ones first
