"""ONNX export of a detector with its postprocess (NMS included).

The ONNX graph (see docs/export.md for running it with onnxruntime):

    inputs   images          float32 [B, 3, H, W]  normalized like the eval pipeline (resize, then
                                                   (pixel / 255 - mean) / std), zero-padded to H x W
             image_sizes     int64   [B, 2]        (h, w) of each image's resized, unpadded region
             scales          float32 [B, 2]        (sx, sy) with resized = original * scale
    outputs  boxes           float32 [B, D, 4]     xyxy in original pixels (divided by `scales`)
             scores          float32 [B, D]        descending; 0 in empty slots
             labels          int64   [B, D]        1..C; 0 (background) in empty slots
             num_detections  int64   [B]           how many of the D slots hold a detection

`images` is normalized whatever `input.normalize_on` says: that setting only decides where training
and `detect eval` normalize (in the loader, or on the device after a uint8 copy); the values are the
same, and `Detector.preprocess` gives exactly this batch. The normalization stays outside the graph,
so the contract does not depend on the checkpoint's setting.

D is the model's `detections_per_img`. H and W are fixed at export: SSD's `input.size` square;
for keep-ratio configs (Faster R-CNN) `--image-size H,W`, by default the padded max size
(`input.max_size` rounded up to `input.size_divisible`, square), which holds any resized image.
B is fixed at the traced batch size unless `dynamic_batch`.

The graph is the prediction path itself (detect.detections.predict.padded_predictions): the model's
forward and its postprocess, which both detectors write in a form that tracing keeps. Their NMS
becomes ONNX NonMaxSuppression (detect/models/nms.py), and the padded detections are the outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from detect.detections.graph import INPUT_NAMES, OUTPUT_NAMES
from detect.errors import DetectError, first_line
from detect.export.base import EXPORT_SUFFIXES, EXPORTERS
from detect.outputs import atomic_output

# Opsets `detect export` writes: onnxruntime has no CPU kernel for Clip at opset 11 (SSD's box decoding
# clamps), and torch's TorchScript exporter writes up to its own maximum.
MIN_OPSET = 12
try:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:  # a torch without the constant: the maximum of torch 2.9 to 2.14
    MAX_OPSET = 20
EXPORT_SUFFIXES["onnx"] = ".onnx"


class ExportableDetector(nn.Module):
    """A detector with its postprocess, as the ONNX graph's contract wants it (see the docstring):
    forward(images, image_sizes, scales) -> (boxes, scores, labels, num_detections)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, scales: torch.Tensor):
        from detect.detections.predict import padded_predictions

        found = padded_predictions(self.model, images, image_sizes, scales)
        return found["boxes"], found["scores"], found["labels"], found["num"]


def build_export_module(model: nn.Module) -> nn.Module:
    """The export module for a detector whose family declares itself exportable (DetectionModel)."""
    from detect.models.detection_model import DetectionModel

    if isinstance(model, DetectionModel) and model.exportable:
        return ExportableDetector(model).eval()
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


@EXPORTERS.register("onnx")
def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    opset: int = 17,
    dynamic_batch: bool = False,
    image_size: tuple[int, int] | None = None,
    batch_size: int = 1,
) -> dict:
    """Write a checkpoint's model and postprocess as ONNX (see `export_model`)."""
    from detect.checkpoints import load_trained_model

    check_opset(opset)
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
    """Write `model` with its postprocess as ONNX; returns {height, width, max_detections, class_names,
    summary (the line `detect export` prints after the file name)}.

    The file's metadata (JSON strings) holds the class names (label order), the input mean and std,
    the resize mode and the input size (and, for COCO-trained models, `category_ids`: the COCO id of
    each label), so a deployment needs nothing but the .onnx file.
    """
    check_opset(opset)
    module = build_export_module(model.cpu().eval())
    height, width = export_input_size(config.input, image_size)
    images = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0))
    image_sizes = torch.tensor([[height, width]] * batch_size, dtype=torch.int64)
    scales = torch.ones(batch_size, 2)
    with torch.no_grad():
        max_detections = module(images, image_sizes, scales)[1].shape[1]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    input_names, output_names = list(INPUT_NAMES), list(OUTPUT_NAMES)  # the contract's (detections/graph.py)
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
    with atomic_output(output) as temporary:  # a failed or refused export leaves no .onnx behind
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torchscript_export(module, (images, image_sizes, scales), temporary, opset, input_names, output_names,
                               dynamic_axes)
        add_metadata(temporary, config, class_names, height, width, category_ids, max_detections)
        check_loads(temporary, output, opset)
    batch = "B" if dynamic_batch else batch_size
    summary = (f"input images [{batch}, 3, {height}, {width}], outputs boxes/scores/labels padded to {max_detections} "
               f"per image, num_detections")
    return {"height": height, "width": width, "max_detections": max_detections, "class_names": list(class_names),
            "summary": summary}


def torchscript_export(module, inputs, path: Path, opset, input_names, output_names, dynamic_axes) -> None:
    """torch's TorchScript-based exporter (dynamo=False). It maps our NMS to NonMaxSuppression and keeps
    the data-dependent sizes NMS produces; the torch.export-based one (the default since torch 2.9) stops
    at them (docs/export.md, "Which exporter"). pyproject.toml bounds torch to releases that still have
    it; a torch without it gets one line naming the cause."""
    try:
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    except TypeError as error:  # a torch whose export() no longer takes dynamo=False or these arguments
        raise DetectError(f"export: torch {torch.__version__} no longer has the TorchScript-based ONNX exporter "
                          f"this version of detect uses ({error}); install torch<2.15 as pyproject.toml "
                          f"says") from None


def add_metadata(path: Path, config, class_names: list[str], height: int, width: int,
                 category_ids: list[int] | None, max_detections: int) -> None:
    """The contract's metadata (detect/detections/graph.py) into the ONNX file's metadata_props."""
    import onnx

    from detect.detections.graph import graph_metadata

    graph = onnx.load(str(path))
    for key, value in graph_metadata(config, class_names, height, width, category_ids, max_detections).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))


def check_opset(opset: int) -> None:
    """One line naming the supported range for an opset outside it."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DetectError(f"--opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET} (onnxruntime has no "
                          f"Clip-11 kernel, which SSD needs; the exporter writes at most {MAX_OPSET})")


def check_loads(path: Path, output: Path, opset: int) -> None:
    """The written model must open in onnxruntime (when installed) before the export says "wrote":
    the exporter can write graphs no runtime runs."""
    try:
        import onnxruntime
    except ImportError:
        return
    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types, one per failure kind
        raise DetectError(f"{output}: the model exported with opset {opset} does not load in onnxruntime "
                          f"({first_line(error)}); not written") from None
