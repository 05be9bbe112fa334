"""Training and validation parts drawn from one split, for datasets that come without a validation split.

With `data.val_fraction` (or `data.split_lists`), the images of `data.train_split` are the pool: a
seeded, stratified share of them becomes the validation part, named `data.val_split`, and the rest
the training part. The draw only reads the annotations (the classes of each image), never the pixels.

A split list is a text file of image keys, one per line: `str(image_id)` as the format gives it (VOC:
the id in ImageSets or the image's path below its split folder without extension; COCO: the image id;
YOLO: the image's path below the dataset folder without extension). A lists folder holds `train.txt`
and `val.txt`. A training run writes the lists it used into `<run>/splits/` and records that folder as
`data.split_lists`, so `--resume` and `detect eval` of its checkpoints score the same images even
after images were added to the dataset; `detect data split` writes them for a dataset.

    draw_split(label_sets, val_fraction, seed) -> is_val bool [N]
    split_part(pool, data_cfg, split) -> the dataset of part `split` (the train or val split's name)
    write_split_lists(folder, train_keys, val_keys); read_split_list(path) -> keys
    run_split_lists(run_folder, saved_data) -> the lists folder a run wrote, or None
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np

from detect.data.dataset import DetectionDataset
from detect.data.problems import ProblemLog
from detect.errors import DataError
from detect.outputs import atomic_output
from detect.tables import markdown_table
from detect.text_files import MAX_LIST_FILE_BYTES, read_lines

LIST_FILES = {"train": "train.txt", "val": "val.txt"}
SPLITS_FOLDER = "splits"  # a run folder's lists


def draws_splits(data_cfg) -> bool:
    """Whether the train and val splits are parts of the training split (drawn, or read from lists)."""
    return data_cfg.val_fraction is not None or data_cfg.split_lists is not None


def part_name(data_cfg, split: str) -> str | None:
    """"train" or "val" when `split` is one of the drawn parts, else None (e.g. a test split read as is)."""
    if not draws_splits(data_cfg):
        return None
    if split == data_cfg.val_split:
        return "val"
    return "train" if split == data_cfg.train_split else None


def image_keys(dataset: DetectionDataset) -> list[str]:
    """Each sample's key (see the module docstring); a DataError when two samples share one."""
    keys = [str(sample.image_id) for sample in dataset.samples]
    repeated = [key for key, count in Counter(keys).items() if count > 1]
    if repeated:
        raise DataError(f"{dataset.source}: image id '{repeated[0]}' names {Counter(keys)[repeated[0]]} images; "
                        f"split lists need one image per id")
    return keys


def draw_split(label_sets: list[set[int]], val_fraction: float, seed: int) -> np.ndarray:
    """bool [N]: which images go to the validation part.

    Stratified by class: images are placed rarest class first, each into the part further below its
    share of that class; every class with at least 2 images is wanted in both parts (a repair pass
    moves an image where the placement left a part without it, unless that empties another class
    from the part it leaves). Images without objects fill the parts toward `val_fraction` overall.
    The same labels, fraction and seed always give the same parts."""
    count = len(label_sets)
    if count < 2:
        raise DataError(f"{count} image(s): a validation part needs at least 2 images to draw from")
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    images_of = Counter(label for labels in label_sets for label in labels)
    wanted_val = {label: _wanted_val(n, val_fraction) for label, n in images_of.items()}
    in_val, in_train = Counter(), Counter()
    is_val = np.zeros(count, dtype=bool)
    labelled = [i for i in order if label_sets[i]]
    labelled.sort(key=lambda i: min(images_of[label] for label in label_sets[i]))  # stable: ties stay random
    wanted_total = min(max(round(val_fraction * count), 1), count - 1)
    placed = Counter()  # images placed so far in each part
    for i in labelled:
        rarest = min(label_sets[i], key=lambda label: (images_of[label], label))
        val_gap = wanted_val[rarest] - in_val[rarest]
        train_gap = images_of[rarest] - wanted_val[rarest] - in_train[rarest]
        if val_gap == train_gap:  # a tie: the part further below its overall share
            val_gap, train_gap = wanted_total - placed[True], count - wanted_total - placed[False]
        is_val[i] = val_gap > train_gap
        placed[bool(is_val[i])] += 1
        (in_val if is_val[i] else in_train).update(label_sets[i])
    _repair(label_sets, is_val, images_of, in_val, in_train, order)
    for i in (i for i in order if not label_sets[i]):
        is_val[i] = int(is_val.sum()) < wanted_total
    return is_val


def _wanted_val(num_images: int, val_fraction: float) -> float:
    """The images of a class wanted in val: its share, at least 1 and at most all but 1 (for 2 or more)."""
    if num_images < 2:
        return val_fraction * num_images
    return min(max(val_fraction * num_images, 1.0), num_images - 1.0)


def _repair(label_sets, is_val, images_of, in_val, in_train, order) -> None:
    """Moves an image into a part that lacks a class of 2 or more images, where the move empties no
    other class from the part the image leaves."""
    for label in sorted(images_of, key=lambda label: (images_of[label], label)):
        if images_of[label] < 2:
            continue
        for to_val, here, there in ((True, in_val, in_train), (False, in_train, in_val)):
            if here[label] > 0:
                continue
            for i in order:
                if label in label_sets[i] and is_val[i] != to_val and all(
                        there[other] > 1 or images_of[other] < 2 for other in label_sets[i]):
                    is_val[i] = to_val
                    here.update(label_sets[i])
                    there.subtract(label_sets[i])
                    break


def drawn_keys(pool: DetectionDataset, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train keys, val keys) drawn from the pool's samples (see draw_split)."""
    keys = image_keys(pool)
    label_sets = [set(int(label) for label in sample.labels) for sample in pool.samples]
    try:
        is_val = draw_split(label_sets, val_fraction, seed)
    except DataError as error:
        raise DataError(f"{pool.source}: {error}") from None
    return [k for k, v in zip(keys, is_val) if not v], [k for k, v in zip(keys, is_val) if v]


def split_part(pool: DetectionDataset, data_cfg, split: str) -> DetectionDataset:
    """The part of the pool (the training split as read) that `split` names: from the lists in
    data.split_lists when set, else drawn with data.val_fraction and data.split_seed.

    Problems found while the pool's annotations were parsed stay with the training part only, so a
    run reports each of them once."""
    part = part_name(data_cfg, split)
    if data_cfg.split_lists is not None:
        list_file = Path(data_cfg.split_lists) / LIST_FILES[part]
        keys = read_split_list(list_file)
        other_file = Path(data_cfg.split_lists) / LIST_FILES["train" if part == "val" else "val"]
        shared = set(keys) & set(read_split_list(other_file))
        if shared:
            raise DataError(f"{list_file}: {len(shared)} image(s) are also in {other_file} (first: "
                            f"'{sorted(shared)[0]}'); a model scored on images it trained on has no honest mAP")
    else:
        train_keys, val_keys = drawn_keys(pool, data_cfg.val_fraction, data_cfg.split_seed)
        keys, list_file = (val_keys if part == "val" else train_keys), None
    return subset(pool, keys, split, list_file, keep_log=part == "train")


def subset(pool: DetectionDataset, keys: list[str], split: str, list_file: Path | None,
           keep_log: bool) -> DetectionDataset:
    """A copy of `pool` holding the samples of `keys`, in that order; a listed key the pool lacks is a
    DataError naming the list file and line."""
    by_key = dict(zip(image_keys(pool), pool.samples))
    for number, key in enumerate(keys, start=1):
        if key not in by_key:
            missing = sum(k not in by_key for k in keys)
            raise DataError(f"{list_file}: line {number}: image '{key}' is not in the training split "
                            f"'{pool.split}' ({missing} listed image(s) missing)")
    part = copy.copy(pool)
    part.samples = [by_key[key] for key in keys]
    part.split = split
    if list_file is not None:
        part.source_files = [*pool.source_files, list_file]
    if not keep_log:
        part.log = ProblemLog(pool.on_error)
    if len(part) == 0:
        raise part.empty_split_error(split)
    return part


def read_split_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: split list not found (data.split_lists names a folder holding train.txt and "
                        f"val.txt; detect data split -o writes them)")
    keys = [line.strip() for line in read_lines(path, "split list", MAX_LIST_FILE_BYTES) if line.strip()]
    repeated = [key for key, count in Counter(keys).items() if count > 1]
    if repeated:
        raise DataError(f"{path}: image '{repeated[0]}' is listed {Counter(keys)[repeated[0]]} times")
    return keys


def write_split_lists(folder: Path, train_keys: list[str], val_keys: list[str]) -> None:
    """Both lists, or neither: each is written to a temporary file first, and both are renamed into
    place only when both are whole."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(folder / LIST_FILES["train"]) as train_file, \
            atomic_output(folder / LIST_FILES["val"]) as val_file:
        train_file.write_text("".join(f"{key}\n" for key in train_keys))
        val_file.write_text("".join(f"{key}\n" for key in val_keys))


def run_split_lists(run_folder: Path, saved_data: dict) -> Path | None:
    """The lists a run drew its parts into: its folder's splits/ (which travels with the folder), else
    the folder its saved config's data.split_lists names; None when neither holds them."""
    for folder in (Path(run_folder) / SPLITS_FOLDER, saved_data.get("split_lists")):
        if folder is not None and all((Path(folder) / name).is_file() for name in LIST_FILES.values()):
            return Path(folder)
    return None


def split_table(pool: DetectionDataset, train_keys: list[str], val_keys: list[str]) -> str:
    """Images per class in each part, as a markdown table (what `detect data split` prints)."""
    labels_of = dict(zip(image_keys(pool), (set(int(label) for label in s.labels) for s in pool.samples)))
    rows = [("class", "train images", "val images")]
    for label, name in enumerate(pool.class_names, start=1):
        rows.append((name, str(sum(label in labels_of[k] for k in train_keys)),
                     str(sum(label in labels_of[k] for k in val_keys))))
    rows.append(("**all**", str(len(train_keys)), str(len(val_keys))))
    return "\n".join(markdown_table(rows))
