"""The raw detection dataset shared by the VOC and COCO loaders.

A loader parses its annotation files into `Sample`s (boxes already in the pipeline's xyxy pixels);
`DetectionDataset` reads the pixels, checks the boxes against the real image, and returns the raw
item of the data contract:

    image:  uint8 RGB numpy [H, W, 3]
    target: boxes float32 [N, 4] (xyxy, original pixels), labels int64 [N] (1..C),
            difficult bool [N], iscrowd bool [N], image_id (VOC: file stem str; COCO: int),
            orig_size int64 [2] (h, w)

Bad samples under `on_error: skip`: `__getitem__` returns the next readable sample instead (so a
DataLoader worker never hands the collate a hole and batches keep their size), and records the
problem in `self.problems` (per process: `data check` scans in the main process and sees them all).
So that the main process can report what a worker skipped, the returned target then carries
`skipped`: [(file, message), ...] of the samples skipped in its place (see `skipped_in`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from detect.data.image_header import DEFAULT_MAX_PIXELS, file_header_size
from detect.data.image_io import MAX_MISSING_SHARE, read_image, warn_once
from detect.data.problems import Problem, ProblemLog
from detect.errors import DataError

SKIPPED = "skipped"  # target key: [(file, message), ...] of samples skipped in place of this one


def skipped_in(targets) -> list[tuple[str, str]]:
    """The (file, message) of every sample skipped in place of these targets (on_error: skip)."""
    return [tuple(entry) for target in targets for entry in target.get(SKIPPED, ())]


@dataclass
class Sample:
    """One image and its objects, as parsed from the annotation files."""

    image_path: Path
    source: str  # what to name in an object's problem: the XML file, or the JSON file and image
    image_id: str | int
    boxes: np.ndarray  # float32 [N, 4] xyxy pixels
    labels: np.ndarray  # int64 [N], 1..C
    difficult: np.ndarray  # bool [N]
    iscrowd: np.ndarray  # bool [N]
    annotated_size: tuple[int, int] | None = None  # (h, w) the annotation claims, if it does

    def image_size(self) -> tuple[int, int]:
        """(height, width) without decoding the image: the annotation's, else the image file header's."""
        if self.annotated_size is not None:
            return tuple(int(v) for v in self.annotated_size)
        try:
            size = file_header_size(self.image_path)
        except OSError:
            size = None
        if size is None:
            raise DataError(f"{self.image_path}: its size cannot be read from its header")
        return size[2], size[1]


class DetectionDataset(torch.utils.data.Dataset):
    """Raw (untransformed) items from a list of samples; see the module docstring for the item."""

    # data.max_missing_share: how much of a JPEG without its end marker may be missing (image_io.py)
    max_missing_share: float = MAX_MISSING_SHARE
    # data.max_pixels: the most pixels an image's header may declare (image_header.py)
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __init__(
        self,
        samples: list[Sample],
        class_names: list[str],
        log: ProblemLog,
        keep_difficult: bool = True,
    ) -> None:
        self.samples = samples
        self.class_names = list(class_names)
        self.source_files: list[Path] = []  # the split's list files (VOC) or annotation file (COCO)
        self.log = log
        # False for training targets: VOC trains without the objects marked difficult by default.
        self.keep_difficult = keep_difficult
        # (image, the label file it would have) of images read without objects because that file is
        # missing (YOLO, flat VOC): the hint when a split has no objects at all
        self.unlabelled: list[tuple[Path, Path]] = []

    @property
    def source(self) -> str:
        """The files that define this split, for messages about the split as a whole."""
        return ", ".join(str(path) for path in self.source_files) or "dataset"

    def empty_split_error(self, split: str) -> DataError:
        """The one-line error for a split without a single usable image."""
        where = self.source
        skipped = self.log.num_errors
        hint = (f" ({skipped} problems left out under data.on_error: skip; detect data check lists them)"
                if skipped else "")
        return DataError(f"{where}: split '{split}' has no images{hint}")

    def no_objects_error(self, split: str) -> DataError | None:
        """The one-line error for a split whose images hold not one object (training on it learns
        nothing, scoring it means nothing); None when it has objects, or no images at all."""
        if not self.samples or any(len(sample.labels) for sample in self.samples):
            return None
        hint = ""
        if self.unlabelled and len(self.unlabelled) == len(self.samples):
            image, label_file = self.unlabelled[0]
            hint = f": no image has a label file (the labels of {image} would be in {label_file})"
        elif self.log.num_errors:
            hint = (f" ({self.log.num_errors} problems left out under data.on_error: skip; detect data check "
                    "lists them)")
        return DataError(f"{self.source}: split '{split}' has {len(self.samples)} images and not one object{hint}")

    def report_unlabelled(self, where: Path) -> None:
        """A warning with the count when some (not all) images have no label file."""
        if self.unlabelled and len(self.unlabelled) < len(self.samples):
            image, label_file = self.unlabelled[0]
            self.log.warning(where, f"{len(self.unlabelled)} of {len(self.samples)} images have no label file and are "
                                    f"read as images without objects (e.g. {image}: no {label_file})", "missing_label")

    @property
    def on_error(self) -> Literal["raise", "skip"]:
        return self.log.on_error

    @property
    def problems(self) -> list[Problem]:
        return self.log.problems

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict]:
        if self.on_error == "raise":
            return self.load(index)
        skipped = []
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            try:
                image, target = self.load(position)
            except DataError as error:
                problem = self.record_unreadable(position, error)
                skipped.append((problem.file, problem.message))
                continue
            if skipped:
                target[SKIPPED] = skipped
            return image, target
        raise DataError(f"no readable image among the {len(self.samples)} samples of this dataset")

    def record_unreadable(self, index: int, error: DataError) -> Problem:
        path = str(self.samples[index].image_path)
        message = str(error).removeprefix(f"{path}: ")
        problem = Problem(path, message, "error", "unreadable_image")
        self.log.add(problem)
        return problem

    def record_truncated(self, path: Path, message: str) -> None:
        """A JPEG read although it lacks its last bytes: a warning in the log, and among the problems."""
        warn_once(message)
        self.log.warning(path, message.removeprefix(f"{path}: "), "truncated_image")

    def load(self, index: int) -> tuple[np.ndarray, dict]:
        """Reads sample `index`; DataError when its image cannot be used (whatever on_error says)."""
        sample = self.samples[index]
        image = read_image(sample.image_path, self.max_missing_share,
                           warn=lambda message: self.record_truncated(sample.image_path, message),
                           max_pixels=self.max_pixels)
        height, width = image.shape[:2]
        if sample.annotated_size is not None and tuple(sample.annotated_size) != (height, width):
            self.log.warning(
                sample.source,
                f"annotated size {sample.annotated_size[1]}x{sample.annotated_size[0]} (w x h) differs from "
                f"the image's {width}x{height} ({sample.image_path.name}); using the image's",
                "size_mismatch",
            )
        boxes, keep = self.clip_boxes(sample, width, height)
        if not self.keep_difficult:
            keep &= ~sample.difficult
        target = {
            "boxes": boxes[keep],
            "labels": sample.labels[keep],
            "difficult": sample.difficult[keep],
            "iscrowd": sample.iscrowd[keep],
            "image_id": sample.image_id,
            "orig_size": np.array([height, width], dtype=np.int64),
        }
        return image, target

    def clip_boxes(self, sample: Sample, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample's boxes clipped to the image (each clip reported) and a mask of those to keep."""
        boxes = sample.boxes
        clipped = boxes.copy()
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        for i in np.flatnonzero((clipped != boxes).any(axis=1)):
            where = f"object {i} box {_fmt_box(boxes[i])} ({sample.image_path.name})"
            if keep[i]:
                self.log.warning(
                    sample.source, f"{where} extends outside the {width}x{height} image; clipped", "clipped_box")
            else:
                self.log.error(sample.source, f"{where} lies outside the {width}x{height} image", "box_outside")
        return clipped, keep

    def scan(self):
        """Yields (index, target or None) for every sample, recording every problem (for data check)."""
        for index in range(len(self.samples)):
            try:
                yield index, self.load(index)[1]
            except DataError as error:
                if self.on_error == "raise":
                    raise
                self.record_unreadable(index, error)
                yield index, None


def _fmt_box(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{value:g}" for value in box.tolist()) + ")"
