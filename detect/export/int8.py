"""INT8 post-training quantization of the exported graph: `detect export --int8 [--calibration N]`.

Only the trunk and the heads run in INT8; box decoding, the postprocess and NMS stay in float:
- onnxruntime (`--format onnx`): static quantization in the QDQ format, of the Conv, MatMul and Gemm
  nodes only (weights int8 per output channel, activations uint8, min-max ranges);
- OpenVINO (`--format openvino`): NNCF's post-training quantization of the converted model, activation
  ranges from each tensor's minimum and maximum over the calibration images (as onnxruntime's; NNCF's
  default, means of per-image ranges, cut SSDlite320's raccoon mAP@0.5 from 71.0 to 67.5 %, these
  kept it at 71.1 %), with the postprocess (every node outside the network's modules, POSTPROCESS)
  and the elementwise and decoding ops (FLOAT_OPS: the RPN's proposal decoding is inside the network)
  left out of its scope.
Calibration: N images (default 300, all of them when the split has fewer) of the checkpoint's training
split, drawn with a fixed seed, through the eval preprocessing (detect/detections/eval_inputs.py, as
`Detector.preprocess`) and zero-padded to the graph's H x W, exactly what the graph sees at inference.
A model the runtime cannot quantize or run after quantizing is one line naming the layer and the
reason, and nothing is written.

    info = quantize_checkpoint("onnx", checkpoint, output, folder, calibration=300, overrides=[],
                               dynamic_batch=True)
        -> export_onnx's info, plus "quantized" (layers in INT8 / quantizable layers) and the float model
           written into `folder`; `detect export --int8` calls detect.evaluation.int8_report.export_int8,
           which adds the float-against-INT8 report (mAP@0.5 and images/s), written to <output>.json
           beside the model (report_path_of)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from detect.errors import DetectError, first_line, reason_line

INT8_FORMATS = ("onnx", "openvino")
DEFAULT_CALIBRATION = 300
CALIBRATION_SEED = 0
QUANTIZED_ONNX_OPS = ("Conv", "MatMul", "Gemm")
# What NNCF would also quantize but must stay float: box decoding (anchors times offsets, exp) and score
# arithmetic, also where they sit inside the network (the RPN decodes its proposals).
FLOAT_OPS = ["Multiply", "Add", "Subtract", "Divide", "Exp", "Concat", "Sigmoid", "SoftMax", "Clamp"]
# The exported graph names each node by the module that made it: the network's under /model/ (trunk,
# heads, RPN, RoI heads); the postprocess, a method the export calls (detect/export/onnx.py), is at the
# top level, NMS included.
POSTPROCESS = r"^(?!/model/).*"


def quantize_checkpoint(format: str, checkpoint: str | Path, output: str | Path, folder: Path,
                        calibration: int = DEFAULT_CALIBRATION, overrides=(), **export_options) -> dict:
    """Export `checkpoint` in float into `folder`, quantize it for `format`'s runtime and write the INT8
    model to `output`: export_onnx's info plus "quantized" (layers in INT8 / quantizable layers),
    "float_model" (the float file of that runtime, in `folder`), "backend" (the runtime) and
    "calibration_images". detect.evaluation.int8_report.export_int8 adds the float-against-INT8 report."""
    from detect.export.onnx import export_onnx

    check_int8_format(format)
    if calibration < 1:
        raise DetectError(f"--calibration {calibration}: give at least one image")
    output = Path(output)
    float_onnx = Path(folder) / "float.onnx"
    info = export_onnx(checkpoint, float_onnx, **export_options)
    feeds = calibration_feeds(checkpoint, float_onnx, calibration, overrides)
    if format == "onnx":
        info["quantized"] = quantize_onnx(float_onnx, output, feeds)
        info["float_model"], info["backend"] = float_onnx, "onnxruntime"
    else:
        from detect.export.openvino import save_ir

        info["quantized"] = quantize_openvino(float_onnx, output, feeds)
        info["float_model"], info["backend"] = Path(folder) / "float.xml", "openvino"
        save_ir(float_onnx, info["float_model"])
    info["calibration_images"] = sum(len(feed["images"]) for feed in feeds)
    return info


def check_int8_format(format: str) -> None:
    if format not in INT8_FORMATS:
        raise DetectError(f"--int8: quantization is for --format {' or '.join(INT8_FORMATS)}, not {format}")


def report_path_of(model: Path) -> Path:
    """Where the float-against-INT8 report of `model` goes: beside it, `<model file name>.json` (an INT8
    ONNX file and an INT8 IR of one checkpoint keep their own)."""
    return model.with_name(model.name + ".json")


# ---------------------------------------------------------------------------------------------------
# Calibration


def calibration_feeds(checkpoint: str | Path, float_onnx: Path, count: int, overrides=()) -> list[dict]:
    """Up to `count` images of the checkpoint's training split as the graph's input feeds (batches of
    the graph's batch size, or of one for a free batch)."""
    from detect.backends.onnxruntime_backend import load_onnxruntime
    from detect.data.build import build_dataset
    from detect.detections.eval_inputs import eval_transform, graph_inputs, prepared

    loaded = load_onnxruntime(float_onnx, "cpu")
    graph = loaded.model
    data_config = checkpoint_data_config(checkpoint, overrides)
    try:
        dataset = build_dataset(data_config.data, data_config.data.train_split, training=False)
    except DetectError as error:
        raise DetectError(f"--int8 calibrates on the training split of the checkpoint's data: {error} (point at it "
                          f"with --set data.root=...)") from None
    picks = np.random.default_rng(CALIBRATION_SEED).permutation(len(dataset))[:count]
    transform = eval_transform(loaded.config)
    step = graph.batch_size or 1
    feeds = []
    for start in range(0, len(picks) - step + 1, step):
        images = [dataset[int(index)][0] for index in picks[start:start + step]]
        batch, image_sizes, _ = graph_inputs([prepared(image, transform) for image in images], loaded.config.input)
        batch = F.pad(batch, (0, graph.width - batch.shape[3], 0, graph.height - batch.shape[2]))
        feeds.append({"images": batch.numpy(), "image_sizes": image_sizes.numpy().astype(np.int64),
                      "scales": np.ones((len(images), 2), np.float32)})
    if not feeds:
        raise DetectError(f"--int8: the training split has {len(dataset)} images, fewer than the graph's batch of "
                          f"{step}")
    return feeds


def checkpoint_data_config(checkpoint: str | Path, overrides=()):
    """The checkpoint's own config with `overrides` (detect/data/model_file_config.py)."""
    from detect.checkpoints import config_from_checkpoint, load_checkpoint
    from detect.data.model_file_config import model_file_config

    checkpoint = Path(checkpoint)
    return model_file_config(config_from_checkpoint(load_checkpoint(checkpoint), checkpoint), overrides, checkpoint)


# ---------------------------------------------------------------------------------------------------
# onnxruntime


def quantize_onnx(float_onnx: Path, output: Path, feeds: list[dict]) -> dict:
    """Static QDQ quantization of QUANTIZED_ONNX_OPS; returns {"int8": nodes quantized, "quantizable":
    nodes of those types}."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(feeds)

        def get_next(self):
            return next(self.remaining, None)

    with tempfile.TemporaryDirectory(prefix="detect-quantize-") as folder:
        prepared, staged = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        try:
            # Constant folding and shape inference first, as onnxruntime's quantizer expects.
            quant_pre_process(str(float_onnx), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(staged), Feeds(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=list(QUANTIZED_ONNX_OPS))
        except Exception as error:  # noqa: BLE001 - the quantizer raises whatever its passes raise
            raise DetectError(f"onnxruntime cannot quantize this model: {first_line(error)}; nothing written") from None
        quantized = onnx.load(str(staged))
        copy_metadata(float_onnx, quantized)
        onnx.save(quantized, str(staged))
        check_runs_onnx(staged, feeds[0])
        layers = count_quantized_onnx(onnx.load(str(float_onnx)), quantized)
        shutil.move(staged, output)  # the temporary folder may be on another file system
    return layers


def copy_metadata(float_onnx: Path, quantized) -> None:
    """The float model's metadata (class names, config, ...) on the quantized one, with its precision."""
    import onnx

    del quantized.metadata_props[:]
    for prop in onnx.load(str(float_onnx), load_external_data=False).metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key="precision", value="int8")


def count_quantized_onnx(float_model, quantized) -> dict:
    """Nodes of QUANTIZED_ONNX_OPS in the float graph, and how many of them read a dequantized weight."""
    quantizable = sum(node.op_type in QUANTIZED_ONNX_OPS for node in float_model.graph.node)
    dequantized = {out for node in quantized.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    int8 = sum(node.op_type in QUANTIZED_ONNX_OPS and len(node.input) > 1 and node.input[1] in dequantized
               for node in quantized.graph.node)
    return {"int8": int8, "quantizable": quantizable}


def check_runs_onnx(path: Path, feed: dict) -> None:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(None, feed)
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types
        raise DetectError(f"onnxruntime cannot run the quantized model: {first_line(error)}; nothing written") from None


# ---------------------------------------------------------------------------------------------------
# OpenVINO


def quantize_openvino(float_onnx: Path, output: Path, feeds: list[dict]) -> dict:
    """NNCF post-training quantization, POSTPROCESS and FLOAT_OPS left out; returns {"int8": layers
    quantized, "quantizable": convolutions and matrix products}."""
    from detect.backends.openvino_backend import OpenVinoModel, require_openvino
    from detect.export.openvino import move_ir, save_ir

    openvino = require_openvino()
    # NNCF imports torch's C++-extension helper, whose CUDA_HOME notice means nothing to an export.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise DetectError("--int8 with --format openvino needs NNCF: pip install -e '.[openvino]'") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # Its own logger only: nncf.set_log_level would also set the level of every handler on that logger,
    # and those can be handlers the application installed.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = openvino.convert_model(str(float_onnx))
    ranges = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    try:
        quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), advanced_parameters=ranges,
                                  ignored_scope=nncf.IgnoredScope(patterns=[POSTPROCESS], types=FLOAT_OPS,
                                                                  validate=False))
    except Exception as error:  # noqa: BLE001 - NNCF raises whatever its passes raise
        raise DetectError(f"NNCF cannot quantize this model: {first_line(error)}; nothing written") from None
    quantized.set_rt_info("int8", ["detect", "precision"])
    with tempfile.TemporaryDirectory(prefix="detect-quantize-") as folder:
        # Checked as written: saving compresses the quantized weights to int8, and it is that file which
        # must run (the in-memory model may not compile).
        staged = Path(folder) / output.name
        save_ir(float_onnx, staged, model=quantized)
        try:
            OpenVinoModel(staged).run_graph(feeds[0])
        except Exception as error:  # noqa: BLE001 - OpenVINO's RuntimeError subclasses
            raise DetectError(f"OpenVINO cannot run the quantized model: {reason_line(error)}; nothing "
                              f"written") from None
        move_ir(staged, output)
    return count_quantized_openvino(quantized)


def count_quantized_openvino(model) -> dict:
    """Convolutions and matrix products, and how many of them take a FakeQuantize'd input."""
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    layers = [op for op in model.get_ops() if op.get_type_name() in kinds]
    int8 = sum(any(value.get_node().get_type_name() in ("FakeQuantize", "Convert") for value in
                   (source.get_source_output() for source in op.inputs()))
               for op in layers)
    return {"int8": int8, "quantizable": len(layers)}
