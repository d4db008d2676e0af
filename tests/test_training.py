"""The training pipeline end to end on a planted data set, resume, DDP and safe checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from loco_stream.config import load_config
from loco_stream.evaluation import evaluate, load_ground_truth, load_predictions
from tests.planted import make_planted_dataset, planted_config_overrides
from train.checkpoint import CheckpointError, load_checkpoint, load_model
from train.evaluate import main as evaluate_main
from train.evaluate import predict
from train.labels import PointGrid
from train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    annotations = make_planted_dataset(root, {"train": 64, "validation": 16, "test": 16})
    return root, annotations


@pytest.mark.slow
def test_training_on_planted_data_reaches_90_map(planted):
    root, annotations = planted
    # 20 epochs (160 steps) reach 97 test avg mAP here (30 epochs: 99); over data seeds 0-2, 20
    # epochs give 92-97 and 30 give 94-99, and 15 epochs or 32 train videos fall short of 90
    config = load_config(
        SMOKE,
        planted_config_overrides(root, annotations) + ["train.epochs=20", "train.val_every=10"],
    )
    best = train(config, progress=False)
    model, stored, names = load_model(best)
    records_config = stored
    from train.data import load_records

    records, _ = load_records(annotations, "test", stored.model.num_classes)
    predictions = predict(model, records, records_config, names, progress=False)
    result = evaluate(load_ground_truth(annotations, "test"), load_predictions(predictions))
    assert result.average > 90.0, result
    metrics = [
        json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["epoch"] for m in metrics] == list(range(1, 21))
    assert "val_mAP" in metrics[9] and "val_mAP" in metrics[19]
    # the CLI writes the same results file format and scores it
    out = root / "results.json"
    assert evaluate_main(["--checkpoint", str(best), "--split", "test", "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())["results"]) == {r.video_id for r in records}


def test_resume_continues_where_it_stopped(tmp_path):
    annotations = make_planted_dataset(tmp_path, {"train": 8})
    overrides = planted_config_overrides(tmp_path, annotations) + [
        f"train.output_dir={tmp_path / 'run'}",
        "train.val_every=0",
    ]
    train(load_config(SMOKE, overrides + ["train.epochs=2"]), progress=False)
    run = tmp_path / "run"
    first = load_checkpoint(run / "last.pt")
    assert first["epoch"] == 2
    train(
        load_config(SMOKE, overrides + ["train.epochs=3"]), resume=run / "last.pt", progress=False
    )
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["epoch"] == 3
    # a third epoch was trained from the stored state: weights moved on from epoch 2
    key = "classifier.tower.output.conv.bias"
    assert not torch.equal(resumed["model"][key], first["model"][key])


def test_fine_tuning_starts_from_the_weights_of_a_checkpoint(tmp_path):
    annotations = make_planted_dataset(tmp_path, {"train": 8})
    overrides = planted_config_overrides(tmp_path, annotations) + [
        "train.val_every=0",
        "train.epochs=1",
    ]
    first = tmp_path / "first"
    train(load_config(SMOKE, overrides + [f"train.output_dir={first}"]), progress=False)
    trained = load_checkpoint(first / "last.pt")["ema"]
    tuned_run = tmp_path / "tuned"
    config = load_config(
        SMOKE,
        overrides
        + [f"train.output_dir={tuned_run}", f"train.init_from={first / 'last.pt'}", "train.lr=0"],
    )
    train(config, progress=False)
    tuned = load_checkpoint(tuned_run / "last.pt")["model"]
    key = "classifier.tower.output.conv.bias"
    assert torch.equal(tuned[key], trained[key])  # lr 0: the starting weights, unchanged


@pytest.mark.slow
def test_ddp_with_two_processes_gives_the_same_result_format(planted, tmp_path):
    root, annotations = planted
    overrides = planted_config_overrides(root, annotations) + [
        f"train.output_dir={tmp_path}",
        "train.epochs=2",
        "train.val_every=2",
        "train.num_threads=1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    command += ["-m", "train", "--config", str(SMOKE), "--quiet", *overrides]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["epoch"] == 2 and set(state) >= {"model", "ema", "config", "class_names"}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and "val_mAP" in lines[1]  # rank 0 alone writes


def test_checkpoint_with_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"config": Exploit()}, path)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_label_assignment_follows_regression_ranges():
    config = load_config(SMOKE).model  # window 64, ranges [0,4],[4,8],[8,16],[16,inf)
    grid = PointGrid(config)
    segments = torch.tensor([[10.0, 13.0], [20.0, 50.0]])  # a 3-step and a 30-step event
    cls, reg = grid.assign(segments, torch.tensor([1, 2]))
    positive = cls.sum(-1) > 0
    short = positive & (cls[:, 1] > 0)
    long = positive & (cls[:, 2] > 0)
    # the short event is learnt at stride 1 only, the long one at strides 8 and 4/16 only
    assert set(grid.strides[short].tolist()) == {1.0}
    assert set(grid.positions[short].tolist()) == {10.0, 11.0, 12.0, 13.0}
    assert 1.0 not in set(grid.strides[long].tolist())
    # regression targets are distances to start/end in units of the stride
    index = int(torch.nonzero((grid.positions == 11) & (grid.strides == 1))[0])
    torch.testing.assert_close(reg[index], torch.tensor([1.0, 2.0]))
    for i in torch.nonzero(long).flatten():
        start = grid.positions[i] - reg[i, 0] * grid.strides[i]
        end = grid.positions[i] + reg[i, 1] * grid.strides[i]
        torch.testing.assert_close(torch.stack([start, end]), segments[1])


def test_variants_score_finished_runs_and_resume_stopped_ones(tmp_path, capsys):
    from train import variants

    # two validation and two test videos: what is checked is which runs are trained, scored or
    # resumed, not their scores; each video is a model call per validation and per scoring
    annotations = make_planted_dataset(tmp_path, {"train": 8, "validation": 2, "test": 2})
    overrides = planted_config_overrides(tmp_path, annotations) + ["train.val_every=1"]
    command = ["--config", str(SMOKE), "--quiet", *overrides]
    chosen = ["--variants", "loco", "audio_only"]
    assert variants.main([*command, "train.epochs=1", *chosen]) == 0
    run = tmp_path / "run_loco" / "metrics.jsonl"
    assert len(run.read_text().splitlines()) == 1
    capsys.readouterr()

    assert variants.main([*command, "train.epochs=1", *chosen]) == 0
    printed = capsys.readouterr().out
    assert "loco: already trained" in printed and "audio_only: already trained" in printed
    assert "| loco |" in printed and "| audio_only |" in printed
    assert len(run.read_text().splitlines()) == 1  # scored, not retrained

    assert variants.main([*command, "train.epochs=2", "--variants", "loco"]) == 0
    assert [json.loads(line)["epoch"] for line in run.read_text().splitlines()] == [1, 2]
    table = json.loads((tmp_path / "run_variants.json").read_text())
    assert set(table) == {"loco"}
