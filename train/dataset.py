"""Torch dataset of fixed-length windows: random crops for training, whole clips for evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from loco_stream.config import DataConfig, ModelConfig

from .data import VideoRecord, load_features, seconds_to_steps

MIN_CROPPED_STEPS = 0.5  # a cropped event keeps at least this much of itself inside the crop


class WindowDataset(Dataset):
    """Each item: one video's features in a window of ``model.window`` steps.

    Training items are random crops of ``ratio * window`` steps (ratio drawn from
    ``data.crop_ratio``) with their events clipped to the crop, a share of them ending inside an
    event (``data.online_crop_share``), a share of them led by a crop of another clip that fills
    the rest of the window (``data.splice_share``); evaluation items start at step 0.
    Features are read lazily, so memory stays bounded for UnAV-100-sized folders.
    """

    def __init__(
        self,
        records: list[VideoRecord],
        data: DataConfig,
        model: ModelConfig,
        feature_dir: str | None = None,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        self.records = records
        self.data = data
        self.model = model
        self.feature_dir = feature_dir or data.feature_dir
        self.train = train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        visual, audio, segments, labels = self._clip(record)
        window = self.model.window
        if self.train:
            visual, audio, segments, labels = self._train_crop(
                visual, audio, segments, labels, window
            )
            spliceable = len(visual) < window and len(self.records) > 1
            if spliceable and self.rng.random() < self.data.splice_share:
                visual, audio, segments, labels = self._splice(
                    visual, audio, segments, labels, index
                )
        length = min(len(visual), window)
        mask = np.zeros(window, dtype=np.float32)
        mask[:length] = 1.0
        return {
            "video_id": record.video_id,
            "visual": _pad(visual[:length], window),  # (T, Dv)
            "audio": _pad(audio[:length], window),  # (T, Da)
            "mask": torch.from_numpy(mask),  # (T,)
            "segments": torch.from_numpy(segments.astype(np.float32)),  # (K, 2) steps
            "labels": torch.from_numpy(labels.astype(np.int64)),  # (K,)
        }

    def _clip(self, record: VideoRecord):
        """A clip's features and events: (visual (T, Dv), audio (T, Da), segments (K, 2) in
        steps, labels (K,))."""
        visual, audio = load_features(self.feature_dir, record.video_id, self.data, self.model)
        return visual, audio, seconds_to_steps(record.segments, self.data), record.labels

    def _train_crop(self, visual, audio, segments, labels, longest: int, online: bool = True):
        """A random crop of at most ``longest`` steps (``data.crop_ratio`` of the window), online
        (``_crop``) if allowed; its events clipped to it, those left shorter than
        ``MIN_CROPPED_STEPS`` dropped: (visual, audio, segments in steps, labels)."""
        low, high = self.data.crop_ratio
        crop = min(
            len(visual), longest, int(round(self.model.window * self.rng.uniform(low, high)))
        )
        begin, crop = self._crop(len(visual), crop, segments, online)
        visual, audio = visual[begin : begin + crop], audio[begin : begin + crop]
        segments = np.clip(segments - begin, -0.5, crop - 0.5)
        kept = segments[:, 1] - segments[:, 0] >= MIN_CROPPED_STEPS
        return visual, audio, segments[kept], labels[kept]

    def _splice(self, visual, audio, segments, labels, index: int):
        """Put a crop of another random clip before this window's crop, within the window.

        The window then holds more events, and events of two clips next to each other, as a
        busy stretch of a live feed does; this crop stays last, so that an online crop still
        ends the window. One clip's crop follows the other's last step directly: the model's
        receptive field is local, and a cut between scenes happens in real feeds too.
        """
        other = int(self.rng.integers(len(self.records) - 1))
        other += other >= index  # any clip but this one
        room = self.model.window - len(visual)
        lead = self._train_crop(*self._clip(self.records[other]), room, online=False)
        lead_visual, lead_audio, lead_segments, lead_labels = lead
        shift = len(lead_visual)
        return (
            np.concatenate([lead_visual, visual]),  # (T_lead + T, Dv)
            np.concatenate([lead_audio, audio]),  # (T_lead + T, Da)
            np.concatenate([lead_segments, segments + shift]),  # (K_lead + K, 2) steps
            np.concatenate([lead_labels, labels]),
        )

    def _crop(
        self, length: int, crop: int, segments: np.ndarray, online: bool = True
    ) -> tuple[int, int]:
        """(first step, steps) of a training crop of at most ``crop`` steps out of ``length``.

        With probability ``data.online_crop_share`` the crop is *online*: it ends inside a random
        event, whose label is cut there, as a live window ends at "now" inside an ongoing event.
        The model then learns to reach the present with such an event instead of placing its end
        early. Otherwise the crop lies anywhere in the clip.
        """
        if online and len(segments) and self.rng.random() < self.data.online_crop_share:
            start, end = segments[self.rng.integers(len(segments))]  # steps
            # the crop's newest step: inside the event, before its last step, so that it is cut
            low = int(np.ceil(start + MIN_CROPPED_STEPS))
            high = min(int(np.floor(end)) - 1, length - 2)
            if 0 <= low <= high:
                newest = int(self.rng.integers(low, high + 1))
                begin = max(0, newest + 1 - crop)
                return begin, newest + 1 - begin
        return int(self.rng.integers(0, length - crop + 1)), crop


def _pad(features: np.ndarray, length: int) -> torch.Tensor:
    padded = np.zeros((length, features.shape[1]), dtype=np.float32)
    padded[: len(features)] = features
    return torch.from_numpy(padded)


def collate(items: list[dict], multiple: int = 1) -> dict:
    """Stack the windows, trimmed to the longest valid length in the batch rounded up to
    ``multiple`` (the top level's stride): padding nobody needs costs compute. Per-video event
    lists stay lists."""
    longest = max(int(item["mask"].sum()) for item in items)
    length = min(len(items[0]["mask"]), -(-longest // multiple) * multiple)
    batch = {
        key: torch.stack([item[key][:length] for item in items])
        for key in ("visual", "audio", "mask")
    }
    for key in ("video_id", "segments", "labels"):
        batch[key] = [item[key] for item in items]
    return batch
