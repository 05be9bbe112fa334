"""Which files an export writes, and whether it may write them: never over one of its inputs, and never
over an existing file that is not an earlier export of the same format at the same place.

    files = export_files(format, target, int8)        [target, the files written beside it]
    check_export_target(format, target, int8, inputs) DetectError naming the option and the file

An export writes more than its model file: OpenVINO's weights (`model.bin` beside `model.xml`), the
metadata beside a TensorRT engine (`model.engine.json`), the INT8 report (`<model file>.json`). Each
of them is checked, so that `detect export DIR/pytorch_model.bin --format openvino` cannot write its
weights over the checkpoint it reads, and `--out notes.xml` cannot replace a user's XML file.
"""

from __future__ import annotations

import json
from pathlib import Path

from detect.errors import DetectError
from detect.export.base import EXPORT_SUFFIXES
from detect.outputs import same_file


def companion_files(format: str, target: Path) -> list[Path]:
    """The files `format` writes beside its model file `target`."""
    if format == "openvino":
        return [target.with_suffix(".bin")]
    if format == "tensorrt":
        return [target.with_name(target.name + ".json")]
    return []


def export_files(format: str, target: Path, int8: bool = False) -> list[Path]:
    """Every file `detect export --format FORMAT [--int8]` writes for the model file `target`."""
    files = [target, *companion_files(format, target)]
    if int8:
        files.append(target.with_name(target.name + ".json"))  # the float-against-INT8 report
    return files


def is_earlier_export(format: str, target: Path) -> bool:
    """True when `target` is a model file that `detect export --format FORMAT` wrote, with its companions:
    then a new export may replace them all."""
    if not target.is_file() or not all(path.is_file() for path in companion_files(format, target)):
        return False
    try:
        if format == "onnx":
            from detect.detections.graph import onnx_metadata

            return "class_names" in onnx_metadata(target)
        if format == "openvino":
            with target.open("rb") as stream:
                return b"<net " in stream.read(4096)
        if format == "tensorrt":
            return isinstance(json.loads(companion_files(format, target)[0].read_text()), dict)
    except Exception:  # whatever a foreign file makes a reader raise, it is not ours
        return False
    return False


def check_export_target(format: str, target: Path, int8: bool, inputs) -> None:
    """Before any work: `target` has the format's suffix, no file the export writes is one of `inputs`,
    and every one that exists belongs to an earlier export of this format at `target`."""
    files = export_files(format, target, int8)
    for path in files:
        for source in (Path(item) for item in inputs if item is not None):
            if same_file(path, source):
                written = f" (with {path.name}, written beside it)" if path != target else ""
                raise DetectError(f"--out {target}: would overwrite the input {source}{written}; choose another "
                                  "name")
    suffix = EXPORT_SUFFIXES[format]
    if target.suffix != suffix:
        raise DetectError(f"--out {target}: --format {format} writes a {suffix} file; give a name ending in "
                          f"{suffix}")
    existing = [path for path in files if path.exists() or path.is_symlink()]
    if existing and not is_earlier_export(format, target):
        raise DetectError(f"--out {target}: would replace {existing[0]}, which is not a model an earlier "
                          f"detect export --format {format} wrote there; choose another name")
