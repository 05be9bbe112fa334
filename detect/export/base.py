"""What every export format shares: the registry it joins.

An exporter is registered under its `--format` name with the file suffix it writes:

    @EXPORTERS.register("onnx")
    def export_onnx(checkpoint, output, **options) -> dict: ...   # {"summary": what was written, ...}
    EXPORT_SUFFIXES["onnx"] = ".onnx"

`options` are those of `detect export` (opset, dynamic_batch, image_size, batch_size); a format takes
the ones it has a use for. The returned "summary" is the line printed after "wrote <file>:".
"""

from __future__ import annotations

from detect.registry import Registry

EXPORTERS = Registry("export format", "--format")
EXPORT_SUFFIXES: dict[str, str] = {}
