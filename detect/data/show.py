"""`detect data show`: augmented training samples as pixels (uint8, or de-normalized float), with their boxes,
in one grid image."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from detect.config import Config
from detect.data.normalize import to_pixels
from detect.draw import draw_boxes, make_grid
from detect.errors import DataError
from detect.outputs import refuse_overwrite, writable_image


def show_samples(cfg: Config, split: str, num: int, out: Path, seed: int = 0, train: bool = True,
                 raw_dataset=None) -> Path:
    """Draws `num` samples of `split` through the training (or eval) pipeline into a PNG at `out`."""
    from detect.data.transforms import build_transforms

    if raw_dataset is None:
        from detect.data.build import build_dataset

        raw_dataset = build_dataset(cfg.data, split, training=train)
    if len(raw_dataset) == 0:
        raise DataError(f"split '{split}' of {cfg.data.root} has no images")
    transforms = build_transforms(cfg.input, cfg.augment, train=train)
    transforms.set_seed(seed)
    indices = np.random.default_rng(seed).permutation(len(raw_dataset))[:num]
    tiles = []
    for index in indices.tolist():
        image, target = transforms(*raw_dataset[index])
        h, w = target["image_size"].tolist()
        picture = to_pixels(image[:, :h, :w], cfg.input.mean, cfg.input.std).permute(1, 2, 0).contiguous().numpy()
        tiles.append(draw_boxes(picture, target["boxes"].numpy(), target["labels"].numpy(), raw_dataset.class_names))
    grid = make_grid(tiles, columns=math.ceil(math.sqrt(len(tiles))))
    out = Path(out)
    refuse_overwrite("--out", [out], input_files(raw_dataset))
    writable_image("--out", out)  # a drawing replaces only an earlier drawing, never a checkpoint or a log
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise DataError(f"{out}: cannot write the image (is the extension .png or .jpg?)")
    return out


def input_files(raw_dataset) -> list[Path]:
    """The dataset's files (images, annotation files, split lists): `--out` must not replace one."""
    samples = getattr(raw_dataset, "samples", [])
    return [*getattr(raw_dataset, "source_files", []), *(sample.image_path for sample in samples),
            *(Path(sample.source) for sample in samples)]
