"""The schedule sized to the data, the EMA's warm-up and early stopping on validation avg mAP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loco_stream.config import ConfigError, TrainConfig, load_config
from tests.planted import make_planted_dataset, planted_config_overrides
from train.checkpoint import load_checkpoint
from train.curve import curve_table
from train.loop import train
from train.schedule import MAX_STEPS, MIN_STEPS, EarlyStopping, ema_decay, plan, sized_steps

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@given(st.integers(1, 200_000), st.integers(1, 200_000))
def test_more_clips_never_train_fewer_steps_and_the_bounds_hold(a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert MIN_STEPS <= sized_steps(small) <= sized_steps(large) <= MAX_STEPS


def test_a_few_hundred_clips_train_thousands_of_steps_not_twenty_epochs() -> None:
    schedule = plan(TrainConfig(batch_size=8), clips=160, iterations_per_epoch=20)
    assert schedule.sized_to_data and schedule.total_iterations >= 2_500  # was 20 x 20 = 400
    assert schedule.warmup_iterations <= 0.1 * schedule.total_iterations


def test_steps_and_epochs_given_are_kept() -> None:
    assert plan(TrainConfig(steps=95), 100, 10).total_iterations == 100  # whole epochs
    assert plan(TrainConfig(epochs=3), 100, 10).total_iterations == 30
    with pytest.raises(ConfigError, match="train.steps must be at least 1"):
        TrainConfig(steps=0)


def test_the_ema_follows_the_weights_early_and_settles_at_its_decay() -> None:
    assert ema_decay(0, 0.995) < 0.2 and ema_decay(100, 0.995) < 0.95
    assert ema_decay(10_000, 0.995) == 0.995


def test_early_stopping_counts_validations_since_the_best() -> None:
    stopping = EarlyStopping(patience=2)
    assert [stopping.update(s) for s in (10.0, 12.0, 11.0)] == [True, True, False]
    assert not stopping.should_stop
    stopping.update(12.0)  # equal is not better
    assert stopping.should_stop and stopping.best == 12.0
    assert not EarlyStopping(patience=0, since_best=99).should_stop


def test_a_later_validation_within_the_tolerance_is_kept_and_restarts_the_count() -> None:
    stopping = EarlyStopping(patience=2, tolerance=1.0)
    kept = [stopping.update(s) for s in (70.0, 72.0, 71.5, 70.5, 71.2, 70.0)]
    assert kept == [True, True, True, False, True, False]  # 71.5 and 71.2: as good as 72
    assert stopping.best == 72.0 and not stopping.should_stop
    stopping.update(70.9)  # 1.1 below the best: not within the tolerance
    assert stopping.should_stop


@given(scores=st.lists(st.floats(0, 100), min_size=1, max_size=40), tolerance=st.floats(0, 5))
def test_the_kept_validation_is_never_worse_than_the_best_by_more_than_the_tolerance(
    scores, tolerance
) -> None:
    stopping = EarlyStopping(patience=0, tolerance=tolerance)
    kept = [score for score in scores if stopping.update(score)]
    assert stopping.best == max(scores)
    assert kept[-1] >= max(scores) - tolerance
    if tolerance == 0:
        assert kept[-1] == max(scores)


def test_curve_table_marks_the_checkpoint_kept_not_the_highest(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    records = [(60, 70.0, True), (120, 72.0, True), (180, 71.5, True), (240, 70.0, False)]
    metrics.write_text(
        "".join(
            json.dumps(
                {
                    "epoch": step // 20,
                    "step": step,
                    "loss_total": 1.0,
                    "val_mAP": v,
                    **({"best": True} if b else {}),
                }
            )
            + "\n"
            for step, v, b in records
        )
    )
    marked = [line for line in curve_table(metrics).splitlines() if "kept" in line]
    assert len(marked) == 1 and marked[0].split()[0] == "180"


def test_a_negative_selection_tolerance_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.selection_tolerance"):
        TrainConfig(selection_tolerance=-1.0)


def test_training_stops_early_keeps_the_best_validation_and_draws_the_curve(tmp_path: Path):
    annotations = make_planted_dataset(tmp_path, {"train": 16, "validation": 8})
    overrides = planted_config_overrides(tmp_path, annotations)
    config = load_config(
        SMOKE,
        [
            *overrides,
            "train.epochs=60",
            "train.val_every=1",
            "train.patience=2",
            "train.batch_size=8",
        ],
    )
    best = train(config, progress=False)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len(metrics) < 60 and metrics[-1].get("stopped_early")
    scores = [m["val_mAP"] for m in metrics]
    assert all(later <= max(scores[:-2]) for later in scores[-2:])  # two without a better one
    kept = load_checkpoint(best)
    assert kept["epoch"] == 1 + scores.index(max(scores))
    assert kept["config"]["model"]["feature_stats"]["visual"]["mean"]  # standardised
    assert (tmp_path / "run" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
