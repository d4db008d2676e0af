"""Online-aware training crops: a share of the crops ends inside an event, cut there."""

from __future__ import annotations

import dataclasses

import numpy as np

from loco_stream.config import load_config
from tests.planted import make_planted_dataset, planted_config_overrides
from tests.test_data import SMOKE
from train.data import load_records
from train.dataset import WindowDataset


def crops(tmp_path, share: float, count: int = 40) -> tuple[list[dict], list]:
    annotations = make_planted_dataset(tmp_path, {"train": 3})
    config = load_config(SMOKE, planted_config_overrides(tmp_path, annotations))
    data = dataclasses.replace(config.data, online_crop_share=share)
    records, _ = load_records(annotations, "train", config.model.num_classes)
    dataset = WindowDataset(records, data, config.model, train=True, seed=3)
    return [dataset[i % len(records)] for i in range(count)], records


def test_online_crops_end_inside_an_event_with_its_label_cut_at_the_edge(tmp_path) -> None:
    items, _ = crops(tmp_path, share=1.0)
    for item in items:
        newest = int(item["mask"].sum()) - 1  # the crop's last valid step: the stream's "now"
        ends = item["segments"][:, 1].numpy()
        assert len(ends) and np.isclose(ends, newest + 0.5).any(), (newest, ends)


def test_without_online_crops_events_keep_their_own_ends(tmp_path) -> None:
    items, _ = crops(tmp_path, share=0.0)
    cut = [np.isclose(i["segments"][:, 1].numpy(), i["mask"].sum() - 0.5).any() for i in items]
    assert np.mean(cut) < 0.5  # only crops that happen to end inside an event cut one
