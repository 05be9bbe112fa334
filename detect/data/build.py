"""`build_dataset(data_cfg, split)`: the config's `data` section -> a raw detection dataset."""

from __future__ import annotations

from pathlib import Path

from detect.config import DataConfig
from detect.data.coco import COCODataset
from detect.data.dataset import DetectionDataset
from detect.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic
from detect.data.voc import VOCDataset
from detect.errors import DataError


def build_dataset(data_cfg: DataConfig, split: str, training: bool = False) -> DetectionDataset:
    """The raw dataset of `split` (e.g. data_cfg.train_split).

    `training=True` leaves VOC `difficult` objects out of the targets unless `data.use_difficult`;
    evaluation datasets keep them (flagged) so the VOC metric can ignore them.
    """
    dataset = _build(data_cfg, split, keep_difficult=data_cfg.use_difficult or not training)
    dataset.max_missing_share = data_cfg.max_missing_share
    dataset.max_pixels = data_cfg.max_pixels
    return dataset


def _build(data_cfg: DataConfig, split: str, keep_difficult: bool) -> DetectionDataset:
    if data_cfg.format == "coco":
        return COCODataset(
            data_cfg.root, split, classes=data_cfg.classes, image_dir=data_cfg.image_dir, on_error=data_cfg.on_error
        )
    classes = data_cfg.classes
    if data_cfg.format == "synthetic":
        ensure_synthetic(data_cfg)
        classes = classes or list(SYNTHETIC_CLASSES)
    return VOCDataset(
        data_cfg.root,
        split,
        classes=classes,
        unknown_class=data_cfg.unknown_class,
        on_error=data_cfg.on_error,
        keep_difficult=keep_difficult,
    )


def with_class_names(data_cfg: DataConfig, train_dataset: DetectionDataset | None = None) -> DataConfig:
    """`data_cfg` with `classes` filled in: as given, or derived once from the training split.

    Every split must use the same list: a validation split derived on its own (VOC: the names found in
    its XML, sorted) lacks the classes it has no objects of, and every later label would shift. Pass
    the already built `train_dataset` to save reading the annotations twice.
    """
    if data_cfg.classes is not None:
        return data_cfg
    if train_dataset is None:
        try:
            train_dataset = build_dataset(data_cfg, data_cfg.train_split, training=True)
        except DataError as error:
            raise DataError(f"{error} (data.classes: null takes the class names from the training split "
                            f"'{data_cfg.train_split}'; set data.classes)") from None
    if len(train_dataset) == 0:
        raise train_dataset.empty_split_error(data_cfg.train_split)
    names = list(train_dataset.class_names)
    if not names:
        raise DataError(f"{data_cfg.root}: no class names found in the training split '{data_cfg.train_split}' "
                        f"(no objects); set data.classes")
    return data_cfg.model_copy(update={"classes": names})


def ensure_synthetic(data_cfg: DataConfig) -> None:
    """Generates the synthetic dataset (VOC layout) in `data.root` unless one is already there."""
    root = Path(data_cfg.root)
    if (root / "ImageSets" / "Main").is_dir() and (root / "Annotations").is_dir():
        return
    synth = data_cfg.synth
    generate_synthetic(
        root, format="voc", num_images=synth.num_images, image_size=synth.image_size, seed=synth.seed,
        val_fraction=synth.val_fraction,
    )
