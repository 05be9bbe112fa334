"""Command-level checks on a tiny SSD trained here (CPU, one epoch): classes travel by name between a
checkpoint and the data, `infer --json` results score as the checkpoint does, a checkpoint with
non-finite weights is refused, and what `data.on_error: skip` left out is reported."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from detect.checkpoints import load_checkpoint
from detect.cli import main
from detect.config import config_to_yaml, validate_config
from detect.engine.checkpoint import save_checkpoint

TINY = ["data.synth.num_images=12", "data.synth.image_size=64", "data.synth.val_fraction=0.5",
        "data.num_workers=0", "train.epochs=1", "train.batch_size=6", "train.warmup_iters=1", "eval.batch_size=6",
        "input.size=64", "model.ssd.aspect_ratios=[[2.0],[2.0],[2.0]]", "eval.metric=voc12"]
NAMES = ["circle", "square", "triangle", "star", "ring"]


def run(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exited:
        code = exited.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def sets(*values: str) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, its data root): a tiny SSD trained for one epoch on 6 synthetic images."""
    folder = tmp_path_factory.mktemp("tiny_ssd")
    root = folder / "shapes"
    with pytest.raises(SystemExit) as exited:
        main(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(folder / "run"),
              *sets(f"data.root={root}", *TINY)])
    assert exited.value.code in (0, None)
    return folder / "run", root


def eval_json(checkpoint, tmp_path, capsys, *extra) -> dict:
    out_json = tmp_path / "eval.json"
    code, _, err = run(["eval", str(checkpoint), "--device", "cpu", "--metric", "voc12", "--json", str(out_json),
                        *extra], capsys)
    assert code == 0, err
    return json.loads(out_json.read_text())


def test_eval_with_classes_reordered_or_a_subset_maps_by_name(trained, tmp_path, capsys):
    run_dir, _ = trained
    checkpoint = run_dir / "last.pt"
    assert load_checkpoint(checkpoint)["config"]["data"]["classes"] == NAMES  # stored resolved
    plain = eval_json(checkpoint, tmp_path, capsys)["voc12"]
    reordered = eval_json(checkpoint, tmp_path, capsys,
                          *sets("data.classes=[ring,star,triangle,square,circle]"))["voc12"]
    assert reordered["num_gt"] == plain["num_gt"]
    assert reordered["ap"] == pytest.approx(plain["ap"])
    subset = eval_json(checkpoint, tmp_path, capsys,
                       *sets("data.classes=[square,circle]", "data.unknown_class=skip"))["voc12"]
    assert subset["num_gt"] == {name: plain["num_gt"][name] for name in ("square", "circle")}
    assert subset["ap"] == pytest.approx({name: plain["ap"][name] for name in ("square", "circle")})
    code, _, err = run(["eval", str(checkpoint), "--device", "cpu", *sets("data.classes=[circle,hexagon]")], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"error: {checkpoint}: data.classes names hexagon, which this checkpoint does not detect "
                           f"(its classes: {', '.join(NAMES)})")


def test_infer_json_results_score_as_the_checkpoint(trained, tmp_path, capsys):
    run_dir, root = trained
    val_ids = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    images = [str(root / "JPEGImages" / f"{image_id}.jpg") for image_id in val_ids]
    direct, results, scored = infer_json_then_score(run_dir / "last.pt", images, tmp_path, capsys)
    assert {entry["image_id"] for entry in results} <= set(val_ids)  # VOC image ids: the file stems
    assert direct["voc12"]["map"] > 0  # a case with matches to get right
    for metric in ("voc07", "voc12"):
        assert scored[metric]["ap"] == pytest.approx(direct[metric]["ap"], abs=1e-9)
    assert scored["coco"] == pytest.approx(direct["coco"], abs=1e-9)


def infer_json_then_score(checkpoint, sources: list[str], tmp_path, capsys) -> tuple[dict, list, dict]:
    """(`detect eval CKPT --metric all` numbers, the COCO results `infer --json` wrote for `sources`,
    `eval --detections` numbers of those results against the checkpoint's own config)."""
    direct = eval_json(checkpoint, tmp_path, capsys, "--metric", "all")
    code, _, err = run(["infer", str(checkpoint), *sources, "--out", str(tmp_path / "infer"), "--json",
                        "--score-threshold", "0", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "infer" / "detections_coco.json").read_text())
    config = tmp_path / "config.yaml"
    config.write_text(config_to_yaml(validate_config(load_checkpoint(checkpoint)["config"])))
    out_json = tmp_path / "scored.json"
    code, _, err = run(["eval", "--detections", str(tmp_path / "infer" / "detections_coco.json"), "--config",
                        str(config), "--metric", "all", "--json", str(out_json)], capsys)
    assert code == 0, err
    return direct, results, json.loads(out_json.read_text())


def test_resume_with_the_classes_reordered_is_refused(trained, tmp_path, capsys):
    run_dir, root = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(copy),
                        "--resume", "auto", *sets(f"data.root={root}", *TINY, "train.epochs=2",
                                                  "data.classes=[ring,circle,square,triangle,star]")], capsys)
    assert code == 2 and "Traceback" not in err
    assert "cannot resume: its classes are circle, square, triangle, star, ring; this config's in another order" in err


def test_checkpoint_with_nonfinite_weights_is_refused_by_eval_infer_export_and_as_starting_weights(trained, tmp_path,
                                                                                                   capsys):
    run_dir, root = trained
    state = load_checkpoint(run_dir / "last.pt")
    name = next(key for key, value in state["model"].items() if value.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    bad = save_checkpoint(state, tmp_path / "nan.pt")
    image = str(root / "JPEGImages" / "000000.jpg")
    for args in (["eval", str(bad), "--device", "cpu"], ["infer", str(bad), image, "--out", str(tmp_path / "o")],
                 ["export", str(bad), "--out", str(tmp_path / "nan.onnx")]):
        code, _, err = run(args, capsys)
        assert code == 2, args
        assert err.strip().startswith(f"error: {bad}: 1 model weight tensor(s) hold NaN or infinite values (first: "
                                      f"{name})")
        assert "\n" not in err.strip()
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(tmp_path / "run"),
                        *sets(f"data.root={root}", *TINY, f"model.pretrained={bad}")], capsys)
    assert code == 2 and not (tmp_path / "run" / "last.pt").exists()
    assert err.strip() == (f"error: model.pretrained {bad}: 1 weight tensor(s) hold NaN or infinite values "
                           f"(first: {name}); training cannot start from them")


def test_eval_reports_what_on_error_skip_left_out(trained, tmp_path, capsys):
    run_dir, root = trained
    data = tmp_path / "shapes"
    shutil.copytree(root, data)
    val_ids = (data / "ImageSets" / "Main" / "val.txt").read_text().split()
    broken = data / "JPEGImages" / f"{val_ids[0]}.jpg"
    broken.write_bytes(b"not a jpeg")
    result = eval_json(run_dir / "last.pt", tmp_path, capsys, *sets(f"data.root={data}", "data.on_error=skip"))
    assert result["skipped"]["count"] == 1 and result["skipped"]["files"] == [str(broken)]
    code, out, _ = run(["eval", str(run_dir / "last.pt"), "--device", "cpu",
                        *sets(f"data.root={data}", "data.on_error=skip")], capsys)
    assert code == 0 and f"data.on_error skip: 1 problem(s) left out of the val split: {broken}" in out


@pytest.fixture(scope="module")
def trained_coco(tmp_path_factory):
    """(run folder, COCO data root): the tiny SSD trained one epoch on COCO-format synthetic data."""
    from detect.data.synthetic import generate_synthetic

    folder = tmp_path_factory.mktemp("tiny_ssd_coco")
    root = folder / "shapes_coco"
    generate_synthetic(root, format="coco", num_images=12, image_size=64, seed=3, val_fraction=0.5)
    with pytest.raises(SystemExit) as exited:
        main(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(folder / "run"),
              *sets(f"data.root={root}", "data.format=coco", *TINY)])
    assert exited.value.code in (0, None)
    return folder / "run", root


def test_a_checkpoint_on_coco_data_scores_as_its_detections_file(trained_coco, tmp_path):
    """One evaluation path: `detect eval CKPT` and `--detections` both score COCO data against the
    dataset's own annotation file, so the checkpoint's detections written as a results file give the
    same COCO numbers."""
    from detect.evaluation.coco import predictions_to_coco_results
    from detect.evaluation.eval_command import evaluate_checkpoint, evaluate_detections

    run_dir, _ = trained_coco
    folder = tmp_path
    config_file = folder / "config.yaml"
    config_file.write_text(config_to_yaml(validate_config(load_checkpoint(run_dir / "last.pt")["config"])))
    direct = evaluate_checkpoint(run_dir / "last.pt", None, [], None, "all", device="cpu")
    assert direct.evaluator.coco_gt is not None  # the annotation file's own index, not rebuilt ground truth
    images = direct.evaluator.images()
    results = predictions_to_coco_results([prediction for _, prediction, _ in images], [i for i, _, _ in images],
                                          direct.evaluator.label_to_category_id)
    assert results and all(isinstance(entry["image_id"], int) for entry in results)  # COCO image ids
    detections = folder / "detections.json"
    detections.write_text(json.dumps(results))
    scored = evaluate_detections(detections, str(config_file), [], None, "all")
    assert scored.results["coco"] == pytest.approx(direct.results["coco"], abs=1e-9)
    for metric in ("voc07", "voc12"):
        assert scored.results[metric]["ap"] == pytest.approx(direct.results[metric]["ap"], abs=1e-9)


def test_eval_coco_backends_give_the_same_numbers(trained_coco, tmp_path, capsys):
    """`detect eval --coco-backend pycocotools` runs the reference: the same 12 numbers and per-class AP
    as the default numpy evaluator, on the dataset's own annotation file."""
    run_dir, _ = trained_coco
    numbers = {}
    for backend in ("numpy", "pycocotools"):
        out_json = tmp_path / f"{backend}.json"
        code, out, err = run(["eval", str(run_dir / "last.pt"), "--metric", "coco", "--device", "cpu",
                              "--coco-backend", backend, "--json", str(out_json)], capsys)
        assert code == 0, err
        numbers[backend] = json.loads(out_json.read_text())
    assert numbers["numpy"]["coco"] == pytest.approx(numbers["pycocotools"]["coco"], abs=1e-12)
    assert numbers["numpy"]["coco_ap"] == pytest.approx(numbers["pycocotools"]["coco_ap"], abs=1e-12)
    assert set(numbers["numpy"]["coco_ap"]) == {"circle", "square", "triangle", "star", "ring"}
    code, _, err = run(["eval", str(run_dir / "last.pt"), "--coco-backend", "cocoapi"], capsys)
    assert code != 0 and "--coco-backend" in err and "'numpy', 'pycocotools'" in err and "\n" not in err.strip()


def test_infer_json_of_a_coco_trained_model_scores_as_the_checkpoint(trained_coco, tmp_path, capsys):
    """COCO results from `infer --json` name each image by its file; `eval --detections` maps the names
    to the annotation file's ids, so the round trip gives the checkpoint's own numbers."""
    run_dir, root = trained_coco
    direct, results, scored = infer_json_then_score(run_dir / "last.pt", [str(root / "val")], tmp_path, capsys)
    annotations = json.loads((root / "annotations" / "instances_val.json").read_text())
    file_names = {image["file_name"] for image in annotations["images"]}
    assert results and {entry["image_id"] for entry in results} <= file_names
    for metric in ("voc07", "voc12"):
        assert scored[metric]["ap"] == pytest.approx(direct[metric]["ap"], abs=1e-9)
    assert scored["coco"] == pytest.approx(direct["coco"], abs=1e-9)


def snapshot(folder) -> dict:
    """Every file below `folder`: (bytes, modification time)."""
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_resume_into_another_output_dir_leaves_the_source_run_alone(trained, tmp_path, capsys):
    run_dir, root = trained
    source = tmp_path / "source"
    shutil.copytree(run_dir, source)
    before = snapshot(source)
    target = tmp_path / "continued"
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--resume", str(source / "last.pt"),
                        "--out", str(target), *sets(f"data.root={root}", *TINY, "train.epochs=2")], capsys)
    assert code == 0, err
    assert snapshot(source) == before
    assert {"last.pt", "best.pt", "config.yaml", "train.log", "metrics.jsonl"} <= {p.name for p in target.iterdir()}
    assert load_checkpoint(target / "best.pt")["best_metric"] >= load_checkpoint(source / "best.pt")["best_metric"]
    assert load_checkpoint(target / "last.pt")["epoch"] == 2
    log = (target / "train.log").read_text()
    assert log.startswith((source / "train.log").read_text())  # the history came along
    assert f"resumed from {source / 'last.pt'}: epoch 1" in log and "config changes: train.epochs 1 -> 2" in log
    epochs = [json.loads(line)["epoch"] for line in (target / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("type") == "epoch"]
    assert epochs == [1, 2]


@pytest.mark.parametrize("change, message", [
    ("input.size=96", "cannot resume with input.size 64 -> 96"),
    ("model.backbone=resnet18", "cannot resume with model.backbone 'tiny_resnet' -> 'resnet18'"),
    ("train.batch_size=4", "cannot resume with train.batch_size 6 -> 4"),
])
def test_a_refused_resume_changes_nothing(trained, tmp_path, capsys, change, message):
    run_dir, root = trained
    source = tmp_path / "source"
    shutil.copytree(run_dir, source)
    before = snapshot(source)
    for extra in ([], ["--out", str(tmp_path / "elsewhere")]):
        code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--resume",
                            str(source / "last.pt"), *extra, *sets(f"data.root={root}", *TINY, change)], capsys)
        assert code == 2 and "Traceback" not in err and err.count("\n") == 1
        assert err.startswith(f"error: {source / 'last.pt'}: {message}")
        assert f"--set model.pretrained={source / 'last.pt'}" in err
        assert snapshot(source) == before
    assert not any((tmp_path / "elsewhere").glob("*"))


def test_a_new_run_never_writes_into_a_folder_holding_a_run(trained, tmp_path, capsys):
    run_dir, root = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = snapshot(copy)
    code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(copy),
                        *sets(f"data.root={root}", *TINY)], capsys)
    assert code == 2 and err.strip() == (f"error: --out {copy}: already holds a run (last.pt, best.pt, "
                                         f"metrics.jsonl); continue it with --resume auto, or choose another folder")
    assert snapshot(copy) == before


def test_a_second_training_into_a_folder_in_use_is_refused(trained, tmp_path, capsys):
    """Two `detect train` into one --out, the second started while the first runs."""
    import signal
    import subprocess
    import sys
    import time

    _, root = trained
    folder = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "detect", "train", "--config", "synthetic_ssd", "--device", "cpu",
                              "--out", str(folder), *sets(f"data.root={root}", *TINY, "train.epochs=200")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "config.yaml").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read()
        code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(folder),
                            *sets(f"data.root={root}", *TINY)], capsys)
        assert code == 2 and err.strip() == (f"error: --out {folder}: another detect train is writing there "
                                             f"now; wait for it to end, or choose another folder")
        code, _, err = run(["train", "--config", "synthetic_ssd", "--device", "cpu", "--out", str(folder),
                            "--resume", "auto", *sets(f"data.root={root}", *TINY)], capsys)
        assert code == 2 and ("another detect train is writing there now" in err or "no last.pt" in err), err
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    config = yaml_config(folder)
    assert config["train"]["epochs"] == 200  # the first run's, not replaced
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if line.get("type") == "train"]
    assert steps == sorted(steps)  # one run's records, not two interleaved


def yaml_config(folder) -> dict:
    import yaml

    return yaml.safe_load((folder / "config.yaml").read_text())


def test_a_full_disk_stops_training_in_one_line_that_the_log_has_too(trained, tmp_path):
    """3 MB: the first checkpoint does not fit. The run ends at once (loader workers included), with
    one line naming the folder, in train.log as well; no half-written checkpoint is left."""
    from tests.full_disk import run_on_full_disk

    _, root = trained
    folder = tmp_path / "full"
    done = run_on_full_disk(["train", "--config", "synthetic_ssd", "--device", "cpu",
                             "--out", str(folder / "run"),
                             *sets(f"data.root={root}", *TINY[:-1], "data.num_workers=2", "train.epochs=3")],
                            folder, "3m", timeout=120)
    message = f"no space left on {folder / 'run'}: last.pt not written (free some space, or choose another folder)"
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {message}" and "Traceback" not in done.stderr
    assert not any(name.endswith(".pt") or ".tmp" in name for name in done.files), done.files
    assert done.last_log_line.endswith(f" error: {message}")


def test_a_full_disk_keeps_the_previous_checkpoint(trained, tmp_path):
    """A disk with room for one checkpoint but not two: best.pt of epoch 1 stays whole."""
    from tests.full_disk import run_on_full_disk

    run_dir, root = trained
    checkpoint_bytes = (run_dir / "last.pt").stat().st_size
    folder = tmp_path / "full"
    done = run_on_full_disk(["train", "--config", "synthetic_ssd", "--device", "cpu",
                             "--out", str(folder / "run"),
                             *sets(f"data.root={root}", *TINY[:-1], "train.epochs=3")], folder,
                            f"{int(checkpoint_bytes * 1.5) // 1024}k", timeout=120)
    assert done.returncode == 2, done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: no space left on {folder / 'run'}: ") and "Traceback" not in done.stderr
    checkpoints = {name: size for name, size in done.files.items() if name.endswith(".pt")}
    assert checkpoints and set(checkpoints.values()) == {checkpoint_bytes}, done.files  # whole ones only
    for name in checkpoints:
        if f"{name.removeprefix('run/')} not written" in last_line:
            assert last_line.endswith(f"; the previous {name.removeprefix('run/')} is kept (free some space, or "
                                      f"choose another folder)")
    assert not any(".tmp" in name for name in done.files)
