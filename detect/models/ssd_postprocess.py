"""SSD detections from the head's outputs, for the whole batch at once.

Per image and class: softmax score, the `top_k` best default boxes by that score, those above
`score_thresh`, greedy NMS at `nms_thresh`; then per image the `detections_per_img` best across
classes, mapped back to the original image's pixels.

All images and classes go through one set of tensor operations over [B * C, K] candidates (K =
top_k). NMS is our own (`grouped_nms`): torchvision's batched_nms falls back to a Python loop over the
distinct ids above a few thousand boxes, which is every SSD batch (B x C x 200 candidates), and its
single-call path would need an n x n bitmask over all of them. Grouped NMS works on each group's own
K x K IoU matrix instead, with the exact greedy result of torchvision.ops.nms.
"""

from __future__ import annotations

import torch
from torchvision.ops import nms

from detect.models.default_boxes import decode_boxes

ROUNDS_PER_CHECK = 4  # grouped_nms rounds between convergence checks (SSD300 outputs: about 6 rounds)


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of boxes within each group: boxes [G, K, 4] xyxy -> [G, K, K]."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1) * (y2 - y1)
    width = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp_(min=0)
    height = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp_(min=0)
    inter = width.mul_(height)
    return inter / (area[:, :, None] + area[:, None, :] - inter)


def grouped_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float, method: str | None = None) -> torch.Tensor:
    """Greedy NMS inside each group, all groups at once.

    boxes [G, K, 4] xyxy, each group sorted by descending score; valid [G, K] (candidates that take
    part). Returns keep [G, K] bool: what torchvision.ops.nms keeps for each group's valid boxes.

    A box is kept iff it is valid and no kept, higher-scoring box of its group overlaps it by more
    than `iou_thresh`. That rule has one solution (decided rank by rank), which greedy NMS computes;
    here it is reached by iterating keep <- valid & not suppressed(keep) from keep = valid, as in
    Cluster-NMS (Zheng et al., 2021). After t rounds the first t ranks are final, so it ends within
    K rounds, in practice a handful (6 on random SSD300 outputs); each round is one batched
    matrix-vector product, and convergence is checked every ROUNDS_PER_CHECK rounds.

    method: "matrix" (the above: one set of tensor operations for all groups, for the GPU), "each"
    (torchvision's nms on one group after another: faster on a CPU), None: "each" on a CPU unless
    tracing, else "matrix". Both keep the same boxes.
    """
    num = boxes.shape[1]
    if num == 0:
        return valid.clone()
    if method is None:
        method = "each" if boxes.device.type == "cpu" and not torch.jit.is_tracing() else "matrix"
    if method == "each":
        return _nms_each_group(boxes, valid, iou_thresh)
    higher = torch.ones(num, num, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # i before j
    # overlaps[g, i, j] = 1 where i would suppress j; as floats, "suppressed by a kept box" is one
    # batched matrix-vector product (sums of 0/1 terms: any float type is exact enough).
    overlaps = ((pairwise_iou(boxes.float()) > iou_thresh) & higher).float()
    keep = valid
    # Converged when a round changes nothing (a fixed point stays fixed); the check is a host sync on
    # CUDA, so it comes every few rounds: spare rounds are one small bmm each, a sync costs far more.
    for _ in range(0, num, ROUNDS_PER_CHECK):
        for _ in range(ROUNDS_PER_CHECK):
            previous = keep
            suppressed = torch.bmm(keep.to(overlaps.dtype).unsqueeze(1), overlaps).squeeze(1) > 0
            keep = valid & ~suppressed
        if torch.equal(keep, previous):
            break
    return keep


def _nms_each_group(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """grouped_nms on the CPU: torchvision's nms kernel on each group in turn. The kernel skips the
    boxes already suppressed, where the matrix form computes all K x K IoUs of every group: SSDlite's
    40 groups of 300 candidates (2 images x 20 classes) take about 10 ms this way against 90 ms on one
    thread. Each group's rank is its score, so ties keep our order."""
    keep = torch.zeros_like(valid)
    rank_scores = torch.arange(boxes.shape[1], 0, -1, dtype=torch.float32)
    for group in valid.any(dim=1).nonzero().flatten().tolist():
        candidates = valid[group].nonzero().flatten()
        kept = nms(boxes[group, candidates].float(), rank_scores[candidates], iou_thresh)
        keep[group, candidates[kept]] = True
    return keep


def postprocess_detections(
    cls_logits: torch.Tensor,
    box_regression: torch.Tensor,
    priors: torch.Tensor,
    image_sizes: torch.Tensor,
    scales: torch.Tensor,
    score_thresh: float = 0.01,
    top_k: int = 200,
    nms_thresh: float = 0.45,
    detections_per_img: int = 200,
    variances: tuple[float, float] = (0.1, 0.2),
) -> list[dict[str, torch.Tensor]]:
    """Detections per image.

    cls_logits [B, A, C + 1] (index 0 background); box_regression [B, A, 4]; priors [A, 4] xyxy in
    the input's pixels; image_sizes int [B, 2] (h, w) of the valid region; scales [B, 2] (sx, sy)
    with resized = original * scale. Returns B dicts {boxes [K, 4] original pixels, scores [K]
    descending, labels int64 [K] in 1..C}.
    """
    batch, num_priors, num_classes = cls_logits.shape[0], cls_logits.shape[1], cls_logits.shape[2] - 1
    scores = cls_logits.float().softmax(dim=-1)[..., 1:].transpose(1, 2)  # [B, C, A]
    boxes = decode_boxes(box_regression.float(), priors.unsqueeze(0), variances)  # [B, A, 4]
    size_xyxy = image_sizes.flip(-1).repeat(1, 2).to(boxes.dtype).unsqueeze(1)  # (w, h, w, h)
    boxes = torch.minimum(boxes.clamp(min=0), size_xyxy)

    k = min(top_k, num_priors)
    top_scores, top_index = scores.topk(k, dim=2)  # [B, C, K], sorted
    candidate_boxes = torch.gather(
        boxes.unsqueeze(1).expand(-1, num_classes, -1, -1), 2, top_index.unsqueeze(-1).expand(-1, -1, -1, 4)
    )  # [B, C, K, 4]
    valid = top_scores > score_thresh
    keep = grouped_nms(candidate_boxes.reshape(-1, k, 4), valid.reshape(-1, k), nms_thresh).view(batch, num_classes, k)

    # Best detections per image across classes; dropped candidates sort last with score -1.
    kept_scores = top_scores.masked_fill(~keep, -1.0).reshape(batch, -1)
    final_scores, final_index = kept_scores.topk(min(detections_per_img, kept_scores.shape[1]), dim=1)
    final_boxes = torch.gather(candidate_boxes.reshape(batch, -1, 4), 1, final_index.unsqueeze(-1).expand(-1, -1, 4))
    final_boxes = final_boxes / scales.to(final_boxes.dtype).repeat(1, 2).unsqueeze(1)
    final_labels = final_index // k + 1
    counts = (final_scores >= 0).sum(dim=1).tolist()  # kept ones come first: one sync for the batch
    return [
        {"boxes": final_boxes[i, :n], "scores": final_scores[i, :n], "labels": final_labels[i, :n]}
        for i, n in enumerate(counts)
    ]
