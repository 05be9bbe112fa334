"""DetectionEvaluator: batching and merging invariants, tensor inputs, the text table, the confusion
matrix and the PNG plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detect.evaluation.confusion import confusion_matrix
from detect.evaluation.evaluator import DetectionEvaluator, format_results, parse_metrics
from tests.evaluation.test_voc import FAR, NAMES, A, B, gt, pred, random_case


def evaluate_in_calls(preds, gts, splits, metrics="all"):
    evaluator = DetectionEvaluator(NAMES, metrics=metrics)
    start = 0
    for end in splits + [len(preds)]:
        evaluator.process(preds[start:end], gts[start:end])
        start = end
    return evaluator.evaluate()


def test_several_process_calls_equal_one():
    preds, gts = random_case(5)
    assert evaluate_in_calls(preds, gts, [3, 10, 11, 25]) == evaluate_in_calls(preds, gts, [])
    # Ties in score (scores are rounded here) rank by image id, not by arrival order.
    assert evaluate_in_calls(preds[::-1], gts[::-1], [7]) == evaluate_in_calls(preds, gts, [])


def test_merge_of_two_halves_equals_the_whole_and_repeats_count_once():
    preds, gts = random_case(6)
    halves = [DetectionEvaluator(NAMES, metrics="all") for _ in range(2)]
    halves[0].process(preds[:15], gts[:15])
    # A distributed sampler pads with repeats: image 0 again on the second rank.
    halves[1].process(preds[15:] + preds[:1], gts[15:] + gts[:1])
    merged = DetectionEvaluator(NAMES, metrics="all")
    merged.merge([half.state() for half in halves])
    assert merged.evaluate() == evaluate_in_calls(preds, gts, [])
    assert merged.evaluate()["num_images"] == len(preds)


def test_torch_tensors_equal_numpy():
    preds, gts = random_case(7)
    def as_tensors(d):
        return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in d.items()}

    evaluator = DetectionEvaluator(NAMES, metrics=("voc12",))
    evaluator.process([as_tensors(p) for p in preds], [as_tensors(g) for g in gts])
    assert evaluator.evaluate() == evaluate_in_calls(preds, gts, [], metrics=("voc12",))


def test_metric_names():
    assert parse_metrics("all") == ("voc07", "voc12", "coco")
    assert parse_metrics(["voc12"]) == ("voc12",)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("map")


def test_format_results_table():
    results = evaluate_in_calls([pred([A], [0.9], [1])], [gt([A, B], [1, 2])], [], metrics=("voc07", "voc12"))
    text = format_results(results, NAMES)
    assert "| cat" in text and "100.00" in text
    assert "no gt" in text.splitlines()[4]  # bird
    assert "**mAP**" in text and "50.00" in text


def test_confusion_matrix_hand_case():
    evaluator = DetectionEvaluator(NAMES)
    evaluator.process(
        # A predicted right (cat), B predicted as bird, a false detection, a detection below the score threshold
        [pred([A, B, FAR, [0, 50, 10, 60]], [0.9, 0.8, 0.7, 0.1], [1, 3, 2, 2])],
        [gt([A, B, [30, 0, 40, 10], [0, 50, 10, 60]], [1, 2, 2, 1], difficult=[False, False, False, True])],
    )
    matrix = confusion_matrix(evaluator.voc_inputs(), len(NAMES), score_threshold=0.25)
    expected = np.zeros((4, 4), np.int64)
    expected[1, 1] = 1  # cat seen as cat
    expected[2, 3] = 1  # dog seen as bird
    expected[0, 2] = 1  # a dog detected on background
    expected[2, 0] = 1  # a dog missed; the difficult cat is not counted
    np.testing.assert_array_equal(matrix, expected)


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from detect.evaluation.plots import plot_confusion_matrix, plot_pr_curves

    preds, gts = random_case(8)
    evaluator = DetectionEvaluator(NAMES)
    evaluator.process(preds, gts)
    paths = plot_pr_curves(evaluator.class_curves(), NAMES, tmp_path / "plots")
    matrix = confusion_matrix(evaluator.voc_inputs(), len(NAMES))
    paths.append(plot_confusion_matrix(matrix, NAMES, tmp_path / "plots" / "cm.png"))
    assert len(paths) == len(NAMES) + 2
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _gather_worker(rank: int, world_size: int, init_file: str, queue) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    preds, gts = random_case(9)
    evaluator = DetectionEvaluator(NAMES, metrics=("voc07", "voc12"))
    evaluator.process(preds[rank::world_size], gts[rank::world_size])
    evaluator.synchronize()
    queue.put((rank, evaluator.evaluate()))
    torch.distributed.destroy_process_group()


def test_synchronize_gathers_all_ranks(tmp_path):
    context = torch.multiprocessing.get_context("fork")  # spawn would import torch again (slow)
    queue = context.Queue()
    processes = [
        context.Process(target=_gather_worker, args=(rank, 2, str(tmp_path / "init"), queue)) for rank in range(2)]
    for process in processes:
        process.start()
    outputs = dict(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    preds, gts = random_case(9)
    whole = evaluate_in_calls(preds, gts, [], metrics=("voc07", "voc12"))
    assert outputs[0] == outputs[1] == whole
