"""Export formats, one module each, registered in EXPORTERS (detect/export/base.py); `detect export
--format NAME` picks one: `onnx` (the model with its postprocess, NMS included: onnx.py), `openvino`
(that graph as OpenVINO IR: openvino.py) and `tensorrt` (an engine built from it on a GPU machine:
tensorrt.py). `--int8` quantizes the onnx and openvino graphs (int8.py; its report: detect/evaluation/int8_report.py). A
new format is one module here that registers itself, and its name in the import below. load.py loads any
model file for the commands that run one, exporting a checkpoint first for a graph runtime.
"""

from detect.export import onnx, openvino, tensorrt  # noqa: F401 - they register themselves
from detect.export.base import EXPORT_SUFFIXES, EXPORTERS
from detect.export.load import load_model_file
from detect.export.onnx import export_input_size, export_model, export_onnx, parse_image_size

__all__ = ["EXPORTERS", "EXPORT_SUFFIXES", "export_input_size", "export_model", "export_onnx", "load_model_file",
           "parse_image_size"]
