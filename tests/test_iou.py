"""detect/iou.py: every IoU the package uses, against torchvision's box_iou and against each other."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou as torchvision_box_iou

from detect.iou import box_iou, coco_paired_iou, iou_matrix, paired_iou


def _random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    corners = torch.rand(count, 2, generator=generator) * 100
    sizes = torch.rand(count, 2, generator=generator) * 50 + 1
    return torch.cat([corners, corners + sizes], dim=1)


def test_box_iou_equals_torchvision_with_batch_dims_and_broadcasting():
    generator = torch.Generator().manual_seed(3)
    first, second = _random_boxes(30, generator).reshape(2, 15, 4), _random_boxes(14, generator).reshape(2, 7, 4)
    iou = box_iou(first, second)
    assert iou.shape == (2, 15, 7)
    for i in range(2):
        torch.testing.assert_close(iou[i], torchvision_box_iou(first[i], second[i]))
    shared = _random_boxes(9, generator)  # SSD's default boxes: one set for the whole batch
    torch.testing.assert_close(box_iou(shared[None], second)[1], torchvision_box_iou(shared, second[1]))


def test_box_iou_of_empty_boxes_is_zero():
    empty = torch.zeros(1, 2, 4)
    assert torch.equal(box_iou(empty, empty), torch.zeros(1, 2, 2))



def test_numpy_iou_matrix_equals_torchvision_and_its_diagonal_is_paired_iou():
    generator = torch.Generator().manual_seed(5)
    first, second = _random_boxes(12, generator), _random_boxes(12, generator)
    matrix = iou_matrix(first.numpy(), second.numpy())
    assert matrix.dtype == np.float64 and matrix.shape == (12, 12)
    np.testing.assert_allclose(matrix, torchvision_box_iou(first.double(), second.double()).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(paired_iou(first.numpy(), second.numpy()), np.diag(matrix))
    assert iou_matrix(np.zeros((0, 4)), second.numpy()).shape == (0, 12)
    assert paired_iou(np.zeros((1, 4)), np.zeros((1, 4))).tolist() == [0.0]  # an empty union


def test_coco_iou_takes_xywh_and_a_crowd_regions_union_is_the_detections_area():
    detection = np.array([[10.0, 10.0, 10.0, 10.0]])  # x, y, w, h
    region = np.array([[0.0, 0.0, 100.0, 100.0]])
    assert coco_paired_iou(detection, region, np.array([False])).tolist() == [0.01]
    assert coco_paired_iou(detection, region, np.array([True])).tolist() == [1.0]
    xyxy = np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([[15.0, 12.0, 40.0, 30.0]])
    xywh = [np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) for b in xyxy]
    np.testing.assert_allclose(coco_paired_iou(*xywh, np.array([False])), paired_iou(*xyxy), rtol=1e-12)
