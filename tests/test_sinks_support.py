"""Shared helpers of the sink tests (no tests here): a mosquitto broker, an HTTP receiver, free
ports, a demo clip, replaying a stream into the evidence, and waiting without timing anything."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loco_stream.synth import write_clip
from tests.test_stream_support import demo_scenario

DEMO_SEED, DEMO_SECONDS = 334, 20.0  # two clear events: 7.1-10.6 s and 12.9-15.0 s
PATIENCE_S = 60.0  # how long a test waits for something that must happen (a busy machine)
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


def wait_for(condition: Callable[[], object], what: str, timeout: float = PATIENCE_S) -> object:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"waited {timeout:g} s for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_clip(folder: Path) -> Path:
    """The demo scenario's 20-s clip (two events), written once per folder."""
    path = folder / "demo.mp4"
    if not path.exists():
        write_clip(demo_scenario(DEMO_SEED, DEMO_SECONDS), path)
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


REPLAY_BACKLOG = 512  # items a replay lets wait for the encoder (it drops beyond 4,096)


def replay_into_evidence(recorder, stream: str, items: list, records: list[dict]) -> dict:
    """``stream``'s ``items`` into an opened `EvidenceRecorder`, each start and end record of
    ``records`` annotated once the stream reaches its ``emitted_at`` (as the stitcher emits
    them), never more than REPLAY_BACKLOG items ahead of the encoder; the recorder's counters
    once it has written the clips and closed."""
    pending = sorted(
        (record for record in records if record["type"] in ("start", "end")),
        key=lambda record: record["emitted_at"],
    )
    for item in items:
        while pending and pending[0]["emitted_at"] <= item.t:
            recorder.annotate(stream, pending.pop(0))
        recorder.on_item(stream, item)
        while recorder.backlog > REPLAY_BACKLOG:  # faster than any stream: let the encoder keep up
            time.sleep(0.001)
    recorder.finish()
    counters = recorder.counters()
    recorder.close()
    return counters


class Broker:
    """Debian's mosquitto on a free 127.0.0.1 port, started and stopped by the test."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        if MOSQUITTO is None:
            pytest.skip("the mosquitto binary is missing (Debian: apt-get install mosquitto)")
        self.port = port or free_port()
        self.config = folder / f"mosquitto-{self.port}.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n"  # sessions outlive a restart
            f"user {getpass.getuser()}\n"  # as root it would drop to "mosquitto": no tmp access
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for(self._listening, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"mosquitto exited: {self.process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Subscriber:
    """A paho client that keeps every message of ``topic`` as (topic, payload, retained);
    ``persistent``: its session (subscription, messages queued for it) outlives a disconnect."""

    def __init__(self, port: int, topic: str = "#", persistent: bool = False) -> None:
        from paho.mqtt import client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="loco-test", clean_session=not persistent
        )
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode(), bool(m.retain))
        )
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        wait_for(self._subscribed.is_set, "the test's subscription")

    def records(self, prefix: str = "loco") -> list[tuple[str, dict]]:
        """(topic, record) of the messages under ``prefix`` other than availability."""
        return [
            (topic, json.loads(payload))
            for topic, payload, _ in list(self.messages)
            if topic.startswith(prefix + "/") and not topic.endswith("/available")
        ]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Receiver:
    """A webhook receiver on 127.0.0.1:``port``: keeps each POSTed body and its sequence header."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[int, dict]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self) -> Receiver:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((int(self.headers["X-Loco-Sequence"]), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
