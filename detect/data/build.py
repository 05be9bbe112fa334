"""`build_dataset(data_cfg, split)`: the config's `data` section -> a raw detection dataset, built by the
format that `data.format` names (detect/data/formats.py)."""

from __future__ import annotations

from detect.config import DataConfig
from detect.data import coco, synthetic, voc, yolo  # noqa: F401 - each registers its format
from detect.data.dataset import DetectionDataset
from detect.data.formats import DATASET_FORMATS
from detect.data.splits import part_name, split_part
from detect.errors import DataError


def build_dataset(data_cfg: DataConfig, split: str, training: bool = False) -> DetectionDataset:
    """The raw dataset of `split` (e.g. data_cfg.train_split); with data.val_fraction or data.split_lists,
    the train and val splits are the parts of the training split that detect/data/splits.py chooses.

    `training=True` leaves VOC `difficult` objects out of the targets unless `data.use_difficult`;
    evaluation datasets keep them (flagged) so the VOC metric can ignore them.
    """
    keep_difficult = data_cfg.use_difficult or not training
    if part_name(data_cfg, split) is not None:  # a part drawn from the training split (detect/data/splits.py)
        dataset = split_part(build_split_pool(data_cfg, keep_difficult), data_cfg, split)
    else:
        dataset = DATASET_FORMATS.get(data_cfg.format)(data_cfg, split, keep_difficult)
    dataset.max_missing_share = data_cfg.max_missing_share
    dataset.max_pixels = data_cfg.max_pixels
    return dataset


def build_split_pool(data_cfg: DataConfig, keep_difficult: bool = True) -> DetectionDataset:
    """The training split as the format reads it, for a config with data.val_fraction or data.split_lists:
    the pool that the train and val parts come from (a VOC folder without split folders is read whole)."""
    return DATASET_FORMATS.get(data_cfg.format)(data_cfg, data_cfg.train_split, keep_difficult)


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
