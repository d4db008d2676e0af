"""Features of a media file computed two ways: the file path (``extract_file``, as loco-detect and
``train.extract_features`` do) and item by item, as the stream receives them (irregular audio
blocks, all video before all audio)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from loco_stream.features.media import extract_file
from loco_stream.features.steps import StepAssembler
from loco_stream.model_dir import StepExtractors
from loco_stream.sources.base import AudioBlock
from loco_stream.sources.file import FileSource


def file_features(extractors: StepExtractors, path: Path) -> tuple[np.ndarray, np.ndarray]:
    return extract_file(path, extractors.spec, extractors)


def streamed_features(
    extractors: StepExtractors, path: Path, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(L, Dv), (L, Da) from the file's items re-cut into irregular audio blocks and fed to a
    `StepAssembler` video first, as a stream whose audio lags its video would."""
    with FileSource(path) as source:
        items = list(source)
    rng = random.Random(seed)
    chunked = []
    for item in items:
        if isinstance(item, AudioBlock) and len(item.samples) > 4:
            cuts = sorted(rng.sample(range(1, len(item.samples)), 3))
            for begin, end in zip([0, *cuts], [*cuts, len(item.samples)], strict=True):
                t = item.t + begin / item.sample_rate
                chunked.append(AudioBlock(t, item.samples[begin:end], item.sample_rate))
        else:
            chunked.append(item)
    chunked.sort(key=lambda item: isinstance(item, AudioBlock))  # stable: video, then audio
    assembler = StepAssembler(extractors.spec)
    features = []
    for item in chunked:
        assembler.add(item)
        features += [extractors(step) for step in assembler.steps()]
    assembler.end()
    features += [extractors(step) for step in assembler.steps()]
    return np.stack([f[0] for f in features]), np.stack([f[1] for f in features])


def assert_file_equals_stream(extractors: StepExtractors, path: Path) -> int:
    """The two ways agree exactly, step by step; returns the number of steps."""
    visual, audio = file_features(extractors, path)
    streamed_visual, streamed_audio = streamed_features(extractors, path)
    assert streamed_visual.shape == visual.shape and streamed_audio.shape == audio.shape
    np.testing.assert_array_equal(streamed_visual, visual)
    np.testing.assert_array_equal(streamed_audio, audio)
    return len(visual)
