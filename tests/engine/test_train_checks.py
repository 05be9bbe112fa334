"""Training refuses what would give wrong numbers in silence: a resume with the classes in another
order, weights that are no longer finite (never saved, never loaded), and it reports what
`data.on_error: skip` left out."""

from __future__ import annotations

import json

import pytest
import torch

from detect.checkpoints import check_finite_weights, load_checkpoint
from detect.config import load_config
from detect.engine.checkpoint import save_checkpoint
from detect.engine.run import build_loaders
from detect.engine.train_state import NonFiniteLossError
from detect.errors import CheckpointError, DataError
from tests.data.conftest import write_voc
from tests.engine import doubles
from tests.engine.test_train import train


def test_resume_with_the_classes_in_another_order_is_refused(tmp_path):
    train(doubles.tiny_config(epochs=1), tmp_path)

    def reordered_loaders(config, distributed):
        loaders = doubles.build_loaders(config, distributed)
        for loader in loaders:
            loader.dataset.class_names = list(reversed(doubles.CLASS_NAMES))
        return loaders

    with pytest.raises(CheckpointError) as raised:
        train(doubles.tiny_config(epochs=2), tmp_path, loaders=reordered_loaders, resume="auto")
    message = str(raised.value)
    assert "cannot resume: its classes are red, green; this config's in another order" in message
    assert "\n" not in message
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # nothing was written over


class DivergingDetector(doubles.TinyDetector):
    """Its weights turn NaN inside the third training call (as after a blown-up gradient)."""

    def forward(self, images, image_sizes, targets=None):
        if targets is not None and self.calls == 2:
            with torch.no_grad():
                self.head.weight.fill_(float("nan"))
        return super().forward(images, image_sizes, targets)


def test_nonfinite_skip_never_saves_nonfinite_weights(tmp_path):
    config = doubles.tiny_config(epochs=1, nonfinite="skip")
    with pytest.raises(NonFiniteLossError) as raised:
        train(config, tmp_path, model=lambda config, num_classes: DivergingDetector(num_classes))
    message = str(raised.value)
    assert "weights are no longer finite" in message and "head.weight" in message and "\n" not in message
    for path in tmp_path.glob("*.pt"):
        check_finite_weights(load_checkpoint(path), path)  # whatever was written is finite


def test_a_checkpoint_with_nonfinite_weights_is_refused_on_resume(tmp_path):
    train(doubles.tiny_config(epochs=1), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    state["model"]["head.bias"][0] = float("inf")
    save_checkpoint(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as raised:
        train(doubles.tiny_config(epochs=2), tmp_path, resume="auto")
    assert "1 model weight tensor(s) hold NaN or infinite values (first: head.bias)" in str(raised.value)


def test_check_finite_weights_looks_at_the_ema_too(tmp_path):
    finite = {"w": torch.ones(3), "steps": torch.tensor(4)}
    check_finite_weights({"model": finite, "ema": {"module": finite}}, "ok.pt")
    with pytest.raises(CheckpointError, match="bad.pt: 1 ema weight"):
        check_finite_weights({"model": finite, "ema": {"module": {"w": torch.tensor([1.0, float("nan")])}}}, "bad.pt")


@pytest.fixture
def voc_with_problems(tmp_path):
    """train: 4 images with objects, one of them unreadable and one XML malformed; val: 2 images."""
    objects = [("cat", 2, 2, 20, 20), ("dog", 30, 10, 60, 40)]
    samples = {name: objects for name in ("a", "b", "c", "d", "v1", "v2")}
    root = write_voc(tmp_path / "voc", samples, {"train": ["a", "b", "c", "d"], "val": ["v1", "v2"]})
    (root / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    (root / "Annotations" / "c.xml").write_text("<annotation><object>")
    return root


def voc_config(root, *extra):
    return load_config("voc_faster_rcnn", [
        f"data.root={root}", "data.train_split=train", "data.val_split=val", "data.on_error=skip",
        "data.num_workers=0", "input.min_size=32", "input.max_size=64",
        "train.epochs=1", "train.batch_size=2", "train.warmup_iters=1", "eval.batch_size=2", "augment.train=[]",
        *extra])


def test_on_error_skip_reports_count_and_files_in_log_and_metrics(tmp_path, voc_with_problems):
    run_dir = train(voc_config(voc_with_problems), tmp_path / "run", loaders=build_loaders)
    log = (run_dir / "train.log").read_text()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r["type"] == "skipped"]
    files = [file for record in skipped for file in record["files"]]
    assert sorted(files) == sorted([str(voc_with_problems / "Annotations" / "c.xml"),
                                    str(voc_with_problems / "JPEGImages" / "b.jpg")])
    assert sum(record["count"] for record in skipped) == 2
    # The unreadable image was found while batches were made (in a worker, when there are workers) and
    # reported from the targets it travelled in.
    assert any(r["split"] == "train" and r.get("epoch") == 1 and "b.jpg" in r["files"][0] for r in skipped)
    assert "data.on_error skip: 1 problem(s) left out of the train split" in log
    assert "c.xml: malformed XML" in log and "b.jpg" in log


def test_training_goes_on_past_a_jpeg_missing_only_its_last_bytes(tmp_path, voc_with_problems, caplog):
    """A public VOC set has such a file: it used to stop training (data.on_error: raise)."""
    image = voc_with_problems / "JPEGImages" / "a.jpg"
    image.write_bytes(image.read_bytes()[:-2])
    # Without the fixture's broken b and c, which would stop a run that raises.
    (voc_with_problems / "ImageSets" / "Main" / "train.txt").write_text("a\nd\n")
    with caplog.at_level("WARNING"):
        run_dir = train(voc_config(voc_with_problems, "data.on_error=raise"), tmp_path / "run", loaders=build_loaders)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert any(f"{image}: truncated JPEG (no end-of-image marker) read" in record.getMessage()
               for record in caplog.records)


def test_classes_are_derived_once_from_the_training_split(tmp_path):
    # The val split has no 'cat': derived per split, its labels would shift (dog would become 1).
    root = write_voc(tmp_path / "voc", {"a": [("cat", 2, 2, 20, 20)], "b": [("dog", 2, 2, 20, 20)],
                                        "v": [("dog", 5, 5, 30, 30)]}, {"train": ["a", "b"], "val": ["v"]})
    config = load_config("voc_faster_rcnn", [f"data.root={root}", "data.train_split=train", "data.val_split=val",
                                             "data.num_workers=0", "data.classes=null"])
    train_loader, val_loader = build_loaders(config, distributed=False)
    assert train_loader.dataset.class_names == val_loader.dataset.class_names == ["cat", "dog"]
    assert val_loader.dataset.raw[0][1]["labels"].tolist() == [2]
    run_dir = train(config.model_copy(update={"train": doubles.tiny_config(epochs=1).train}), tmp_path / "run",
                    loaders=build_loaders)
    assert load_checkpoint(run_dir / "last.pt")["config"]["data"]["classes"] == ["cat", "dog"]


def test_an_empty_training_split_is_one_line(tmp_path):
    root = write_voc(tmp_path / "voc", {"v": [("dog", 5, 5, 30, 30)]}, {"train": [], "val": ["v"]})
    config = load_config("voc_faster_rcnn", [f"data.root={root}", "data.train_split=train", "data.num_workers=0"])
    with pytest.raises(DataError) as raised:
        build_loaders(config, distributed=False)
    assert str(raised.value) == f"{root / 'ImageSets' / 'Main' / 'train.txt'}: split 'train' has no images"
