"""Speed-benchmark helpers: synthetic batches, timing, and torchvision peers that share our weights.

Used by tools/bench_speed.py (ours against torchvision's model of the same shape, same process).

    batches = make_batches(count, batch_size, height, width, num_classes, device, vary_sizes=True)
        each: {"images" [B, 3, Hp, Wp] float32 (padded to size_divisible), "image_sizes" int64 [B, 2],
               "scales" float32 [B, 2] (ones), "targets" list of B {boxes [N, 4], labels [N]},
               "image_list" list of B [3, h, w] views (torchvision's input: the same pixels)}
    times_ms = time_steps(step, batches, warmup, repeats, device)   # one entry per timed step

The images are noise with filled rectangles whose colour depends on their class, so that a model can
learn something from them in a few steps (`--train-steps`), and every image has several boxes.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from detect.engine.device import synchronize


# ---------------------------------------------------------------------------------------------------
# Batches


def make_batches(
    count: int,
    batch_size: int,
    height: int,
    width: int,
    num_classes: int,
    device: torch.device | str = "cpu",
    vary_sizes: bool = False,
    size_divisible: int = 32,
    boxes_per_image: tuple[int, int] = (2, 8),
    seed: int = 0,
) -> list[dict]:
    """`count` batches of `batch_size` images of at most height x width (see the module docstring).

    vary_sizes: the first image of a batch is height x width, the others keep the height and have a
    random width in [0.75, 1] x width (keep-ratio resizing of mixed aspect ratios), zero-padded.
    """
    generator = torch.Generator().manual_seed(seed)
    palette = torch.rand(num_classes + 1, 3, generator=generator) * 2 - 1
    padded_h = -(-height // size_divisible) * size_divisible
    padded_w = -(-width // size_divisible) * size_divisible
    batches = []
    for _ in range(count):
        images = torch.zeros(batch_size, 3, padded_h, padded_w)
        sizes, targets = [], []
        for index in range(batch_size):
            w = width if index == 0 or not vary_sizes else int(width * (0.75 + 0.25 * torch.rand(1, generator=generator)))
            image, target = _synthetic_image(height, w, palette, boxes_per_image, generator)
            images[index, :, :height, :w] = image
            sizes.append((height, w))
            targets.append(target)
        images = images.to(device)
        image_sizes = torch.tensor(sizes, dtype=torch.int64)
        batches.append({
            "images": images,
            "image_sizes": image_sizes.to(device),
            "scales": torch.ones(batch_size, 2).to(device),
            "targets": [{k: v.to(device) for k, v in t.items()} for t in targets],
            "image_list": [images[i, :, :h, :w] for i, (h, w) in enumerate(sizes)],
        })
    return batches


def _synthetic_image(height, width, palette, boxes_per_image, generator) -> tuple[torch.Tensor, dict]:
    """Noise in [-1, 1] (a normalised image's range) with class-coloured rectangles on it."""
    image = torch.rand(3, height, width, generator=generator) * 0.6 - 0.3
    low, high = boxes_per_image
    count = int(torch.randint(low, high + 1, (1,), generator=generator))
    labels = torch.randint(1, palette.shape[0], (count,), generator=generator)
    sides = torch.rand(count, 2, generator=generator) * 0.45 + 0.05  # 5% to 50% of each image side
    box_w, box_h = (sides[:, 0] * width).floor(), (sides[:, 1] * height).floor()
    x1 = (torch.rand(count, generator=generator) * (width - box_w)).floor()
    y1 = (torch.rand(count, generator=generator) * (height - box_h)).floor()
    boxes = torch.stack([x1, y1, x1 + box_w, y1 + box_h], dim=1)
    for (bx1, by1, bx2, by2), label in zip(boxes.long().tolist(), labels.tolist()):
        image[:, by1:by2, bx1:bx2] = palette[label][:, None, None] + image[:, by1:by2, bx1:bx2] * 0.3
    return image, {"boxes": boxes.float(), "labels": labels.long()}


# ---------------------------------------------------------------------------------------------------
# Timing


def time_steps(
    step: Callable[[dict], object], batches: list[dict], warmup: int, repeats: int, device: torch.device
) -> list[float]:
    """Run `step(batch)` warmup + repeats times over the batches in turn; milliseconds of each timed
    step, with the device synchronised before and after each one."""
    times = []
    for index in range(warmup + repeats):
        batch = batches[index % len(batches)]
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def summarise(times_ms: list[float], batch_size: int) -> dict:
    """Median milliseconds per step and images per second (from the median)."""
    median = statistics.median(times_ms)
    return {"ms_per_iter": median, "images_per_s": batch_size * 1000.0 / median, "ms_all": list(times_ms)}


# ---------------------------------------------------------------------------------------------------
# torchvision peers: identical input and identical weights


def skip_input_transform(model: nn.Module) -> nn.Module:
    """Make torchvision's GeneralizedRCNNTransform neither resize nor normalise: our batches are already
    resized and normalised, so both models see the same tensors (it still pads into one batch tensor
    and maps boxes back, at scale 1)."""
    model.transform.resize = lambda image, target=None: (image, target)
    model.transform.normalize = lambda image: image
    return model


def copy_faster_rcnn_weights(ours: nn.Module, peer: nn.Module) -> None:
    """Load our Faster R-CNN's weights into torchvision's FasterRCNN built on the same backbone
    (detect.models.torchvision_peer): trunk, RPN head, box head, classifier and box regression (class
    0's regression rows, which ours does not have, are set to zero)."""
    with torch.no_grad():
        peer.backbone.body.load_state_dict(ours.backbone.trunk.state_dict())
        peer.roi_heads.box_head.load_state_dict(ours.roi_heads.box_head.state_dict())
        rpn_conv = peer.rpn.head.conv[0][0]
        rpn_conv.load_state_dict(ours.rpn.head.conv.state_dict())
        peer.rpn.head.cls_logits.load_state_dict(ours.rpn.head.objectness.state_dict())
        peer.rpn.head.bbox_pred.load_state_dict(ours.rpn.head.deltas.state_dict())
        predictor = peer.roi_heads.box_predictor
        predictor.cls_score.load_state_dict(ours.roi_heads.cls_score.state_dict())
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        predictor.bbox_pred.weight[4:] = ours.roi_heads.bbox_pred.weight
        predictor.bbox_pred.bias[4:] = ours.roi_heads.bbox_pred.bias


class TrunkAsFeatureDict(nn.Module):
    """Our SSD trunk (a list of maps) as the OrderedDict of maps torchvision's SSD expects."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.out_channels = list(trunk.out_channels)

    def forward(self, images: torch.Tensor) -> OrderedDict:
        return OrderedDict((str(i), x) for i, x in enumerate(self.trunk(images)))


def torchvision_ssd_on_trunk(ours: nn.Module, ssd_cfg, size: int) -> nn.Module:
    """torchvision's SSD on a copy of our trunk, with our default boxes and settings: for SSD512 and
    non-VGG trunks, where torchvision ships no extractor of the same shape (its SSD512 extras differ)."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    from detect.models.default_boxes import box_scales

    num_maps = len(ssd_cfg.aspect_ratios)
    anchors = DefaultBoxGenerator(
        [[int(r) if float(r).is_integer() else r for r in ratios] for ratios in ssd_cfg.aspect_ratios],
        scales=box_scales(num_maps, ssd_cfg.min_scale, ssd_cfg.max_scale, ssd_cfg.first_scale),
        steps=ssd_cfg.steps,
    )
    trunk = TrunkAsFeatureDict(copy.deepcopy(ours.trunk))
    head = SSDHead(trunk.out_channels, anchors.num_anchors_per_location(), ours.num_classes + 1)
    return SSD(
        trunk, anchors, (size, size), ours.num_classes + 1, head=head,
        score_thresh=ssd_cfg.score_thresh, nms_thresh=ssd_cfg.nms_thresh,
        detections_per_img=ssd_cfg.detections_per_img, iou_thresh=ssd_cfg.iou_thresh,
        topk_candidates=ssd_cfg.top_k_per_class, positive_fraction=1.0 / (1.0 + ssd_cfg.neg_pos_ratio),
    )


def copy_ssd_weights(ours: nn.Module, peer: nn.Module) -> bool:
    """Load our SSD's weights into torchvision's SSD of the same architecture; False (nothing copied)
    when the parameter shapes do not line up. Trunk parameters are paired in registration order
    (torchvision's VGG extractor registers the conv4_3 scale first, ours after conv4_3)."""
    ours_trunk = [(n, p) for n, p in ours.trunk.state_dict().items()]
    peer_trunk = [(n, p) for n, p in peer.backbone.state_dict().items()]
    if isinstance(peer.backbone, TrunkAsFeatureDict):
        pairs = list(zip(ours_trunk, peer_trunk))
    else:
        ours_scale = [item for item in ours_trunk if item[0] == "l2norm.weight"]
        peer_scale = [item for item in peer_trunk if item[0] == "scale_weight"]
        pairs = list(zip(ours_scale, peer_scale)) + list(zip(
            [item for item in ours_trunk if item[0] != "l2norm.weight"],
            [item for item in peer_trunk if item[0] != "scale_weight"],
        ))
    heads = [(ours.head.cls_convs, peer.head.classification_head.module_list),
             (ours.head.box_convs, peer.head.regression_head.module_list)]
    for ours_list, peer_list in heads:
        for a, b in zip(ours_list, peer_list):
            pairs += list(zip(a.state_dict().items(), b.state_dict().items()))
    if len(ours_trunk) != len(peer_trunk) or any(a[1].shape != b[1].shape for a, b in pairs):
        return False
    with torch.no_grad():
        for (_, source), (_, target) in pairs:
            target.copy_(source)
    return True


def copy_ssdlite_weights(ours: nn.Module, peer: nn.Module) -> bool:
    """Load our SSDlite's weights into torchvision's (detect.models.weights' key mapping); False
    (nothing copied) when they do not fit (another trunk, tail or number of maps)."""
    from detect.models.weights import ssdlite_to_torchvision

    state = ssdlite_to_torchvision(ours.state_dict())
    expected = peer.state_dict()
    if state.keys() != expected.keys() or any(state[k].shape != expected[k].shape for k in state):
        return False
    peer.load_state_dict(state)
    return True


# ---------------------------------------------------------------------------------------------------
# Host syncs


# Tensor functions that make a CUDA host wait: a value, or a result of data-dependent size, comes back.
SYNC_FUNCTIONS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "nonzero", "equal",
                  "masked_select", "unique", "argwhere", "__index__"}


class _SyncFinder(torch.overrides.TorchFunctionMode):
    """Records every call of a syncing tensor function, and every indexing with a bool mask, by the
    innermost stack frame in a file whose path contains `path_filter`."""

    def __init__(self, path_filter: str):
        super().__init__()
        self.path_filter = path_filter
        self.found: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_FUNCTIONS or (name in ("__getitem__", "__setitem__") and _has_bool_mask(args)):
            label = name if name in SYNC_FUNCTIONS else f"{name}[bool mask]"
            key = f"{self._where()} {label}"
            self.found[key] = self.found.get(key, 0) + 1
        return func(*args, **(kwargs or {}))

    def _where(self) -> str:
        import traceback

        for frame in reversed(traceback.extract_stack()[:-2]):
            if self.path_filter in frame.filename and not frame.filename.endswith("detect/bench.py"):
                return f"{frame.filename.split(self.path_filter, 1)[-1]}:{frame.lineno}"
        return "(outside)"


def _has_bool_mask(args) -> bool:
    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(item, torch.Tensor) and item.dtype == torch.bool for item in items)


def find_host_syncs(fn: Callable[[], object], path_filter: str = "/detect/") -> dict[str, int]:
    """Run `fn` once and count the tensor calls that would sync a CUDA host, by the innermost frame in
    a file whose path contains `path_filter`: {"file:line function": calls}. Ops called inside
    torchvision or torch (e.g. torchvision.ops.nms, which syncs on CUDA) show at our calling line only
    when they go through one of SYNC_FUNCTIONS."""
    finder = _SyncFinder(path_filter)
    with finder:
        fn()
    return finder.found
