"""Evidence that cannot be written is counted and warned about while detection goes on; the
folder stays within its bound, oldest files first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loco_stream import Detector
from loco_stream.sinks import EvidenceRecorder
from loco_stream.sinks.retention import Retention
from loco_stream.synth import render_audio, render_frame
from tests.test_stream_support import demo_scenario, real_model_dir

FPS = 16


def test_a_folder_that_cannot_be_written_costs_the_files_not_the_events(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = EvidenceRecorder(tmp_path / "evidence")
    scene = demo_scenario(334, 20.0)
    with Detector(real_model_dir(tmp_path_factory), sinks=[recorder]) as detector:
        (tmp_path / "evidence" / "detector").write_text("")  # in the way of the stream's folder
        for k in range(round(scene.duration * FPS)):
            t = k / FPS
            detector.push_frame(render_frame(scene, t), t)
            detector.push_audio(render_audio(scene, 16000, t, t + 1 / FPS), t)
        events = list(detector.events()) + detector.close()
    assert sum(event.type == "end" for event in events) == 2
    counters = recorder.counters()
    assert counters["clips"] == 0 and counters["failures"] == 2
    assert counters["last_error"].startswith("event 1 of detector: ")
    warnings = [r.message for r in caplog.records if r.name == "loco_stream.sinks"]
    assert warnings and all("detection goes on" in w for w in warnings)


def test_the_folder_keeps_within_its_bound_deleting_the_oldest_first(tmp_path: Path) -> None:
    old = tmp_path / "cam" / "cam-1.mp4"
    old.parent.mkdir()
    old.write_bytes(b"x" * 400)
    os.utime(old, (1, 1))  # an earlier run's file
    retention = Retention(tmp_path, max_bytes=1000)
    assert retention.total == 400
    for name in ("cam-2.mp4", "cam-2.jpg", "cam-3.mp4"):
        (tmp_path / "cam" / name).write_bytes(b"x" * 300)
        retention.add(tmp_path / "cam" / name)
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        "cam-2.jpg",
        "cam-2.mp4",
        "cam-3.mp4",
    ]
    assert retention.deleted == 1 and retention.total == 900
