"""Whole media files to per-step features, through the same step assembly the stream uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..sources.base import SourceError
from ..sources.file import FileSource
from .steps import Step, StepAssembler, StepSpec


class MediaError(ValueError):
    """A media file that cannot give features; the message names the file and the reason."""


def file_steps(path: str | Path, spec: StepSpec):
    """Yield the complete steps of a media file (video and audio are both required)."""
    try:
        source = FileSource(path)
    except SourceError as error:
        raise MediaError(str(error)) from None
    with source:
        if not source.has_audio:
            raise MediaError(
                f"{path} has no audio track: audio-visual events must be heard as well as seen"
            )
        if not source.has_video:
            raise MediaError(f"{path} has no video track: audio-visual events must be seen too")
        assembler = StepAssembler(spec)
        try:
            for item in source:
                assembler.add(item)
                yield from assembler.steps()
        except SourceError as error:
            raise MediaError(str(error)) from None
        assembler.end()
        yield from assembler.steps()


def extract_file(
    path: str | Path,
    spec: StepSpec,
    step_features: Callable[[Step], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """visual (L, Dv) and audio (L, Da) features of a whole file, one row per complete step."""
    visual, audio = [], []
    for step in file_steps(path, spec):
        v, a = step_features(step)
        visual.append(v)
        audio.append(a)
    if not visual:
        raise MediaError(
            f"{path} is shorter than one step ({spec.step_seconds} s of both video and audio)"
        )
    return np.stack(visual).astype(np.float32), np.stack(audio).astype(np.float32)
