"""Tests of the UnAV-100 evaluator and loco-eval, with hand-computed answers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from loco_stream.cli.eval import main
from loco_stream.evaluation import (
    TIOU_THRESHOLDS,
    EvaluationInputError,
    evaluate,
    load_ground_truth,
    load_predictions,
)


def annotations(videos: dict[str, list[tuple[float, float, int]]], subset: str = "test") -> dict:
    """An UnAV-100 annotation dict with every video in ``subset``."""
    return {
        "database": {
            vid: {
                "subset": subset,
                "duration": 60.0,
                "annotations": [
                    {"segment": [s, e], "label": f"class {k}", "label_id": k} for s, e, k in events
                ],
            }
            for vid, events in videos.items()
        }
    }


def results(videos: dict[str, list[tuple[float, float, int, float]]]) -> dict:
    """An UnAV-style results dict."""
    return {
        "results": {
            vid: [{"segment": [s, e], "label_id": k, "score": p} for s, e, k, p in preds]
            for vid, preds in videos.items()
        }
    }


def test_perfect_predictions_score_100():
    gt = {
        "a": [(0.0, 10.0, 0), (5.0, 20.0, 1), (30.0, 31.0, 0)],
        "b": [(2.0, 4.0, 2)],
        "c": [],
    }
    preds = {vid: [(s, e, k, 0.9) for s, e, k in events] for vid, events in gt.items()}
    result = evaluate(gt, preds)
    assert result.tious == list(TIOU_THRESHOLDS)
    assert result.class_ids == [0, 1, 2]
    assert result.per_class_ap.shape == (9, 3)
    assert result.mAP == pytest.approx([100.0] * 9)
    assert result.average == pytest.approx(100.0)
    assert result.num_videos == 3 and result.num_ignored == 0


def test_known_partial_case_with_interpolation():
    # Class 0, three events: a [0,10], a [20,30], b [5,15]. Predictions by score:
    #   0.9 a [0,10]      tIoU 1 with a[0,10]                       TP
    #   0.8 b [30,40]     no overlap                                FP
    #   0.7 b [5,15]      tIoU 1                                    TP
    #   0.6 a [20,28.5]   tIoU 8.5/10 = 0.85 with a[20,30]          TP if t <= 0.8, FP at 0.9
    # t <= 0.8: precision 1, 1/2, 2/3, 3/4 -> interpolated 1, 3/4, 3/4, 3/4; recall steps of 1/3
    #   at the TPs: AP = (1 + 3/4 + 3/4) / 3 = 5/6 (not interpolated it would be 0.8056).
    # t = 0.9: precision 1, 1/2, 2/3, 1/2 -> TPs at ranks 1 and 3: AP = (1 + 2/3) / 3 = 5/9.
    # Average: (8 * 5/6 + 5/9) / 9 = 65/81.
    gt = {"a": [(0.0, 10.0, 0), (20.0, 30.0, 0)], "b": [(5.0, 15.0, 0)]}
    preds = {
        "a": [(0.0, 10.0, 0, 0.9), (20.0, 28.5, 0, 0.6)],
        "b": [(30.0, 40.0, 0, 0.8), (5.0, 15.0, 0, 0.7)],
    }
    result = evaluate(gt, preds)
    assert result.mAP == pytest.approx([500 / 6] * 8 + [500 / 9])
    assert result.average == pytest.approx(100 * 65 / 81)


def test_duplicate_ground_truth_counts_once():
    # [0, 10] and [0.0005, 10.001] are one event (both ends within 1e-3 s), so class 0 has two
    # events, both found: AP 1. Counting the duplicate would make recall 2/3 and AP 2/3.
    # [20, 30.002] is 2 ms away from [20, 30]: a distinct event that needs its own prediction.
    gt = {"a": [(0.0, 10.0, 0), (0.0005, 10.001, 0), (20.0, 30.0, 0)]}
    preds = {"a": [(0.0, 10.0, 0, 0.9), (20.0, 30.0, 0, 0.8)]}
    assert evaluate(gt, preds).average == pytest.approx(100.0)
    # A third ground-truth event 2 ms off: recall 2/3 and AP = 2/3.
    gt["a"].append((20.0, 30.002, 0))
    assert evaluate(gt, preds).average == pytest.approx(200 / 3)


def test_overlapping_classes_are_scored_independently():
    # Class 0 [0,10] and class 1 [0.5,10] overlap. The class-1 prediction [0,10] has tIoU 1 with
    # the class-0 event but only competes for the class-1 one (tIoU 9.5/10 = 0.95): TP at every
    # threshold. The class-0 prediction is then still free to take the class-0 event: both AP 1.
    gt = {"a": [(0.0, 10.0, 0), (0.5, 10.0, 1)]}
    preds = {"a": [(0.0, 10.0, 1, 0.9), (0.0, 10.0, 0, 0.8)]}
    result = evaluate(gt, preds)
    np.testing.assert_allclose(result.per_class_ap, 100.0)


def test_absent_classes_and_unknown_videos_are_ignored():
    # Class 5 is not in the ground truth and video "z" is not either: both predictions are
    # ignored, so the class-0 prediction ranks first and AP is 1 (not 1/2, as it would be if the
    # higher-scored predictions counted as false positives). mAP is over class 0 only.
    gt = {"a": [(0.0, 10.0, 0)]}
    preds = {"a": [(0.0, 10.0, 5, 0.99), (0.0, 10.0, 0, 0.5)], "z": [(0.0, 10.0, 0, 0.98)]}
    result = evaluate(gt, preds)
    assert result.class_ids == [0]
    assert result.per_class_ap.shape == (9, 1)
    assert result.average == pytest.approx(100.0)
    assert result.num_ignored == 2


def test_prediction_in_video_without_that_class_is_a_false_positive():
    # Class 0 is present (in "a"), so a class-0 prediction in "b" is scored: FP ranked first.
    # Precision at the TP is 1/2, recall 1: AP = 1/2.
    gt = {"a": [(0.0, 10.0, 0)], "b": [(0.0, 10.0, 1)]}
    preds = {"b": [(0.0, 10.0, 0, 0.9)], "a": [(0.0, 10.0, 0, 0.8)]}
    result = evaluate(gt, preds)
    np.testing.assert_allclose(result.per_class_ap[:, 0], 50.0)  # class 1 has no predictions
    np.testing.assert_allclose(result.per_class_ap[:, 1], 0.0)


def test_score_ties_keep_input_order():
    # Both predictions score 0.5; the stable sort keeps input order.
    # FP first: precision at the TP is 1/2, AP = 1/2. TP first: AP = 1.
    gt = {"a": [(0.0, 10.0, 0)]}
    miss, hit = (20.0, 30.0, 0, 0.5), (0.0, 10.0, 0, 0.5)
    assert evaluate(gt, {"a": [miss, hit]}).average == pytest.approx(50.0)
    assert evaluate(gt, {"a": [hit, miss]}).average == pytest.approx(100.0)
    # Across videos, file order of the videos decides.
    gt = {"a": [(0.0, 10.0, 0)], "b": []}
    assert evaluate(gt, {"b": [miss], "a": [hit]}).average == pytest.approx(50.0)
    assert evaluate(gt, {"a": [hit], "b": [miss]}).average == pytest.approx(100.0)


def test_prediction_takes_the_highest_tiou_event_and_leaves_the_other():
    # Ground truth (class 0, this order): B [8,20], A [0,10].
    # P1 [1,11] (0.9): tIoU with B 3/19 = 0.158, with A 9/11 = 0.818 -> takes A if t <= 0.8.
    # P2 [9,20] (0.8): tIoU with B 11/12 = 0.917, with A 1/20 = 0.05 -> takes B if t <= 0.9.
    # t <= 0.8: TP, TP -> AP 1. (Taking B, the first event over 0.1, would leave P2 with A at
    #   tIoU 0.05: a false positive at t = 0.1.)
    # t = 0.9: P1 FP, P2 TP: precision 1/2 at recall 1/2 -> AP 1/4.
    # Average: (8 * 100 + 25) / 9.
    gt = {"v": [(8.0, 20.0, 0), (0.0, 10.0, 0)]}
    preds = {"v": [(1.0, 11.0, 0, 0.9), (9.0, 20.0, 0, 0.8)]}
    result = evaluate(gt, preds)
    assert result.mAP == pytest.approx([100.0] * 8 + [25.0])
    assert result.average == pytest.approx(825 / 9)


def test_matched_event_cannot_be_matched_again():
    # Two identical predictions of one event: TP then FP. Precision 1 at recall 1: AP 1.
    # With a second, unpredicted event: recall 1/2, AP 1/2.
    gt = {"v": [(0.0, 10.0, 0)]}
    preds = {"v": [(0.0, 10.0, 0, 0.9), (0.0, 10.0, 0, 0.8)]}
    assert evaluate(gt, preds).average == pytest.approx(100.0)
    gt["v"].append((30.0, 40.0, 0))
    assert evaluate(gt, preds).average == pytest.approx(50.0)


def test_empty_predictions_give_zero_and_empty_ground_truth_is_an_error():
    result = evaluate({"a": [(0.0, 1.0, 3)]}, {})
    assert result.average == 0.0 and result.mAP == [0.0] * 9
    with pytest.raises(EvaluationInputError, match="no events"):
        evaluate({"a": []}, {"a": [(0.0, 1.0, 3, 0.5)]})


def test_load_ground_truth_selects_the_split():
    data = annotations({"a": [(0.0, 1.0, 3), (0.0, 1.0, 3)]})
    data["database"].update(annotations({"b": [(1.0, 2.0, 4)]}, subset="train")["database"])
    assert load_ground_truth(data, "test") == {"a": [(0.0, 1.0, 3), (0.0, 1.0, 3)]}
    assert set(load_ground_truth(data)) == {"a", "b"}
    with pytest.raises(EvaluationInputError, match="available subsets: test, train"):
        load_ground_truth(data, "validation")


def test_load_predictions_ignores_extra_keys():
    data = {"results": {"a": [{"segment": [1, 2.5], "label": "dog", "label_id": 3, "score": 1}]}}
    assert load_predictions(data) == {"a": [(1.0, 2.5, 3, 1.0)]}


@pytest.mark.parametrize(
    ("kind", "item", "message"),
    [
        ("gt", {"segment": [1.0], "label_id": 0}, "two finite numbers"),
        ("gt", {"segment": [5.0, 3.0], "label_id": 0}, "before its start"),
        ("gt", {"segment": [1.0, 2.0], "label_id": "dog"}, "integer class id"),
        ("pred", {"segment": [1.0, 2.0], "label_id": 2.5, "score": 0.5}, "integer class id"),
        ("pred", {"segment": [1.0, 2.0], "label_id": 1, "score": float("nan")}, "finite number"),
        ("pred", {"segment": ["1", 2.0], "label_id": 1, "score": 0.5}, "two finite numbers"),
    ],
)
def test_malformed_events_name_the_video(kind, item, message):
    if kind == "gt":
        data = {"database": {"vid_7": {"subset": "test", "annotations": [item]}}}
        load = load_ground_truth
    else:
        data, load = {"results": {"vid_7": [item]}}, load_predictions
    with pytest.raises(EvaluationInputError, match=message) as error:
        load(data)
    assert "'vid_7'" in str(error.value)


def test_malformed_files(tmp_path):
    not_json = tmp_path / "bad.json"
    not_json.write_text("{not json")
    with pytest.raises(EvaluationInputError, match="not valid JSON"):
        load_predictions(not_json)
    with pytest.raises(EvaluationInputError, match='no "database"'):
        load_ground_truth({"results": {}})
    with pytest.raises(EvaluationInputError, match='no "results"'):
        load_predictions({"database": {}})
    with pytest.raises(EvaluationInputError, match="cannot read"):
        load_ground_truth(tmp_path / "missing.json")


@pytest.fixture
def files(tmp_path):
    """Annotation and prediction files of the partial case (average 65/81)."""
    gt = {"a": [(0.0, 10.0, 0), (20.0, 30.0, 0)], "b": [(5.0, 15.0, 0)]}
    preds = {
        "a": [(0.0, 10.0, 0, 0.9), (20.0, 28.5, 0, 0.6)],
        "b": [(30.0, 40.0, 0, 0.8), (5.0, 15.0, 0, 0.7)],
    }
    ann, pred = tmp_path / "ann.json", tmp_path / "pred.json"
    ann.write_text(json.dumps(annotations(gt)))
    pred.write_text(json.dumps(results(preds)))
    return str(ann), str(pred)


def test_cli_json_output(files, capsys):
    ann, pred = files
    assert main(["--annotations", ann, "--predictions", pred, "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["tiou", "mAP", "average"]
    assert out["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert out["mAP"] == pytest.approx([500 / 6] * 8 + [500 / 9])
    assert out["average"] == pytest.approx(100 * 65 / 81)


def test_cli_table(files, capsys):
    ann, pred = files
    assert main(["--annotations", ann, "--predictions", pred]) == 0
    out = capsys.readouterr().out
    assert "videos: 2  classes: 1  split: all" in out
    assert "0.50     83.33" in out and "0.90     55.56" in out and "avg      80.25" in out


def test_cli_bad_file_exits_2(files, tmp_path, capsys):
    ann, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"a": [{"segment": [3, 1], "label_id": 0, "score": 1}]}}))
    assert main(["--annotations", ann, "--predictions", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("loco-eval: error: ") and "'a'" in err and "before its start" in err
    # Once as a process: exit status 2, one error line, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "loco_stream.cli.eval", "--annotations", ann, "--predictions", ann],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("loco-eval: error: ") and 'no "results"' in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# ---------------------------------------------------------------------------------------------
# Property check against a slow, literal implementation of the protocol


def reference_evaluate(gt, preds, tious=TIOU_THRESHOLDS):
    """The protocol as plain loops: returns per-class AP (T, C) in percent and the class ids."""

    def tiou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = (a[1] - a[0]) + (b[1] - b[0]) - inter
        return inter / union if union > 0 else 0.0

    events = []  # (video, start, end, class) without same-class duplicates
    for vid, rows in gt.items():
        for s, e, k in rows:
            duplicate = any(
                v == vid and c == k and abs(s - s0) <= 1e-3 + 1e-9 and abs(e - e0) <= 1e-3 + 1e-9
                for v, s0, e0, c in events
            )
            if not duplicate:
                events.append((vid, s, e, k))
    classes = sorted({k for *_, k in events})
    ap = np.zeros((len(tious), len(classes)))
    for ci, k in enumerate(classes):
        truth = [ev for ev in events if ev[3] == k]
        ranked = [(v, r) for v in preds if v in gt for r in preds[v] if r[2] == k]
        ranked = sorted(ranked, key=lambda vr: -vr[1][3])  # sorted() is stable
        for ti, t in enumerate(tious):
            used = [False] * len(truth)
            hits = []
            for vid, (s, e, _, _) in ranked:
                best, best_iou = None, -1.0
                for j, (v, s0, e0, _) in enumerate(truth):
                    if v == vid and not used[j] and tiou((s, e), (s0, e0)) > best_iou:
                        best, best_iou = j, tiou((s, e), (s0, e0))
                if best is not None and best_iou >= t:
                    used[best] = True
                hits.append(best is not None and best_iou >= t)
            # Pascal VOC: sentinels, precision envelope, sum over recall changes.
            tp = np.cumsum(hits)
            recall = np.concatenate([[0.0], tp / len(truth), [1.0]])
            precision = np.concatenate([[0.0], tp / np.arange(1, len(hits) + 1), [0.0]])
            for i in range(len(precision) - 2, -1, -1):
                precision[i] = max(precision[i], precision[i + 1])
            steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
            ap[ti, ci] = 100 * np.sum((recall[steps] - recall[steps - 1]) * precision[steps])
    return ap, classes


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    gt, preds = {}, {}
    for v in range(12):
        rows = []
        for _ in range(rng.integers(0, 5)):
            s = float(rng.integers(0, 40))
            rows.append((s, s + float(rng.integers(0, 15)), int(rng.integers(0, 4))))
        if rows and rng.random() < 0.3:
            s, e, k = rows[0]
            rows.append((s + 0.0004, e + 0.0007, k))  # a duplicate
        gt[f"v{v}"] = rows
        out = []
        for _ in range(rng.integers(0, 12)):
            if rows and rng.random() < 0.6:  # near a true event, sometimes of another class
                s, e, k = rows[rng.integers(len(rows))]
                s, e = s + rng.normal(0, 1.5), e + rng.normal(0, 1.5)
                k = k if rng.random() < 0.8 else int(rng.integers(0, 6))
            else:
                s = rng.uniform(0, 40)
                e, k = s + rng.uniform(0, 15), int(rng.integers(0, 6))
            s, e = float(min(s, e)), float(max(s, e))
            out.append((s, e, k, float(np.round(rng.random(), 1))))  # coarse scores: many ties
        preds[f"v{v}" if rng.random() < 0.9 else f"other{v}"] = out
    if not any(gt.values()):
        gt["v0"] = [(0.0, 5.0, 0)]
    expected, classes = reference_evaluate(gt, preds)
    result = evaluate(gt, preds)
    assert result.class_ids == classes
    np.testing.assert_allclose(result.per_class_ap, expected, atol=1e-9)
    np.testing.assert_allclose(result.mAP, expected.mean(axis=1), atol=1e-9)
