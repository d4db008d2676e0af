"""Training crops: a share ends inside an event, cut there (online crops); a share is led by a
crop of another clip (spliced windows)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loco_stream.config import ConfigError, load_config
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


def spliced(tmp_path, online: float, splice: float, count: int = 60) -> list[dict]:
    annotations = make_planted_dataset(tmp_path, {"train": 6}, length=(20, 40))
    config = load_config(SMOKE, planted_config_overrides(tmp_path, annotations))
    data = dataclasses.replace(config.data, online_crop_share=online, splice_share=splice)
    records, _ = load_records(annotations, "train", config.model.num_classes)
    dataset = WindowDataset(records, data, config.model, train=True, seed=5)
    return [dataset[i % len(records)] for i in range(count)]


def test_spliced_windows_fill_the_window_and_keep_every_event_on_its_signal(tmp_path) -> None:
    alone, spliced_items = spliced(tmp_path, 0.0, 0.0), spliced(tmp_path, 0.0, 1.0)
    filled = [float(item["mask"].sum()) for item in spliced_items]
    assert np.mean(filled) > np.mean([float(item["mask"].sum()) for item in alone]) + 5
    for item in spliced_items:
        length = int(item["mask"].sum())
        events = zip(item["segments"].numpy(), item["labels"].numpy(), strict=True)
        for (start, end), label in events:
            assert -0.5 <= start < end <= length - 0.5
            inside = np.arange(int(np.ceil(start)), int(np.floor(end)) + 1)
            inside = inside[(inside >= 0) & (inside < length)]
            # the planted +2 on the event's class channel: the label sits on its own clip's steps
            assert item["visual"][inside, label].mean() > 1.0, (start, end, label)


def test_a_spliced_online_crop_still_ends_the_window_inside_its_event(tmp_path) -> None:
    for item in spliced(tmp_path, 1.0, 1.0):
        newest = int(item["mask"].sum()) - 1
        assert np.isclose(item["segments"][:, 1].numpy(), newest + 0.5).any()


@pytest.mark.parametrize("setting", ["data.splice_share=1.5", "data.online_crop_share=-0.1"])
def test_a_share_outside_zero_to_one_is_refused_by_name(setting: str) -> None:
    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        load_config(SMOKE, [setting])
