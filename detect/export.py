"""ONNX export of a detector with its postprocess (NMS included).

The ONNX graph (see docs/export.md for running it with onnxruntime):

    inputs   images          float32 [B, 3, H, W]  normalised like the eval pipeline (resize, then
                                                   (pixel / 255 - mean) / std), zero-padded to H x W
             image_sizes     int64   [B, 2]        (h, w) of each image's resized, unpadded region
             scales          float32 [B, 2]        (sx, sy) with resized = original * scale
    outputs  boxes           float32 [B, D, 4]     xyxy in original pixels (divided by `scales`)
             scores          float32 [B, D]        descending; 0 in empty slots
             labels          int64   [B, D]        1..C; 0 (background) in empty slots
             num_detections  int64   [B]           how many of the D slots hold a detection

`images` is normalised whatever `input.normalize_on` says: that setting only decides where training
and `detect eval` normalise (in the loader, or on the device after a uint8 copy); the values are the
same, and `Detector.preprocess` gives exactly this batch. The normalisation stays outside the graph,
so the contract does not depend on the checkpoint's setting.

D is the model's `detections_per_img`. H and W are fixed at export: SSD's `input.size` square;
for keep-ratio configs (Faster R-CNN) `--image-size H,W`, by default the padded max size
(`input.max_size` rounded up to `input.size_divisible`, square), which holds any resized image.
B is fixed at the traced batch size unless `dynamic_batch`.

Our postprocess code is written for speed in PyTorch and contains steps a trace cannot keep: a
convergence loop in SSD's grouped NMS and a host-side split into per-image lists. The export modules
below recompute the same detections with trace-friendly operations: NMS becomes ONNX
NonMaxSuppression (via `onnx_grouped_nms`), and the per-image lists become padded tensors. Tests check
that onnxruntime gives the PyTorch model's detections.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from detect.errors import DetectError


class _NonMaxSuppression(torch.autograd.Function):
    """Greedy NMS in each of G groups: eager result in PyTorch, ONNX NonMaxSuppression in the graph.

    boxes [G, K, 4] xyxy; scores [G, 1, K]; boxes with score below `score_floor` take no part.
    Returns selected [M, 3] int64 rows (group, 0, index): ONNX NonMaxSuppression's output layout.
    """

    @staticmethod
    def forward(ctx, boxes, scores, iou_thresh: float, score_floor: float):
        from detect.models.ssd_postprocess import grouped_nms

        order = scores[:, 0].argsort(dim=1, descending=True, stable=True)
        sorted_boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4))
        valid = torch.gather(scores[:, 0], 1, order) >= score_floor
        keep_sorted = grouped_nms(sorted_boxes, valid, iou_thresh)
        group, rank = keep_sorted.nonzero(as_tuple=True)
        index = order[group, rank]
        return torch.stack([group, torch.zeros_like(group), index], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_thresh: float, score_floor: float):
        max_per_group = g.op("Constant", value_t=torch.tensor([2**31 - 1], dtype=torch.int64))
        iou = g.op("Constant", value_t=torch.tensor([iou_thresh], dtype=torch.float32))
        floor = g.op("Constant", value_t=torch.tensor([score_floor], dtype=torch.float32))
        return g.op("NonMaxSuppression", boxes, scores, max_per_group, iou, floor)


def onnx_grouped_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_thresh: float) -> torch.Tensor:
    """What `grouped_nms` keeps, in a form that exports: boxes [G, K, 4] sorted by descending score in
    each group, valid [G, K] -> keep [G, K] bool.

    The ONNX operator ranks boxes by score; it gets each box's rank (K - position) as its score, so
    its order is exactly ours even where scores tie, and invalid boxes (score 0) stay out.
    """
    groups, num = valid.shape
    rank_scores = torch.arange(num, 0, -1, dtype=torch.float32, device=valid.device).expand(groups, num)
    rank_scores = (rank_scores * valid.float()).unsqueeze(1)  # [G, 1, K]
    selected = _NonMaxSuppression.apply(boxes.float(), rank_scores, float(iou_thresh), 0.5)
    flat = selected[:, 0] * num + selected[:, 2]
    keep = torch.zeros_like(valid.reshape(-1))
    keep = keep.scatter(0, flat, torch.ones_like(flat, dtype=torch.bool))
    return keep.view_as(valid) & valid


def pad_detections(scores: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor):
    """Best-first padded outputs from candidates: scores [B, N], boxes [B, N, 4], labels [B, N], kept
    [B, N] bool, already in descending score order with kept ones first -> (boxes, scores, labels,
    num_detections) with empty slots zeroed."""
    num_detections = kept.sum(dim=1)
    return boxes * kept.unsqueeze(-1), scores * kept, labels * kept, num_detections


class ExportableSSD(nn.Module):
    """SSD + postprocess for export: the same steps as ssd_postprocess.postprocess_detections, with
    NMS as ONNX NonMaxSuppression and padded outputs instead of per-image lists."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, scales: torch.Tensor):
        from detect.models.default_boxes import decode_boxes

        model = self.model
        outputs = model(images, image_sizes)
        cls_logits, box_regression, priors = outputs["cls_logits"], outputs["box_regression"], outputs["priors"]
        batch, num_priors, num_classes = cls_logits.shape[0], cls_logits.shape[1], cls_logits.shape[2] - 1
        scores = cls_logits.float().softmax(dim=-1)[..., 1:].transpose(1, 2)  # [B, C, A]
        boxes = decode_boxes(box_regression.float(), priors.unsqueeze(0), model.variances)  # [B, A, 4]
        size_xyxy = image_sizes.flip(-1).repeat(1, 2).to(boxes.dtype).unsqueeze(1)
        boxes = torch.minimum(boxes.clamp(min=0), size_xyxy)

        k = min(model.top_k_per_class, num_priors)
        top_scores, top_index = scores.topk(k, dim=2)  # [B, C, K]
        candidate_boxes = torch.gather(
            boxes.unsqueeze(1).expand(-1, num_classes, -1, -1), 2, top_index.unsqueeze(-1).expand(-1, -1, -1, 4)
        )
        valid = top_scores > model.score_thresh
        keep = onnx_grouped_nms(candidate_boxes.reshape(-1, k, 4), valid.reshape(-1, k), model.nms_thresh)
        keep = keep.view(-1, num_classes, k)

        kept_scores = top_scores.masked_fill(~keep, -1.0).reshape(batch, -1)
        final_scores, final_index = kept_scores.topk(min(model.detections_per_img, num_classes * k), dim=1)
        final_boxes = torch.gather(candidate_boxes.reshape(batch, -1, 4), 1, final_index.unsqueeze(-1).expand(-1, -1, 4))
        final_boxes = final_boxes / scales.to(final_boxes.dtype).repeat(1, 2).unsqueeze(1)
        final_labels = final_index // k + 1
        return pad_detections(final_scores, final_boxes, final_labels, final_scores >= 0)


class ExportableFasterRCNN(nn.Module):
    """Faster R-CNN + postprocess for export: the same steps as roi_heads.postprocess_detections,
    with padded outputs instead of per-image lists.

    The backbone, RPN and RoI heads trace as they are (their NMS is torchvision's, which exports as
    NonMaxSuppression). Two values the PyTorch postprocess reads off the data become trace-safe: the
    per-image counts (here `num_detections`), and the NMS group offset, taken from the input's padded
    size, which bounds every clipped box just as the batch's largest image size does.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, scales: torch.Tensor):
        from detect.models.box_coder import clip_boxes, decode
        from detect.models.nms import grouped_nms

        heads = self.model.roi_heads
        outputs = self.model(images, image_sizes)
        rois, roi_valid = outputs["rois"], outputs["roi_valid"]
        class_logits, box_deltas = outputs["class_logits"].float(), outputs["box_deltas"].float()
        batch, count, num_classes = box_deltas.shape[:3]
        scores = torch.softmax(class_logits, dim=-1)[..., 1:]  # [B, R, C]
        boxes = decode(box_deltas, rois[:, :, None, :].float(), heads.box_weights)  # [B, R, C, 4]
        boxes = clip_boxes(boxes, image_sizes[:, 0], image_sizes[:, 1])
        sizes = boxes[..., 2:] - boxes[..., :2]
        candidate = roi_valid[..., None] & (scores > heads.score_thresh) & (sizes >= 1e-2).all(dim=-1)

        flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)
        groups = torch.arange(batch * count * num_classes, device=rois.device)
        groups = (groups // (count * num_classes)) * num_classes + groups % num_classes  # image * C + class
        index = candidate.reshape(-1).nonzero().squeeze(1)
        max_coordinate = float(max(images.shape[-2:]))
        keep = index[grouped_nms(flat_boxes[index], flat_scores[index], groups[index], heads.nms_thresh, max_coordinate)]
        kept_scores = torch.full_like(flat_scores, float("-inf")).index_put((keep,), flat_scores[keep])

        top_scores, top = kept_scores.reshape(batch, -1).topk(min(heads.detections_per_img, count * num_classes), dim=1)
        top_boxes = boxes.reshape(batch, -1, 4).gather(1, top[..., None].expand(-1, -1, 4))
        top_labels = top % num_classes + 1
        scale = scales.to(top_boxes.dtype)
        top_boxes = top_boxes / scale.repeat(1, 2)[:, None, :]
        orig_sizes = image_sizes.to(top_boxes.dtype) / scale.flip(1)
        top_boxes = clip_boxes(top_boxes, orig_sizes[:, 0], orig_sizes[:, 1])
        kept = torch.isfinite(top_scores)
        return pad_detections(top_scores.masked_fill(~kept, 0.0), top_boxes, top_labels, kept)


def build_export_module(model: nn.Module) -> nn.Module:
    """The export module for a detector (SSD or Faster R-CNN)."""
    from detect.models.faster_rcnn import FasterRCNN
    from detect.models.ssd import SSD

    if isinstance(model, SSD):
        return ExportableSSD(model).eval()
    if isinstance(model, FasterRCNN):
        return ExportableFasterRCNN(model).eval()
    raise DetectError(f"export: no ONNX export for a {type(model).__name__}")


# ---------------------------------------------------------------------------------------------------


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`--image-size 608,1024` -> (608, 1024); `640` -> (640, 640); None -> None."""
    if text is None:
        return None
    try:
        values = [int(part) for part in str(text).replace("x", ",").split(",") if part.strip()]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 16:
        raise DetectError(f"--image-size '{text}': expected H,W (or one side), each at least 16")
    return values[0], values[1]


def export_input_size(input_cfg, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H, W) of the exported graph's image input, padded to multiples of `input.size_divisible`."""
    if input_cfg.resize == "fixed":
        height = width = input_cfg.size
        if image_size is not None and tuple(image_size) != (height, width):
            raise DetectError(
                f"--image-size {image_size[0]},{image_size[1]}: a fixed-size config takes input.size "
                f"{height} x {width} only"
            )
    else:
        height, width = image_size if image_size is not None else (input_cfg.max_size, input_cfg.max_size)
    divisor = input_cfg.size_divisible
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    image_size: tuple[int, int] | None = None,
    batch_size: int = 1,
) -> dict:
    """Write a checkpoint's model and postprocess as ONNX (see `export_model`)."""
    from detect.engine.checkpoint import load_trained_model

    if opset < 11:
        raise DetectError(f"--opset {opset}: NonMaxSuppression with these inputs needs opset 11 or later")
    model, config, class_names, category_ids = load_trained_model(Path(checkpoint), torch.device("cpu"))
    return export_model(model, config, class_names, output, opset, dynamic_batch, image_size, batch_size,
                        category_ids)


def export_model(
    model: nn.Module,
    config,
    class_names: list[str],
    output: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    image_size: tuple[int, int] | None = None,
    batch_size: int = 1,
    category_ids: list[int] | None = None,
) -> dict:
    """Write `model` with its postprocess as ONNX; returns {height, width, max_detections, class_names}.

    The file's metadata (JSON strings) holds the class names (label order), the input mean and std,
    the resize mode and the input size (and, for COCO-trained models, `category_ids`: the COCO id of
    each label), so a deployment needs nothing but the .onnx file.
    """
    import onnx

    from detect.config import config_to_dict

    if opset < 11:
        raise DetectError(f"--opset {opset}: NonMaxSuppression with these inputs needs opset 11 or later")
    module = build_export_module(model.cpu().eval())
    height, width = export_input_size(config.input, image_size)
    images = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0))
    image_sizes = torch.tensor([[height, width]] * batch_size, dtype=torch.int64)
    scales = torch.ones(batch_size, 2)
    with torch.no_grad():
        max_detections = module(images, image_sizes, scales)[1].shape[1]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    input_names = ["images", "image_sizes", "scales"]
    output_names = ["boxes", "scores", "labels", "num_detections"]
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter: it maps our NMS to NonMaxSuppression and keeps the data-
        # dependent sizes NMS produces; torch.export (the default since torch 2.9) needs guards on them.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (images, image_sizes, scales), str(output), dynamo=False, opset_version=opset,
            input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    graph = onnx.load(str(output))
    metadata = {
        "class_names": json.dumps(list(class_names)),
        "mean": json.dumps(list(config.input.mean)),
        "std": json.dumps(list(config.input.std)),
        "resize": config.input.resize,
        "input_size": json.dumps([height, width]),
        "arch": config.model.arch,
        # The whole resolved config: `detect infer --backend onnxruntime` rebuilds the eval pipeline from it.
        "config": json.dumps(config_to_dict(config)),
    }
    if category_ids is not None:
        metadata["category_ids"] = json.dumps([int(i) for i in category_ids])
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(output))
    return {"height": height, "width": width, "max_detections": max_detections, "class_names": list(class_names)}
