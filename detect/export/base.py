"""What every export format shares: the registry it joins.

An exporter is registered under its `--format` name with the file suffix it writes:

    @EXPORTERS.register("onnx")
    def export_onnx(checkpoint, output, **options) -> dict: ...
    EXPORT_SUFFIXES["onnx"] = ".onnx"
"""

from __future__ import annotations

from detect.registry import Registry

EXPORTERS = Registry("export format", "--format")
EXPORT_SUFFIXES: dict[str, str] = {}
