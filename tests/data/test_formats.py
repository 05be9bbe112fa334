"""The dataset format registry: every `data.format` the config allows has a builder and nothing else does;
an unknown name is one line listing the formats; each builder reads its own layout."""

from __future__ import annotations

import typing

import pytest

from detect.config import DataConfig
from detect.data.build import build_dataset
from detect.data.formats import DATASET_FORMATS
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.errors import DetectError


def test_the_registry_holds_exactly_the_formats_the_config_allows():
    allowed = typing.get_args(DataConfig.model_fields["format"].annotation)
    assert sorted(DATASET_FORMATS) == sorted(allowed)


def test_an_unknown_format_is_one_line_naming_the_formats():
    data_cfg = DataConfig.model_construct(**{**DataConfig().__dict__, "format": "tfrecord"})  # past the config's check
    formats = ", ".join(sorted(DATASET_FORMATS))
    assert {"coco", "synthetic", "voc"} <= set(DATASET_FORMATS)
    with pytest.raises(DetectError, match=rf"^data.format tfrecord: unknown dataset format; choose from {formats}$"):
        build_dataset(data_cfg, "train")


@pytest.mark.parametrize("layout", ["voc", "coco"])
def test_each_format_reads_the_same_generated_images_with_the_same_boxes(tmp_path, layout):
    """The synthetic data written in either layout reads back with the same sizes, labels and boxes (VOC's
    1-based corners and COCO's xywh both end as the same xyxy pixels)."""
    generate_synthetic(tmp_path / layout, format=layout, num_images=6, image_size=64, seed=3)
    dataset = build_dataset(DataConfig(format=layout, root=str(tmp_path / layout), classes=SYNTHETIC_CLASSES),
                            "train")
    reference = build_dataset(DataConfig(format="synthetic", root=str(tmp_path / "synth"),
                                         synth={"num_images": 6, "image_size": 64, "seed": 3}), "train")
    assert reference.class_names == SYNTHETIC_CLASSES and len(dataset) == len(reference) > 0
    for ours, theirs in zip(dataset.samples, reference.samples, strict=True):
        assert (ours.labels.tolist(), ours.boxes.tolist()) == (theirs.labels.tolist(), theirs.boxes.tolist())
