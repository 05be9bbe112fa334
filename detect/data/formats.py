"""The dataset formats, by `data.format`: each format's module registers how it builds a split.

    @DATASET_FORMATS.register("voc")
    def build_voc(data_cfg, split, keep_difficult) -> DetectionDataset: ...

`data_cfg` is the config's `data` section (detect.config.DataConfig); `keep_difficult` keeps objects
marked difficult in the targets (flagged), as evaluation needs. detect/data/build.py imports every
format's module, so all are present wherever datasets are built; a test keeps this registry and the
config's allowed `data.format` values equal.
"""

from __future__ import annotations

from detect.registry import Registry

DATASET_FORMATS = Registry("dataset format", "data.format")
