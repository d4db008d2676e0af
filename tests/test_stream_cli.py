"""`loco-stream` as a user runs it: bad input, signals, a file, and a live camera + microphone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from media import FakeCamera, VirtualMicrophone, make_clip

from loco_stream.bundle import AUDIO_GRAPH, METADATA_KEY, VISUAL_GRAPH
from loco_stream.stream.stitch import Event
from loco_stream.synth import SAMPLE_RATE, render_audio, write_clip
from tests.test_stream_support import (
    assert_well_formed,
    demo_scenario,
    finals,
    found,
    real_model_dir,
    tiny_model_dir,
)

COMMAND = [sys.executable, "-m", "loco_stream.cli.stream"]
LIVE_SEED = 334  # a demo scenario with two clear events inside its first 20 s
LIVE_SECONDS = 20.0
MATCH_IOU = 0.5
# The test harness itself skews the live streams: the FIFO camera's first frames arrive in a burst
# (video content ~0.35 s ahead of stream time) while the virtual microphone's monitor path delays
# the sound (~0.2 s behind), measured on these machines. The sound starts this far into the clip to
# line the two up again, and live events are matched more loosely than file ones.
AUDIO_LEAD_S = 0.5
LIVE_MATCH_IOU = 0.3
KEEP = "an earlier file, not to be touched\n"


def read_events(path: Path) -> tuple[list[Event], list[dict]]:
    """The start/end events of a JSON-lines file, and its other records."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    events = [Event(**{"end": None, **r}) for r in records if r["type"] in ("start", "end")]
    return events, [r for r in records if r["type"] not in ("start", "end")]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


# ---- bad input: one clear line, exit 1, nothing written ----


def mismatched_model(tiny_dir: Path, folder: Path) -> Path:
    """The tiny model with an audio extractor that claims 16-d features (the window takes 8)."""
    shutil.copytree(tiny_dir, folder)
    graph = onnx.load(str(folder / AUDIO_GRAPH))
    for prop in graph.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "feature_dim": 16})
    onnx.save(graph, str(folder / AUDIO_GRAPH))
    return folder


def missing_graph_model(tiny_dir: Path, folder: Path) -> Path:
    shutil.copytree(tiny_dir, folder)
    (folder / VISUAL_GRAPH).unlink()
    return folder


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_audio", "has no audio track"),
        ("missing_graph", "visual_extractor.onnx: missing"),
        ("mismatched_graph", "audio_extractor.onnx: changed since export"),
        ("backend", "CUDAExecutionProvider is not available"),
        ("no_such_file", "does not exist"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    tiny_dir: Path, tmp_path: Path, case: str, expected: str
) -> None:
    output = tmp_path / "events.jsonl"
    output.write_text(KEEP)
    clip = make_clip(tmp_path / "clip.mp4", audio_rate=None if case == "no_audio" else 16000)
    model = tiny_dir
    if case == "missing_graph":
        model = missing_graph_model(tiny_dir, tmp_path / "model")
    elif case == "mismatched_graph":
        model = mismatched_model(tiny_dir, tmp_path / "model")
    args = ["--input", str(tmp_path / "nothing.mp4" if case == "no_such_file" else clip)]
    args += ["--model", str(model), "--output", str(output)]
    args += ["--backend", "onnxruntime-cuda"] if case == "backend" else []  # no GPU in CI
    done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("loco-stream: error: ") and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert output.read_text() == KEEP


@pytest.mark.parametrize(
    ("camera", "mic", "expected"),
    [
        ("/nonexistent/camera.mjpeg", "pulse", "camera '/nonexistent/camera.mjpeg' could not"),
        ("/nonexistent/camera.mjpeg", "no-such-mic", "microphone 'no-such-mic' not found"),
    ],
)
def test_a_camera_or_microphone_that_does_not_open_is_a_clear_error(
    virtual_mic: VirtualMicrophone, tiny_dir: Path, tmp_path: Path, camera: str, mic: str, expected
) -> None:
    output = tmp_path / "events.jsonl"
    args = ["--camera", camera, "--mic", mic, "--model", str(tiny_dir), "--output", str(output)]
    done = subprocess.run(
        COMMAND + args, capture_output=True, text=True, timeout=60, env=virtual_mic.env
    )
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith("loco-stream: error: ") and expected in first, done.stderr
    assert "Traceback" not in done.stderr and not output.exists()
    if mic == "no-such-mic":
        assert "Available input devices" in done.stderr and "pulse" in done.stderr


def test_list_devices_and_show_without_a_display(
    virtual_mic: VirtualMicrophone, tiny_dir: Path, tmp_path: Path
) -> None:
    listed = subprocess.run(
        COMMAND + ["--list-devices"],
        capture_output=True,
        text=True,
        timeout=60,
        env=virtual_mic.env,
    )
    assert listed.returncode == 0 and "pulse" in listed.stdout and "Cameras:" in listed.stdout
    clip = make_clip(tmp_path / "clip.mp4", duration=3.0, audio_rate=16000)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    args = ["--input", str(clip), "--model", str(tiny_dir), "--show"]
    done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0
    assert "--show is not possible here: no display" in done.stderr
    assert "stats: 3.0 s of media" in done.stdout


# ---- a file, and a signal mid-stream ----


def test_a_file_stream_writes_its_events_and_stats(tmp_path_factory, tmp_path: Path) -> None:
    model = real_model_dir(tmp_path_factory)
    scenario = demo_scenario(LIVE_SEED, LIVE_SECONDS)
    clip = tmp_path / "clip.mp4"
    write_clip(scenario, clip)
    output = tmp_path / "events.jsonl"
    args = ["--input", str(clip), "--model", str(model), "--output", str(output)]
    done = subprocess.run(COMMAND + args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events, others = read_events(output)
    assert_well_formed(events)
    assert found(scenario.events, finals(events), MATCH_IOU) == len(scenario.events)
    assert others[-1]["type"] == "stats" and others[-1]["steps"] == LIVE_SECONDS * 4
    assert others[-1]["events"] == len(finals(events))
    assert " END " in done.stdout and "stats:" in done.stdout


@pytest.mark.slow
def test_sigterm_mid_stream_closes_open_events_and_exits_0(tmp_path_factory, tmp_path) -> None:
    model = real_model_dir(tmp_path_factory)
    output = tmp_path / "events.jsonl"
    args = ["--demo", "--seed", str(LIVE_SEED), "--duration", str(LIVE_SECONDS)]
    args += ["--model", str(model), "--output", str(output)]
    process = subprocess.Popen(COMMAND + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    open_ids: set[int] = set()
    deadline = time.monotonic() + LIVE_SECONDS
    while not open_ids and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if output.exists():
            events, _ = read_events(output)
            open_ids = {e.id for e in events if e.type == "start"} - {
                e.id for e in events if e.type == "end"
            }
    assert open_ids, "no event was open during the demo"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    events, others = read_events(output)
    assert_well_formed(events)  # every start has its end: the open ones were closed
    assert open_ids <= {e.id for e in finals(events)}
    assert others[-1]["type"] == "stats" and others[-1]["media_seconds"] < LIVE_SECONDS - 1
    assert b"stats:" in stdout and b"demo:" in stdout


# ---- live: a paced fake camera and a virtual microphone ----


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def wait_until_open(process: subprocess.Popen, path: Path, timeout: float) -> None:
    """Until ``process`` has ``path`` open (ffmpeg's open of a FIFO returns once a reader came)."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{process.pid}/fd")
    while time.monotonic() < deadline:
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    return
            except OSError:
                continue
        time.sleep(0.005)
    raise TimeoutError(f"{path} was not opened within {timeout} s")


@pytest.mark.slow
def test_live_camera_and_microphone_emit_the_clip_s_events(
    tmp_path_factory, virtual_mic: VirtualMicrophone, fake_camera, tmp_path: Path
) -> None:
    model = real_model_dir(tmp_path_factory)
    scenario = demo_scenario(LIVE_SEED, LIVE_SECONDS)
    clip = tmp_path / "clip.mp4"
    write_clip(scenario, clip)
    sound = render_audio(scenario, SAMPLE_RATE, start=AUDIO_LEAD_S)
    wav = write_wav(tmp_path / "clip.wav", sound, SAMPLE_RATE)
    sink = virtual_mic.sinks[0]
    output = tmp_path / "events.jsonl"
    # ffmpeg waits in open() until a reader comes; looping, the camera outlives the sound
    camera: FakeCamera = fake_camera(clip, loop=True)
    args = ["--camera", str(camera.path), "--mic", "pulse", "--model", str(model)]
    args += ["--output", str(output)]
    env = {**virtual_mic.env, "PULSE_SOURCE": sink.source}
    process = subprocess.Popen(
        COMMAND + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        # the camera's clip starts playing when loco-stream opens it: start the sound then
        wait_until_open(camera.process, camera.path, timeout=30)
        player = subprocess.Popen(["paplay", f"--device={sink.name}", str(wav)], env=env)
        player.wait(timeout=LIVE_SECONDS + 10)
        time.sleep(1.5)  # the last hop, and the close_after margin
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr.decode()
    events, others = read_events(output)
    assert_well_formed(events)
    assert found(scenario.events, finals(events), LIVE_MATCH_IOU) == len(scenario.events), (
        scenario.events,
        finals(events),
    )
    stats = others[-1]
    # the virtual microphone starts about 1 s after the camera: that second is an audio gap
    assert stats["frames"] > 0.9 * LIVE_SECONDS * 16 and stats["audio_gap_seconds"] < 2.0
    assert stats["real_time_factor"] < 0.5
