"""`loco-stream` with every sink, as the README shows it: evidence files, a real mosquitto broker,
a real HTTP receiver, the live page's server; many streams; and each bad setting as one line."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import pytest

from loco_stream.cli.stream import main
from tests.test_sinks_support import (
    Broker,
    Receiver,
    Subscriber,
    demo_clip,
    free_port,
    read_records,
    wait_for,
)
from tests.test_stream_support import real_model_dir

COMMAND = [sys.executable, "-m", "loco_stream.cli.stream"]
PRE = POST = 2.0  # the defaults
TIMEOUT_S = 300


def run(*args: object) -> subprocess.CompletedProcess:
    command = COMMAND + [str(arg) for arg in args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_clip(tmp_path_factory.mktemp("sinks_media"))


def check_evidence(folder: Path, end: dict, update: dict) -> None:
    """The end record names the files, the update says they are written, and they are: a clip
    of H.264 and AAC from PRE s before the event to POST s after it, a JPEG snapshot."""
    assert update["clip"] == end["clip"] and update["snapshot"] == end["snapshot"]
    assert {k: v for k, v in update.items() if k not in ("type", "emitted_at")} == {
        k: v for k, v in end.items() if k not in ("type", "emitted_at")
    }
    with av.open(str(folder / end["clip"])) as container:
        codecs = sorted(stream.codec_context.name for stream in container.streams)
        length = container.duration / 1e6
    assert codecs == ["aac", "h264"]
    expected = end["end"] + POST - max(0.0, end["start"] - PRE)
    assert abs(length - expected) < 0.5, (length, expected)
    snapshot = cv2.imread(str(folder / end["snapshot"]))
    assert snapshot is not None and snapshot.shape == (112, 112, 3)


def test_one_stream_with_every_sink(model: Path, clip: Path, tmp_path: Path) -> None:
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    receiver = Receiver().start()
    evidence, output = tmp_path / "evidence", tmp_path / "events.jsonl"
    try:
        done = run(
            *("--input", clip, "--model", model, "--output", output, "--evidence", evidence),
            *("--mqtt", f"127.0.0.1:{broker.port}", "--webhook", receiver.url),
            *("--serve", "127.0.0.1:0"),
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # no warning: every sink did its work
        assert "live page: http://127.0.0.1:" in done.stdout
        records = read_records(output)
        ends = {r["id"]: r for r in records if r["type"] == "end"}
        updates = {r["id"]: r for r in records if r["type"] == "update"}
        assert len(ends) == 2 and updates.keys() == ends.keys()
        for event_id, end in ends.items():
            assert end["clip"] == f"demo/{Path(end['clip']).stem}.mp4"
            assert end["clip"].endswith(f"-{event_id}.mp4")
            check_evidence(evidence, end, updates[event_id])
        stats = records[-1]
        assert stats["type"] == "stats" and stats["sinks"]["evidence"]["clips"] == 2
        # the broker and the receiver got every record once, in the file's order
        wait_for(lambda: len(subscriber.records()) >= len(records), "every record over MQTT")
        assert [record for _, record in subscriber.records()] == records
        assert [topic for topic, _ in subscriber.records()] == [
            f"loco/demo/{record['type']}" for record in records
        ]
        availability = [(p, r) for t, p, r in subscriber.messages if t == "loco/available"]
        assert availability == [("online", False), ("offline", False)]
        wait_for(lambda: len(receiver.received) >= len(records), "every record by webhook")
        assert [body for _, body in receiver.received] == records
        assert [sequence for sequence, _ in receiver.received] == list(range(1, len(records) + 1))
    finally:
        subscriber.stop()
        broker.stop()
        receiver.stop()


def test_many_streams_share_one_connection_with_evidence_per_stream(
    model: Path, clip: Path, tmp_path: Path
) -> None:
    broker = Broker(tmp_path).start()
    subscriber = Subscriber(broker.port)
    inputs = [shutil.copy(clip, tmp_path / f"{name}.mp4") for name in ("door", "hall")]
    evidence, outputs = tmp_path / "evidence", tmp_path / "out"
    try:
        done = run(
            *("--input", inputs[0], "--input", inputs[1], "--model", model),
            *("--output-dir", outputs, "--evidence", evidence),
            *("--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-prefix", "home/cams"),
        )
        assert done.returncode == 0, done.stderr
        for name in ("door", "hall"):
            records = read_records(outputs / f"{name}.jsonl")
            ends = {r["id"]: r for r in records if r["type"] == "end"}
            updates = {r["id"]: r for r in records if r["type"] == "update"}
            assert len(ends) == 2 and updates.keys() == ends.keys()
            for event_id, end in ends.items():
                assert end["clip"].startswith(f"{name}/{name}-")
                check_evidence(evidence, end, updates[event_id])
            prefix = f"home/cams/{name}"
            wait_for(arrived(subscriber, prefix, len(records)), f"{name}'s records over MQTT")
            assert [r for _, r in subscriber.records(prefix)] == records
    finally:
        subscriber.stop()
        broker.stop()


def arrived(subscriber: Subscriber, prefix: str, count: int) -> Callable[[], bool]:
    return lambda: len(subscriber.records(prefix)) >= count


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook", "ftp://example.org/x"], "--webhook 'ftp://example.org/x' is not an http(s)"),
        (["--webhook", "http://"], "is not an http(s) URL"),
        (["--mqtt", "broker:port"], "--mqtt 'broker:port' is not HOST[:PORT]"),
        (["--serve", "0.0.0.0:8080"], "add --serve-remote to allow that"),
        (["--pre", "1"], "--pre is an option of --evidence"),
        (["--evidence", "e", "--post", "-1"], "post (--post) must be seconds"),
        (["--evidence", "e", "--evidence-width", "8"], "must be a whole number of pixels from 32"),
        (["--evidence", "e", "--evidence-cpu", "lots"], "--evidence-cpu takes a percent above 0"),
        (["--evidence", "e", "--evidence-cpu", "0"], "must be a percent above 0 (or none"),
        (["--evidence-cpu", "5"], "--evidence-cpu is an option of --evidence"),
    ],
)
def test_a_malformed_setting_is_one_usage_line(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--input", str(clip), "--output", str(tmp_path / "events.jsonl"), *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "events.jsonl").exists()


def test_a_port_in_use_or_an_unwritable_folder_is_one_error_line(
    model: Path, clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "events.jsonl"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            "--input", clip, "--model", model, "--output", output, "--serve", f"127.0.0.1:{port}"
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"loco-stream: error: --serve 127.0.0.1:{port}: the port is in use; give another port "
        f"(e.g. --serve 127.0.0.1:{port + 1}) or stop what listens there"
    ]
    (tmp_path / "a_file").write_text("")
    done = run(
        "--input",
        clip,
        "--model",
        model,
        "--output",
        output,
        "--evidence",
        tmp_path / "a_file" / "ev",
    )
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "the evidence folder" in done.stderr and "give a folder you can write" in done.stderr
    assert not output.exists()


def test_an_unreachable_broker_is_warned_about_and_detection_goes_on(
    model: Path, clip: Path, tmp_path: Path
) -> None:
    output = tmp_path / "events.jsonl"
    done = run(
        *("--input", clip, "--model", model, "--output", output),
        *("--mqtt", f"127.0.0.1:{free_port()}", "--serve", "0.0.0.0:0", "--serve-remote"),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = done.stderr.splitlines()
    assert any("mqtt: cannot reach the broker at 127.0.0.1:" in line for line in warnings)
    assert any("is served to the network" in line for line in warnings)
    records = read_records(output)
    assert sum(r["type"] == "end" for r in records) == 2 and records[-1]["type"] == "stats"
    assert records[-1]["sinks"]["mqtt"]["connected"] is False
