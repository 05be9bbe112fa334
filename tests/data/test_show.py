"""`data show` writes a PNG grid; draw_boxes colours per class."""

from __future__ import annotations

import cv2
import numpy as np

from detect.config import Config, DataConfig, InputConfig
from detect.data.show import show_samples
from detect.draw import class_colour, draw_boxes
from tests.data.test_loader import TinyDataset


def test_data_show_writes_a_png(tmp_path):
    cfg = Config(data=DataConfig(), input=InputConfig(resize="fixed", size=64))
    out = show_samples(cfg, "train", num=4, out=tmp_path / "grid.png", raw_dataset=TinyDataset([(60, 80)] * 5))
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 64 and image.shape[1] > 64


def test_draw_boxes_draws_in_the_class_colour():
    image = np.zeros((100, 100, 3), np.uint8)
    drawn = draw_boxes(image, [[20, 30, 80, 90]], [2], ["a", "b"], scores=[0.9])
    assert tuple(drawn[60, 20]) == class_colour(2)  # on the left edge of the box
    assert image.sum() == 0  # the input is not drawn on
    assert class_colour(1) != class_colour(2)
