"""OpenVINO IR export (`detect export --format openvino`): the ONNX graph of onnx.py (postprocess and
NMS inside), converted by OpenVINO's model converter and saved as model.xml + model.bin (fp32 weights,
not compressed to fp16). The ONNX metadata (class names, config, input size) travels in the IR's
rt_info under "detect", so the two files are all a deployment needs (detect/backends/openvino_backend.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from detect.backends.openvino_backend import METADATA_KEY, require_openvino
from detect.detections.graph import onnx_metadata
from detect.export.base import EXPORT_SUFFIXES, EXPORTERS
from detect.export.onnx import export_onnx

EXPORT_SUFFIXES["openvino"] = ".xml"


@EXPORTERS.register("openvino")
def export_openvino(checkpoint: str | Path, output: str | Path, opset: int = 17, dynamic_batch: bool = False,
                    image_size: tuple[int, int] | None = None, batch_size: int = 1) -> dict:
    """Write `output` (.xml) and its .bin beside it; returns export_onnx's info."""
    require_openvino()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="detect-openvino-") as folder:
        onnx_path = Path(folder) / "model.onnx"
        info = export_onnx(checkpoint, onnx_path, opset, dynamic_batch, image_size, batch_size)
        save_ir(onnx_path, output)
    info["summary"] = f"OpenVINO IR (weights in {output.with_suffix('.bin').name}), {info['summary']}"
    return info


def save_ir(onnx_path: Path, output: Path, model=None) -> None:
    """Convert `onnx_path` (or save the given converted `model`) to IR at `output`, with the ONNX file's
    metadata; both files appear at once or not at all (written beside, then renamed: .bin first)."""
    openvino = require_openvino()
    if model is None:
        model = openvino.convert_model(str(onnx_path))
    for key, value in onnx_metadata(onnx_path).items():
        model.set_rt_info(value, [METADATA_KEY, key])
    with tempfile.TemporaryDirectory(prefix="detect-ir-", dir=output.parent) as folder:
        staged = Path(folder) / output.name
        openvino.save_model(model, str(staged), compress_to_fp16=False)
        move_ir(staged, output)


def move_ir(staged: Path, output: Path) -> None:
    """An IR's two files to `output` (.xml) and its .bin: the weights first, so that an .xml never
    points at missing or stale weights."""
    shutil.move(staged.with_suffix(".bin"), output.with_suffix(".bin"))
    shutil.move(staged, output)
