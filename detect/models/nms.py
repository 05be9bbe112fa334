"""Non-maximum suppression for whole batches: every variant the detectors use, named for what it does.

    batched_nms_by_offset(boxes [M, 4], scores [M], groups [M], iou, max_coordinate) -> kept indices
        one torchvision.ops.nms call over all groups (images, or image x class), each group's boxes
        shifted to its own region of the plane (on the CPU: torchvision's batched_nms, see below);
        Faster R-CNN's detections
    nms_per_image(boxes [B, K, 4], scores [B, K], valid [B, K], iou, max_coordinate, groups [K]?)
        -> kept [B, K]; one call per image (within each group of slots, e.g. pyramid levels, when
        `groups` is given); the RPN's thousands of proposals per image
    sorted_groups_nms(boxes [G, K, 4] sorted by score, valid [G, K], iou) -> kept [G, K]
        fixed-shape groups: Cluster-NMS in eager mode (`cluster_nms`), ONNX NonMaxSuppression when
        traced for export; SSD's per-class detections

Each keeps exactly what greedy NMS (torchvision.ops.nms) keeps in each group. On a GPU and under
tracing, torchvision's `batched_nms` is not used: above a few thousand boxes it loops over the groups
in Python, and its one-call path shifts by the largest coordinate of the boxes, data that tracing
would freeze. On the CPU in eager mode it is the faster one: the NMS kernel compares each kept box
with every other candidate, across groups too when they are shifted apart, and the CPU has no host
sync to save (docs/benchmarks.md, CPU fast paths).
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, nms

from detect.iou import box_iou
from detect.models.tracing import is_exporting

ROUNDS_PER_CHECK = 4  # cluster_nms rounds between convergence checks (SSD300 outputs: about 6 rounds)


def batched_nms_by_offset(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thresh: float,
    max_coordinate: float | torch.Tensor,
) -> torch.Tensor:
    """Indices kept by NMS within each group, by descending score.

    boxes float [M, 4] with coordinates in [0, max_coordinate]; scores [M]; groups int64 [M].
    `max_coordinate` may be a 0-dim tensor, so that a trace takes it from the inputs.
    """
    if boxes.device.type == "cpu" and not is_exporting():
        return batched_nms(boxes, scores, groups, iou_thresh)
    offsets = groups.to(boxes.dtype) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_thresh)


def nms_per_image(
    boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, iou_thresh: float, max_coordinate: float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """NMS per image on fixed-size candidate lists: boxes [B, K, 4], scores [B, K], valid [B, K] -> kept
    [B, K] bool. Invalid candidates neither survive nor suppress (they become empty boxes).
    `groups` int64 [K] (e.g. the pyramid level of each candidate slot): NMS runs within each group only.

    The one loop over images in the detector, on purpose: NMS kernels compare every candidate with every
    other, so one grouped call over B*K proposals costs O((B*K)^2) where B calls cost O(B*K^2). With the
    RPN's thousands of candidates per image that is the difference that matters (docs/benchmarks.md, CPU
    fast paths; on CUDA the grouped call's suppression mask alone would take (B*K)^2/8 bytes). Each call
    keeps the same boxes the grouped call would.
    """
    flat_boxes = torch.where(valid[..., None], boxes, torch.zeros_like(boxes))
    masked_scores = scores.masked_fill(~valid, float("-inf"))
    if is_exporting():
        # A traced loop would be unrolled for the traced batch size: export uses the grouped call,
        # which keeps the same boxes for any batch size.
        images = torch.arange(scores.shape[0], device=boxes.device)[:, None].expand_as(scores)
        all_groups = images if groups is None else images * (int(groups.max()) + 1) + groups[None]
        keep = batched_nms_by_offset(flat_boxes.reshape(-1, 4), masked_scores.reshape(-1), all_groups.reshape(-1),
                                     iou_thresh, max_coordinate)
        kept = torch.zeros(scores.numel(), dtype=torch.bool, device=boxes.device)
        kept[keep] = True
        return kept.reshape(scores.shape) & valid
    kept = torch.zeros_like(valid)
    for image in range(scores.shape[0]):
        if groups is None:
            keep = nms(flat_boxes[image], masked_scores[image], iou_thresh)
        else:
            keep = batched_nms_by_offset(flat_boxes[image], masked_scores[image], groups, iou_thresh, max_coordinate)
        kept[image, keep] = True
    return kept & valid


def sorted_groups_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Greedy NMS inside each group of a fixed-shape batch: boxes [G, K, 4] xyxy, each group sorted by
    descending score; valid [G, K] (the candidates that take part) -> keep [G, K] bool.

    Eager on a GPU: `cluster_nms` (all groups in a few batched products). Eager on the CPU:
    `torchvision_nms_each_group`, faster there. Traced (ONNX export): the ONNX NonMaxSuppression
    operator, which ranks boxes by score; it gets each box's rank (K - position) as its score, so its
    order is exactly ours even where scores tie, and invalid boxes (score 0) stay out. All three keep
    the same boxes.
    """
    if not is_exporting():
        if boxes.device.type == "cpu":
            return torchvision_nms_each_group(boxes, valid, iou_thresh)
        return cluster_nms(boxes, valid, iou_thresh)
    groups, num = valid.shape
    rank_scores = torch.arange(num, 0, -1, dtype=torch.float32, device=valid.device).expand(groups, num)
    rank_scores = (rank_scores * valid.float()).unsqueeze(1)  # [G, 1, K]
    selected = _NonMaxSuppression.apply(boxes.float(), rank_scores, float(iou_thresh), 0.5)
    flat = selected[:, 0] * num + selected[:, 2]
    keep = torch.zeros_like(valid.reshape(-1))
    keep = keep.scatter(0, flat, torch.ones_like(flat, dtype=torch.bool))
    return keep.view_as(valid) & valid


def torchvision_nms_each_group(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """`sorted_groups_nms` on the CPU: torchvision's nms kernel on each non-empty group in turn. The
    kernel skips boxes already suppressed, where `cluster_nms` computes all K x K IoUs of every group
    (docs/benchmarks.md, CPU fast paths). This is the one Python loop over groups, and only on the CPU, where there is
    no kernel launch or host sync to save. Each box's rank is its score, so ties keep our order."""
    keep = torch.zeros_like(valid)
    rank_scores = torch.arange(boxes.shape[1], 0, -1, dtype=torch.float32)
    for group in valid.any(dim=1).nonzero().flatten().tolist():
        candidates = valid[group].nonzero().flatten()
        kept = nms(boxes[group, candidates].float(), rank_scores[candidates], iou_thresh)
        keep[group, candidates[kept]] = True
    return keep


def cluster_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """Greedy NMS inside each group, all groups at once (see `sorted_groups_nms` for the arguments).

    A box is kept iff it is valid and no kept, higher-scoring box of its group overlaps it by more
    than `iou_thresh`. That rule has one solution (decided rank by rank), which greedy NMS computes;
    here it is reached by iterating keep <- valid & not suppressed(keep) from keep = valid, as in
    Cluster-NMS (Zheng et al., 2021). After t rounds the first t ranks are final, so it ends within
    K rounds, in practice a handful (6 on random SSD300 outputs); each round is one batched
    matrix-vector product, and convergence is checked every ROUNDS_PER_CHECK rounds. torchvision's
    batched_nms would loop over the groups in Python here (B x C groups of K = 200 in SSD).
    """
    num = boxes.shape[1]
    if num == 0:
        return valid.clone()
    higher = torch.ones(num, num, dtype=torch.bool, device=boxes.device).triu(diagonal=1)  # i before j
    # overlaps[g, i, j] = 1 where i would suppress j; as floats, "suppressed by a kept box" is one
    # batched matrix-vector product (sums of 0/1 terms: any float type is exact enough).
    boxes = boxes.float()
    overlaps = ((box_iou(boxes, boxes) > iou_thresh) & higher).float()
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


class _NonMaxSuppression(torch.autograd.Function):
    """Greedy NMS in each of G groups: eager result in PyTorch, ONNX NonMaxSuppression in the graph.

    boxes [G, K, 4] xyxy; scores [G, 1, K]; boxes with score below `score_floor` take no part.
    Returns selected [M, 3] int64 rows (group, 0, index): ONNX NonMaxSuppression's output layout.
    """

    @staticmethod
    def forward(ctx, boxes, scores, iou_thresh: float, score_floor: float):
        order = scores[:, 0].argsort(dim=1, descending=True, stable=True)
        sorted_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
        valid = torch.gather(scores[:, 0], 1, order) >= score_floor
        keep_sorted = cluster_nms(sorted_boxes, valid, iou_thresh)
        group, rank = keep_sorted.nonzero(as_tuple=True)
        index = order[group, rank]
        return torch.stack([group, torch.zeros_like(group), index], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_thresh: float, score_floor: float):
        max_per_group = g.op("Constant", value_t=torch.tensor([2**31 - 1], dtype=torch.int64))
        iou = g.op("Constant", value_t=torch.tensor([iou_thresh], dtype=torch.float32))
        floor = g.op("Constant", value_t=torch.tensor([score_floor], dtype=torch.float32))
        return g.op("NonMaxSuppression", boxes, scores, max_per_group, iou, floor)
