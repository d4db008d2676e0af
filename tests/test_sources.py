"""Media sources on real media: generated files, a paced fake camera, a virtual microphone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from media import (
    FakeCamera,
    VirtualMicrophone,
    dominant_frequency,
    frame_index,
    make_clip,
    write_tone_wav,
)

from loco_stream.sources import (
    TARGET_SAMPLE_RATE,
    AudioBlock,
    CameraSource,
    FileSource,
    MergedSource,
    SourceError,
    VideoFrame,
)

VFR_PTS_MS = [0, 40, 150, 160, 400, 410, 700, 1000]
SETTLE_S = 0.3  # a microphone's start estimate settles within its first callbacks


def split(items: list) -> tuple[list[VideoFrame], list[AudioBlock]]:
    video = [i for i in items if isinstance(i, VideoFrame)]
    audio = [i for i in items if isinstance(i, AudioBlock)]
    assert len(video) + len(audio) == len(items)
    return video, audio


def non_decreasing(times: list[float]) -> bool:
    return all(a <= b for a, b in zip(times, times[1:], strict=False))


def assert_contiguous(audio: list[AudioBlock], tolerance: float = 0.005) -> None:
    for block, following in zip(audio, audio[1:], strict=False):
        assert following.t == pytest.approx(block.t + block.duration, abs=tolerance)


# ---- FileSource ----


def test_file_timestamps_are_the_pts_in_time_order(clip: Path) -> None:
    with FileSource(clip) as source:
        assert source.has_video and source.has_audio
        items = list(source)
    video, audio = split(items)
    assert [f.t for f in video] == pytest.approx([i / 10 for i in range(20)], abs=1e-6)
    assert [frame_index(f.image) for f in video] == list(range(20))
    assert video[0].image.shape == (120, 160, 3) and video[0].image.dtype == np.uint8
    assert non_decreasing([i.t for i in items])  # both kinds interleaved in time order
    assert audio[0].t == 0.0
    assert_contiguous(audio)
    assert source.stats.frames == 20
    assert source.stats.audio_seconds == pytest.approx(2.0, abs=1024 / 44100)


def test_file_variable_frame_rate_uses_pts(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "vfr.mp4", video_pts_ms=VFR_PTS_MS, duration=1.1)
    with FileSource(path) as source:
        video, _ = split(list(source))
    assert [f.t for f in video] == pytest.approx([ms / 1000 for ms in VFR_PTS_MS], abs=1e-6)
    assert [frame_index(f.image) for f in video] == list(range(len(VFR_PTS_MS)))


@pytest.mark.parametrize(
    ("rate", "channels", "tone_hz"), [(44100, 2, 440.0), (8000, 1, 1000.0), (48000, 2, 3000.0)]
)
def test_file_audio_becomes_16k_mono_with_tone_and_duration_kept(
    tmp_path: Path, rate: int, channels: int, tone_hz: float
) -> None:
    path = make_clip(tmp_path / "a.mp4", audio_rate=rate, channels=channels, tone_hz=tone_hz)
    with FileSource(path) as source:
        _, audio = split(list(source))
    samples = np.concatenate([b.samples for b in audio])
    assert all(b.sample_rate == TARGET_SAMPLE_RATE and b.samples.ndim == 1 for b in audio)
    assert samples.dtype == np.float32 and np.abs(samples).max() <= 1.0
    assert dominant_frequency(samples, TARGET_SAMPLE_RATE) == pytest.approx(tone_hz, abs=2.0)
    assert len(samples) / TARGET_SAMPLE_RATE == pytest.approx(2.0, abs=1024 / rate)  # 1 AAC frame
    assert_contiguous(audio)


def test_file_without_audio_says_so(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "silent.mp4", audio_rate=None)
    with FileSource(path) as source:
        assert source.has_video and not source.has_audio
        assert "no audio" in source.description
        video, audio = split(list(source))
    assert len(video) == 20 and not audio


def test_truncated_file_delivers_what_it_can_then_warns(clip: Path, tmp_path: Path) -> None:
    data = clip.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated"), FileSource(half) as source:
        items = list(source)
    video, audio = split(items)
    assert video and audio
    assert max(i.t for i in items) < 1.5


@pytest.mark.parametrize("content", [b"", bytes(range(256)) * 64])
def test_unreadable_file_raises_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="garbage.mp4"):
        FileSource(path)
    with pytest.raises(SourceError, match="missing.mp4"):
        FileSource(tmp_path / "missing.mp4")


def test_file_realtime_is_paced_by_the_wall_clock(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "short.mp4", duration=1.5)
    start = time.monotonic()
    with FileSource(path, realtime=True) as source:
        for item in source:
            assert item.t <= source.clock.now() + 0.01  # never handed out before its time
    assert time.monotonic() - start >= 0.8 * 1.5


# ---- CameraSource ----


def test_camera_frames_arrive_at_real_time_pace(fake_camera, clip: Path) -> None:
    camera = fake_camera(clip)
    with CameraSource(str(camera.path), stall_timeout=2.0) as source:
        assert source.timestamps == "capture"
        frames, lags = [], []
        for frame in source:
            frames.append(frame)
            lags.append(source.clock.now() - frame.t)
            if len(frames) == 15:
                break
    times = [f.t for f in frames]
    assert non_decreasing(times)
    indices = [frame_index(f.image) for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # ffmpeg -re sends 10 fps; the first frames come in a burst while OpenCV probes the stream
    assert np.median(np.diff(times[6:])) == pytest.approx(0.1, abs=0.03)
    assert max(lags) < 0.2  # capture time, stamped on the clock as the frame was grabbed


def test_camera_that_does_not_open_raises() -> None:
    index = next(i for i in range(64) if not Path(f"/dev/video{i}").exists())
    with pytest.raises(SourceError, match=f"camera '{index}' could not be opened.*--list-devices"):
        CameraSource(index)


def test_camera_that_stops_raises_after_the_stall_timeout(fake_camera, clip: Path) -> None:
    camera = fake_camera(clip, loop=True)
    with CameraSource(str(camera.path), stall_timeout=1.0) as source:
        frames = iter(source)
        for _ in range(3):
            next(frames)
        camera.stop()
        stopped = time.monotonic()
        with pytest.raises(SourceError, match="stopped delivering frames"):
            for _ in frames:
                pass
    assert 0.9 <= time.monotonic() - stopped < 3.0


def test_camera_reconnects_to_a_restarted_stream(fake_camera, clip: Path) -> None:
    camera = fake_camera(clip, loop=True)
    with CameraSource(str(camera.path), stall_timeout=0.5, reconnect=True) as source:
        frames = iter(source)
        before = [next(frames).t for _ in range(3)]
        camera.stop()
        restart = threading.Timer(1.0, lambda: fake_camera(clip, path=camera.path))
        restart.start()
        after = [next(frames).t for _ in range(8)]  # frames still queued, then the new stream
        restart.join()
    times = before + after
    assert non_decreasing(times)
    assert max(np.diff(times)) >= 0.8  # the second sender started 1 s after the first died


# ---- MicrophoneSource (in a subprocess inside the virtual microphone's environment) ----


@pytest.mark.parametrize(("sink_index", "tone_hz"), [(0, 440.0), (1, 1000.0)])
def test_microphone_records_the_tone_in_real_time(
    virtual_mic: VirtualMicrophone, tmp_path: Path, sink_index: int, tone_hz: float
) -> None:
    sink = virtual_mic.sinks[sink_index]
    wav = write_tone_wav(tmp_path / "tone.wav", tone_hz, seconds=1.0)
    result = virtual_mic.run("record", "pulse", "1.5", str(wav), sink.name, source=sink.source)
    assert result["native_rate"] == result["device_rate"]  # opened at the device's own rate
    assert result["sample_rate"] == TARGET_SAMPLE_RATE
    assert result["peak_hz"] == pytest.approx(tone_hz, abs=3.0)
    times, durations, received = (np.array(result[k]) for k in ("times", "durations", "received"))
    assert non_decreasing(list(times))
    # once the start estimate settled (first callbacks): no gaps, no overlaps, real-time pace
    settled = times >= times[0] + SETTLE_S
    ends = times + durations
    assert np.allclose(times[1:][settled[1:]], ends[:-1][settled[1:]], atol=0.002)
    latency = (received - ends)[settled]  # handed out shortly after the last sample's capture
    assert latency.min() > -0.01 and latency.max() < 0.4
    # the tone is heard after paplay started, not before
    # (onset: the start of the first loud block, which may begin up to a block before the tone)
    assert result["played_at"] - 0.1 <= result["onset"] <= result["played_at"] + 1.0


def test_microphone_unknown_device_lists_the_devices(virtual_mic: VirtualMicrophone) -> None:
    result = virtual_mic.run("devices", "no-such-mic")
    assert "microphone 'no-such-mic' not found" in result["error"]
    assert "Available input devices" in result["error"] and "pulse" in result["error"]
    assert "pulse" in result["listing"] and "Cameras:" in result["listing"]


# ---- MergedSource ----


def test_merged_file_video_and_microphone_share_one_clock(
    virtual_mic: VirtualMicrophone, tmp_path: Path
) -> None:
    video = make_clip(tmp_path / "long.mp4", duration=6.0, audio_rate=None)
    wav = write_tone_wav(tmp_path / "tone.wav", 440.0, seconds=0.5)
    sink = virtual_mic.sinks[0]
    args = ("record", "pulse", "1.0", str(wav), sink.name, "--video", str(video))
    result = virtual_mic.run(*args, source=sink.source)
    frames, audio = result["frames"], result["times"]
    assert frames and audio
    assert frames[0] == pytest.approx(0.0, abs=0.05)  # the file's first frame started the clock
    assert non_decreasing(frames) and non_decreasing(audio)
    # both on the clock that started with the first frame: audio comes while frames still do
    assert frames[0] < audio[0] < frames[-1]
    latency = np.array(result["received"]) - np.array(audio) - np.array(result["durations"])
    assert latency.max() < 0.5  # the merge holds an item 0.25 s at most


def test_merged_two_files_in_time_order(clip: Path, tmp_path: Path) -> None:
    video_only = make_clip(tmp_path / "v.mp4", audio_rate=None)
    video, audio = FileSource(video_only), FileSource(clip)
    with MergedSource(video, audio, max_hold=None) as merged:
        assert video.clock is audio.clock is merged.clock
        assert merged.has_video and merged.has_audio
        items = list(merged)
    frames, blocks = split(items)
    assert len(frames) == 20 and sum(b.duration for b in blocks) == pytest.approx(2.0, abs=0.03)
    assert non_decreasing([i.t for i in items])
    assert merged.stats.frames == 20


def test_merged_source_raises_a_side_s_error(fake_camera, clip: Path) -> None:
    camera: FakeCamera = fake_camera(clip, loop=True)
    merged = MergedSource(CameraSource(str(camera.path), stall_timeout=0.5), FileSource(clip))
    with pytest.raises(SourceError, match="stopped delivering"), merged:
        for count, _ in enumerate(merged):
            if count == 3:
                camera.stop()
