"""Shared fixtures: generated clips, a paced fake camera, a virtual microphone (see media.py), and
a tiny random model directory (see tiny_model.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from media import FakeCamera, VirtualMicrophone, make_clip

# (rate, channels) of the virtual microphone's sinks: 16 kHz mono, and 48 kHz stereo
VIRTUAL_SINKS = [(16000, 1), (48000, 2)]


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 10 fps, 160x120, 440 Hz tone at 44.1 kHz stereo."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4")


@pytest.fixture
def fake_camera(tmp_path: Path) -> Iterator[Callable[..., FakeCamera]]:
    """Start ``ffmpeg -re ... -f mpjpeg`` into a FIFO: ``fake_camera(clip, loop=False, path=None)``
    (a new FIFO, or the one at ``path``, as when a camera's sender restarts)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg binary is missing (Debian: apt-get install ffmpeg)")
    cameras: list[FakeCamera] = []

    def start(clip: Path, loop: bool = False, path: Path | None = None) -> FakeCamera:
        cameras.append(FakeCamera(clip, path or tmp_path / f"camera{len(cameras)}.mjpeg", loop))
        return cameras[-1]

    yield start
    for camera in cameras:
        camera.stop()


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[VirtualMicrophone]:
    """A private PulseAudio server whose sinks PortAudio's ``pulse`` device records."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing (Debian: apt-get install --no-install-recommends "
            "pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    mic = VirtualMicrophone(VIRTUAL_SINKS)
    yield mic
    mic.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model directory (3 classes, window 32, hop 4), exported once per session."""
    from tiny_model import session_tiny_model_dir  # imports torch: only for tests that ask

    return session_tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def batched_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model directory with its batched graphs (`python -m export --batch`'s stage),
    exported once per session."""
    from export.job import FORMATS, load_job, run
    from loco_stream.bundle import read_card

    folder = tmp_path_factory.mktemp("batched") / "model"
    shutil.copytree(tiny_model_dir, folder)
    job = load_job(folder / "loco.pt", folder)
    job.written = list(read_card(folder).files)
    run(job, [fmt for fmt in FORMATS if fmt.name == "batch"])
    return folder
