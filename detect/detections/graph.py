"""The exported graph's side of the detection contract (detect/export/onnx.py writes it; the graph
backends, detect/backends/graph_model.py, run it):

    inputs   INPUT_NAMES   images float32 [B, 3, H, W] normalized, zero-padded to H x W;
                           image_sizes int64 [B, 2] (h, w) resized; scales float32 [B, 2] (sx, sy)
    outputs  OUTPUT_NAMES  boxes [B, D, 4], scores [B, D], labels [B, D], num_detections [B]: the padded
                           detections (padded.py), the count under the name the graph gives it
    metadata graph_metadata(...) -> {key: str}: class names, input scaling and size, D, the resolved
             config (and COCO category ids), JSON-encoded; read back by loaded_from_metadata

A graph backend feeds `scales` of 1 (boxes in resized pixels), pads the batch to H x W, and brings the
boxes back with `padded_from_graph`, the same rescaling (padded.to_original_pixels) the PyTorch model
runs inside its postprocess.
"""

from __future__ import annotations

import json

import torch

from detect.detections.loaded import LoadedModel
from detect.detections.padded import to_original_pixels
from detect.errors import DetectError

INPUT_NAMES = ("images", "image_sizes", "scales")
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")


def padded_from_graph(outputs: dict, scales: torch.Tensor) -> dict:
    """The graph's outputs (OUTPUT_NAMES, boxes in resized pixels, on the host) -> padded detections
    (padded.py), boxes in original pixels."""
    return {"boxes": to_original_pixels(outputs["boxes"], scales.float().cpu()), "scores": outputs["scores"],
            "labels": outputs["labels"].long(), "num": outputs["num_detections"].long()}


def graph_metadata(config, class_names: list[str], height: int, width: int, category_ids: list[int] | None,
                   max_detections: int) -> dict[str, str]:
    """What an exported file carries beside its graph: key -> string (JSON for lists and the config)."""
    from detect.config import config_to_dict

    metadata = {
        "class_names": json.dumps(list(class_names)),
        "mean": json.dumps(list(config.input.mean)),
        "std": json.dumps(list(config.input.std)),
        "resize": config.input.resize,
        "input_size": json.dumps([height, width]),
        "max_detections": str(int(max_detections)),  # D, which a free-batch graph's output shapes do not state
        "arch": config.model.arch,
        # The whole resolved config: `detect infer --backend onnxruntime` rebuilds the eval pipeline from it.
        "config": json.dumps(config_to_dict(config)),
    }
    if category_ids is not None:
        metadata["category_ids"] = json.dumps([int(i) for i in category_ids])
    return metadata


def loaded_from_metadata(model, path, device: str = "cpu") -> LoadedModel:
    """The LoadedModel of an exported graph (`model.metadata`: the file's metadata): config, class names
    and category ids from its metadata."""
    from detect.config import validate_saved_config

    for key in ("config", "class_names"):
        if key not in model.metadata:
            raise DetectError(f"{path}: no '{key}' in its metadata; export it again with this version of detect export")
    config = validate_saved_config(metadata_json(model.metadata, "config", path))
    category_ids = metadata_json(model.metadata, "category_ids", path) if "category_ids" in model.metadata else None
    return LoadedModel(model, config, metadata_json(model.metadata, "class_names", path), category_ids, device)


def metadata_json(metadata: dict, key: str, path):
    """One JSON value of an exported graph's metadata; a one-line DetectError when it does not parse."""
    try:
        return json.loads(metadata[key])
    except (TypeError, ValueError):
        raise DetectError(f"{path}: its metadata '{key}' is not valid JSON; export it again") from None


def onnx_metadata(path) -> dict[str, str]:
    """The metadata `detect export` writes into an .onnx file (its metadata_props: key -> JSON string)."""
    try:
        import onnx
    except ImportError:
        raise DetectError(f"{path}: reading an ONNX file's metadata needs onnx: pip install -e '.[export]'") from None
    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
